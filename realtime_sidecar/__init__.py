"""The intraday engine (SPEC §7): an asyncio sidecar that turns ticks into the real-time
cumulative net cost line (RCNC) and intraday signals, journals every tick, and at the close
writes end-of-day aggregates back into the warehouse and the Dagster asset graph.

It imports the same RCNC/LAC maths as the daily engine (``quant_genesis_dagster.domain``), never a
copy. The engine itself is built in its own issue; this package already owns its entry point and
its place under ``QG_HOME``.
"""
