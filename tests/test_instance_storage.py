"""The embedded instance's batched SQLite event log records exactly what Dagster's own SQLite
storage records for the same ranged run, and really takes the batched path."""

from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.event_log import SqliteEventLogStorage

from quant_genesis_dagster import instance_storage
from quant_genesis_dagster.instance_storage import BatchedSqliteEventLogStorage
from quant_genesis_dagster.settings import EMBEDDED_DAGSTER_YAML

STOCK_YAML = "storage:\n  sqlite:\n    base_dir: {base_dir}\ntelemetry:\n  enabled: false\n"
DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-02-15")


@dg.asset(
    partitions_def=DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[dg.AssetCheckSpec("positive", asset="ranged")],
)
def ranged(context: dg.AssetExecutionContext):
    keys = context.partition_keys
    yield dg.MaterializeResult(metadata={"rows": len(keys), "first": keys[0]})
    yield dg.AssetCheckResult(check_name="positive", passed=True)


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run(), deps=[ranged])
def downstream(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": len(context.partition_keys)})


JOB = dg.Definitions(assets=[ranged, downstream], jobs=[dg.define_asset_job("j")]).resolve_job_def(
    "j"
)


def _instance(home: Path, yaml: str) -> dg.DagsterInstance:
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.format(base_dir=home / "storage"))
    return dg.DagsterInstance.from_config(str(home))


def _run(instance: dg.DagsterInstance) -> str:
    keys = DAYS.get_partition_keys()
    result = JOB.execute_in_process(
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-2],
        },
    )
    assert result.success
    return result.run_id


def _recorded(instance: dg.DagsterInstance, key: dg.AssetKey, run_id: str) -> dict:
    records = instance.fetch_materializations(key, limit=1000, ascending=True).records
    latest = instance.get_latest_materialization_event(key)
    assert latest is not None and latest.asset_materialization is not None
    return {
        "partitions": [r.partition_key for r in records],
        "metadata": [r.asset_materialization.metadata for r in records],  # type: ignore[union-attr]
        "materialized": instance.get_materialized_partitions(key),
        "latest": (latest.asset_materialization.partition, latest.asset_materialization.metadata),
        # per record: the tag keys indexed under its storage id, and that their values are the
        # record's own (the data versions themselves differ between the two runs)
        "tags": [_indexed_tags(instance, key, r) for r in records],
        "keys": sorted(k.to_string() for k in instance.all_asset_keys()),
        # planned, then evaluated, check executions: one per partition of the range
        "checks": sorted(
            (str(r.partition), r.status.value, r.run_id == run_id)
            for r in instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(key, "positive"), limit=1000
            )
        )
        if key == ranged.key
        else None,
    }


def _indexed_tags(instance: dg.DagsterInstance, key: dg.AssetKey, record) -> tuple:
    own = record.asset_materialization.tags or {}
    (indexed,) = instance.get_event_tags_for_asset(key, filter_event_id=record.storage_id)
    return record.partition_key, sorted(indexed), all(own[k] == v for k, v in indexed.items())


def test_batched_event_log_matches_dagsters_sqlite_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "10")  # several batches, and a short last one
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")
    one_by_one = []
    store_event = SqliteEventLogStorage.store_event

    def counting(self, event):
        if event.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            one_by_one.append(type(self).__name__)
        return store_event(self, event)

    monkeypatch.setattr(SqliteEventLogStorage, "store_event", counting)

    stock = _instance(tmp_path / "stock", STOCK_YAML)
    batched = _instance(tmp_path / "batched", EMBEDDED_DAGSTER_YAML)
    assert type(batched.event_log_storage) is BatchedSqliteEventLogStorage
    # a run worker / step process rebuilds the instance from its ref: same storage class
    assert type(dg.DagsterInstance.from_ref(batched.get_ref()).event_log_storage) is (
        BatchedSqliteEventLogStorage
    )
    stock_run = _run(stock)
    stock_calls = len(one_by_one)
    batched_run = _run(batched)

    n = len(DAYS.get_partition_keys()) - 1
    assert stock_calls == 2 * n  # Dagster's storage: one store_event per partition and asset
    assert one_by_one[stock_calls:] == []  # batched: none went one by one
    for key in (ranged.key, downstream.key):
        mine, theirs = _recorded(batched, key, batched_run), _recorded(stock, key, stock_run)
        assert len(mine["partitions"]) == n
        if key == ranged.key:
            # Dagster records a planned execution per partition of the range, and the range's
            # one (unpartitioned) result as its own row
            planned = [c for c in mine["checks"] if c[1] == "PLANNED"]
            assert len(planned) == n and ("None", "SUCCEEDED", True) in mine["checks"]
        assert mine == theirs


def test_batched_event_log_keeps_other_batches_on_dagsters_path(tmp_path: Path) -> None:
    """A batch that is not one run's asset materializations is stored event by event."""
    instance = _instance(tmp_path / "batched", EMBEDDED_DAGSTER_YAML)
    storage = instance.event_log_storage
    assert isinstance(storage, BatchedSqliteEventLogStorage)
    logs = [
        dg.EventLogEntry(
            error_info=None, level="INFO", user_message=f"m{i}", run_id="r1", timestamp=1.0 + i
        )
        for i in range(3)
    ]
    storage.store_event_batch(logs)
    assert [e.user_message for e in storage.get_logs_for_run("r1")] == ["m0", "m1", "m2"]


def _materialization(run_id: str, partition: str, i: int) -> dg.EventLogEntry:
    from dagster._core.events import StepMaterializationData

    event = dg.DagsterEvent(
        event_type_value=dg.DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name="j",
        event_specific_data=StepMaterializationData(
            dg.AssetMaterialization(
                "hand_made", partition=partition, tags={"dagster/data_version": f"v{i}"}
            )
        ),
    )
    return dg.EventLogEntry(
        error_info=None, level="INFO", user_message="", run_id=run_id, timestamp=1.0 + i,
        dagster_event=event,
    )  # fmt: skip


def test_batched_event_log_indexes_each_events_own_tags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Distinct data versions per event: each storage id carries its own event's tags (a batch
    whose ids were matched to the wrong events would show another partition's version)."""
    monkeypatch.setattr(instance_storage, "_INSERT_ROWS", 7)  # several INSERTs per batch
    key = dg.AssetKey("hand_made")
    recorded = {}
    for name, yaml in (("stock", STOCK_YAML), ("batched", EMBEDDED_DAGSTER_YAML)):
        instance = _instance(tmp_path / name, yaml)
        events = [_materialization("r1", f"p{i:02d}", i) for i in range(1, 31)]
        instance.event_log_storage.store_event_batch(events)
        records = instance.fetch_materializations(key, limit=2000, ascending=True).records
        recorded[name] = [
            (
                r.partition_key,
                instance.get_event_tags_for_asset(key, filter_event_id=r.storage_id),
            )
            for r in records
        ]
        latest = instance.get_latest_materialization_event(key)
        assert latest is not None and latest.asset_materialization is not None
        assert latest.asset_materialization.partition == "p30"
    assert len(recorded["batched"]) == 30
    assert recorded["batched"][:3] == [
        ("p01", [{"dagster/data_version": "v1"}]),
        ("p02", [{"dagster/data_version": "v2"}]),
        ("p03", [{"dagster/data_version": "v3"}]),
    ]
    assert recorded["batched"] == recorded["stock"]


def test_embedded_home_upgrades_only_an_unedited_earlier_yaml(tmp_path: Path) -> None:
    from quant_genesis_dagster.settings import (
        _PREVIOUS_EMBEDDED_DAGSTER_YAMLS,
        Settings,
        prepare_dagster_home,
    )

    settings = Settings(home=tmp_path / "qg", database_url=None)
    cfg = settings.dagster_home / "dagster.yaml"
    cfg.parent.mkdir(parents=True)
    base_dir = settings.dagster_home / "storage"
    cfg.write_text(_PREVIOUS_EMBEDDED_DAGSTER_YAMLS[0].format(base_dir=base_dir))
    prepare_dagster_home(settings)
    assert cfg.read_text() == EMBEDDED_DAGSTER_YAML.format(base_dir=base_dir)
    edited = cfg.read_text() + "# mine\n"
    cfg.write_text(edited)
    prepare_dagster_home(settings)
    assert cfg.read_text() == edited
