"""The intraday engine's place in the graph: ``intraday_eod`` is an external asset — the sidecar
writes its rows after the close and reports a materialization of the session's partition
(SPEC §7.5); the daily chip factor depends on it."""

import dagster as dg

from quant_genesis_dagster.defs.common import definition_metadata
from quant_genesis_dagster.defs.partitions import trading_days_partitions_def
from quant_genesis_dagster.domain.warehouse import models

INTRADAY_GROUP = "intraday"

intraday_eod = dg.AssetSpec(
    "intraday_eod",
    partitions_def=trading_days_partitions_def,
    group_name=INTRADAY_GROUP,
    description=(models.IntradayEod.__doc__ or "").strip(),
    kinds={"sql"},
    metadata=definition_metadata(models.IntradayEod),
)
