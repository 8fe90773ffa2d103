"""Dagster resources: the warehouse and the data source. Thin wrappers over domain code; the
environment is read at run time (never at import), secrets only through ``EnvVar``."""

from functools import lru_cache
from typing import Any

import dagster as dg
from sqlalchemy.engine import Engine

from quant_genesis_dagster.defs.common import as_failure
from quant_genesis_dagster.domain.sources.base import DataSource, make_source
from quant_genesis_dagster.domain.warehouse.db import open_warehouse
from quant_genesis_dagster.errors import QGError
from quant_genesis_dagster.settings import Settings


def _has_password(url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        return bool(make_url(url).password)
    except Exception:  # malformed: open_warehouse reports it with the setting's name
        return False


@lru_cache(maxsize=4)
def _engine(url: str | None, home: str) -> Engine:
    from pathlib import Path

    return open_warehouse(url, Path(home))


@lru_cache(maxsize=2)
def _source(name: str, options: tuple[tuple[str, Any], ...]) -> DataSource:
    # Cached per process: the sample market simulates its latent world once and every raw
    # table of the run is cut from it.
    return make_source(name, dict(options))


class WarehouseResource(dg.ConfigurableResource):
    """The SQL warehouse. Empty ``url`` → ``QG_DATABASE_URL``, else SQLite under ``QG_HOME``."""

    url: str = ""
    home: str = ""

    def settings(self) -> Settings:
        if self.url and _has_password(self.url):
            # run config is stored and shown by Dagster; credentials belong in the environment
            raise QGError(
                "warehouse resource: `url` carries a password; set QG_DATABASE_URL in the "
                "environment instead and leave `url` empty"
            )
        env = Settings.from_env()
        return Settings(
            home=Settings.from_env({"QG_HOME": self.home}).home if self.home else env.home,
            database_url=self.url or env.database_url,
        )

    def engine(self) -> Engine:
        try:
            s = self.settings()
            return _engine(s.database_url, str(s.home))
        except QGError as err:
            raise as_failure(err) from err

    def location(self) -> str:
        """Where the data lives, password hidden."""
        return self.engine().url.render_as_string(hide_password=True)


class DataSourceResource(dg.ConfigurableResource):
    """Which source feeds the raw layer (SPEC §3). ``sample`` needs no network and no keys."""

    name: str = "sample"
    seed: int = 7
    n_symbols: int = 300
    faults: bool = True

    def source(self) -> DataSource:
        options: dict[str, Any] = {}
        if self.name == "sample":
            options = {"seed": self.seed, "n_symbols": self.n_symbols, "faults": self.faults}
        return _source(self.name, tuple(sorted(options.items())))
