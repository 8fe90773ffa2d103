"""Where Quant Genesis keeps its state, resolved from the environment in one place.

Everything embedded lives under ``QG_HOME`` (default ``./.qg``): the SQLite warehouse, the
Dagster home (persistent, unlike ``dagster dev``'s temporary folder), and later the MLflow store
and the sidecar journal. ``QG_DATABASE_URL`` moves the warehouse to PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Embedded Dagster instance: SQLite storage under QG_HOME, no onboarding modal, and at most one
# run at a time (SQLite instance storage locks under concurrent runs; backfills are single runs).
EMBEDDED_DAGSTER_YAML = """\
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
"""


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None  # None → SQLite file under home

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.sqlite"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("QG_HOME") or ".qg").expanduser().resolve()
        url = env.get("QG_DATABASE_URL") or None
        return cls(home=home, database_url=url)


def prepare_dagster_home(settings: Settings) -> Path:
    """Create the persistent embedded Dagster home with its dagster.yaml (kept if present)."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(EMBEDDED_DAGSTER_YAML.format(base_dir=home / "storage"))
    return home
