"""Where Quant Genesis keeps its state, resolved from the environment in one place.

Everything embedded lives under ``QG_HOME`` (default ``./.qg``): the SQLite warehouse, the
Dagster home (persistent, unlike ``dagster dev``'s temporary folder), the MLflow tracking store
and model registry (``<home>/mlflow``), and later the sidecar journal. ``QG_DATABASE_URL`` moves
the warehouse to PostgreSQL; ``MLFLOW_TRACKING_URI`` (MLflow's own variable) points tracking and
the registry at another store or an MLflow server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Embedded Dagster instance: SQLite storage under QG_HOME, no onboarding modal, and at most one
# run at a time (SQLite instance storage locks under concurrent runs; backfills are single runs).
EMBEDDED_DAGSTER_YAML = """\
# Written by quant-genesis for the embedded (laptop) instance. Production: see dagster.yaml in
# the repository (PostgreSQL storage from environment variables).
# The directories Dagster's `storage: sqlite:` uses; the event log writes a single-run backfill's
# per-partition materializations in batches (quant_genesis_dagster/instance_storage.py).
run_storage:
  module: dagster._core.storage.runs
  class: SqliteRunStorage
  config:
    base_dir: {base_dir}/history/
event_log_storage:
  module: quant_genesis_dagster.instance_storage
  class: BatchedSqliteEventLogStorage
  config:
    base_dir: {base_dir}/history/runs/
schedule_storage:
  module: dagster._core.storage.schedules
  class: SqliteScheduleStorage
  config:
    base_dir: {base_dir}/schedules
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 1
telemetry:
  enabled: false
nux:
  enabled: false
"""

# Earlier versions of EMBEDDED_DAGSTER_YAML (same directories; Dagster's one-by-one SQLite event log).
_PREVIOUS_EMBEDDED_DAGSTER_YAMLS = (
    """\
# Written by quant-genesis for the embedded (laptop) instance. Production: see dagster.yaml in
# the repository (PostgreSQL storage from environment variables).
storage:
  sqlite:
    base_dir: {base_dir}
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 1
telemetry:
  enabled: false
nux:
  enabled: false
""",
)


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None  # None → SQLite file under home
    #: MLFLOW_TRACKING_URI as given; None → SQLite under home. May carry a password, so it is
    #: kept out of repr (show it with ``domain.registry.safe_uri``).
    mlflow_uri: str | None = field(default=None, repr=False)

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.sqlite"

    @property
    def mlflow_tracking_uri(self) -> str:
        """Tracking and registry store: ``MLFLOW_TRACKING_URI`` or ``<home>/mlflow/mlflow.db``."""
        return self.mlflow_uri or f"sqlite:///{self.home}/mlflow/mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        """Artifact root for the embedded store's experiments (a server keeps its own root)."""
        return self.home / "mlflow" / "artifacts"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("QG_HOME") or ".qg").expanduser().resolve()
        url = env.get("QG_DATABASE_URL") or None
        mlflow_uri = (env.get("MLFLOW_TRACKING_URI") or "").strip() or None
        return cls(home=home, database_url=url, mlflow_uri=mlflow_uri)


# Dagster behaviour switched by environment variables of the processes that create and execute
# runs (webserver, daemon, `quant-genesis demo`, the benchmark); defaults, never overrides:
# * DAGSTER_EVENT_BATCH_SIZE: a single-run backfill stores its per-partition materialization
#   (and planned) events in batches — one INSERT per 1,000 on PostgreSQL storage instead of one
#   connection and INSERT per event; on the embedded SQLite storage through
#   instance_storage.BatchedSqliteEventLogStorage (Dagster's own stores them one by one).
# * DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS: a run over a partition range records ONE
#   "materialization planned" event per asset holding the range, not one per partition
#   (13 assets x 2,520 sessions = 33k events before the first step starts). Trade-off, from
#   Dagster's own comment: when such a run fails, its partitions show as missing, not failed;
#   the run and the backfill still show as failed.
DAGSTER_ENV_DEFAULTS = {
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
}


def apply_dagster_env_defaults() -> None:
    """Set ``DAGSTER_ENV_DEFAULTS`` in this process's environment where not already set."""
    for name, value in DAGSTER_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)


def prepare_dagster_home(settings: Settings) -> Path:
    """Create the persistent embedded Dagster home with its dagster.yaml (a user-edited one is kept)."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    base_dir = home / "storage"
    # A yaml this project wrote earlier (unedited) is brought up to date; a user's edits are kept.
    previous = {y.format(base_dir=base_dir) for y in _PREVIOUS_EMBEDDED_DAGSTER_YAMLS}
    if not cfg.exists() or cfg.read_text() in previous:
        cfg.write_text(EMBEDDED_DAGSTER_YAML.format(base_dir=base_dir))
    return home
