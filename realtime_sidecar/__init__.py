"""The intraday engine (SPEC §7): an asyncio sidecar that turns ticks into the real-time
cumulative net cost line (RCNC) and intraday signals, journals every tick, and at the close
writes end-of-day aggregates back into the warehouse and the Dagster asset graph.

It imports the same RCNC/LAC maths as the daily engine (``chip.cost_lines``), never a copy.
Layout: ``feeds/`` (replay, Shioaji, Polygon behind one interface), ``ticks`` (the gate),
``session`` (RCNC, signals, aggregates — pure), ``journal``, ``engine`` (the loop),
``status`` (Prometheus endpoint), ``report`` (the close into Dagster), ``app``/``__main__``
(the command line).
"""
