"""The embedded (laptop) Dagster instance's storage: Dagster's own SQLite storage, with asset
materializations written in batches.

A single-run backfill over N sessions reports one materialization event per asset and
partition (21 asset keys x 2,520 sessions = 53k over ten years). With ``DAGSTER_EVENT_BATCH_SIZE``
set, Dagster hands them to the event log storage in batches; PostgreSQL storage writes a batch
with one INSERT, but ``SqliteEventLogStorage`` inherits the fallback that stores them one by one
— a new engine, connection and transaction in the run database and again in the index database
per event, ~8 ms each, so ~20 s per asset over ten years on this machine.

``BatchedSqliteEventLogStorage`` writes such a batch the way ``PostgresEventLogStorage`` does:
one multi-row INSERT into the run database, one into the index database, the asset event tags of
every event, and the asset-key row from the batch's last event. Every other event, and any batch
that is not materializations (or observations) of one run, goes through Dagster's own path.
The rows written are the rows Dagster writes; ``tests/test_instance_storage.py`` compares the
two storages on the same run.

Configured in the embedded ``dagster.yaml`` (``settings.EMBEDDED_DAGSTER_YAML``) as separate
``run_storage`` / ``event_log_storage`` / ``schedule_storage`` entries with the directories
``storage: sqlite:`` uses, so an instance written with ``storage: sqlite:`` keeps its history.
(``storage: custom:`` would not do: Dagster wraps a custom storage in ``LegacyEventLogStorage``,
which does not pass ``store_event_batch`` on.) Production uses PostgreSQL storage
(``dagster.yaml``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationPlanned,
)
from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._serdes import ConfigurableClassData, serialize_value

# Rows per multi-row INSERT: 9 bound columns per row stays far below SQLite's 32,766 variables.
_INSERT_ROWS = 500
_BATCHABLE = ({DagsterEventType.ASSET_MATERIALIZATION}, {DagsterEventType.ASSET_OBSERVATION})


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` that writes a batch of asset materializations in one go, and
    serializes a planned check evaluation once instead of once per partition."""

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> BatchedSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        types = {e.dagster_event.event_type for e in events if e.dagster_event is not None}
        runs = {e.run_id for e in events}
        plain = all(e.is_dagster_event and e.dagster_event.asset_key for e in events)  # type: ignore[union-attr]
        if len(runs) != 1 or types not in _BATCHABLE or not plain or len(events) < 2:
            super().store_event_batch(events)
            return
        (run_id,) = runs
        chunks = [events[i : i + _INSERT_ROWS] for i in range(0, len(events), _INSERT_ROWS)]
        with self.run_connection(run_id) as conn:
            for chunk in chunks:
                conn.execute(self.prepare_insert_event_batch(chunk))
        with self.index_transaction() as conn:
            ids: list[int] = []
            for chunk in chunks:
                stmt = self.prepare_insert_event_batch(chunk).returning(
                    SqlEventLogStorageTable.c.id
                )
                # SQLite returns RETURNING rows in no promised order; one statement's new ids
                # increase in insertion order, so sorting restores the events' order.
                ids.extend(sorted(int(row[0]) for row in conn.execute(stmt)))
            self._store_asset_event_tags(conn, events, ids)
            # Like PostgresEventLogStorage: the asset-key row records the batch's last event.
            self._store_asset_event(conn, events[-1], ids[-1])

    def _store_asset_check_evaluation_planned(
        self, event: EventLogEntry, event_id: int | None
    ) -> None:
        # Dagster's version builds one row per partition of the run's range and serializes the
        # same event for each (27 checks x 2,520 sessions = 68k serializations, ~90 s before a
        # ten-year backfill's first step). Same rows, the event serialized once.
        planned = event.get_dagster_event().event_specific_data
        assert isinstance(planned, AssetCheckEvaluationPlanned)
        partition_keys = (
            planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        )
        if not partition_keys:
            return
        serialized = serialize_value(event)
        timestamp = self._event_insert_timestamp(event)
        with self.index_connection() as conn:
            conn.execute(
                AssetCheckExecutionsTable.insert(),
                [
                    dict(
                        asset_key=planned.asset_key.to_string(),
                        check_name=planned.check_name,
                        partition=partition_key,
                        run_id=event.run_id,
                        execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                        evaluation_event=serialized,
                        evaluation_event_timestamp=timestamp,
                        evaluation_event_storage_id=event_id,
                    )
                    for partition_key in partition_keys
                ],
            )
