"""The one interface every data source implements, and the registry that picks one by name.

A source returns the raw tables of SPEC §3 as polars frames in the warehouse's column contract
(``domain.tables``): ``stock_info()`` and ``fetch(tables, start, end)`` for the rows whose
``session`` lies in [start, end]. Which source runs is configuration (the Dagster ``data_source``
resource), never a code edit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import polars as pl

from quant_genesis_dagster.domain.warehouse.models import RAW_PARTITIONED_TABLES
from quant_genesis_dagster.errors import QGError


class DataSource(Protocol):
    """A vendor adapter. Implementations do their own I/O; callers see only frames."""

    name: str

    def stock_info(self) -> pl.DataFrame:
        """The security master, delisted names included."""
        ...

    def fetch(self, tables: Iterable[str], start: dt.date, end: dt.date) -> dict[str, pl.DataFrame]:
        """Raw rows of each requested partitioned table with ``session`` in [start, end]."""
        ...


_REGISTRY: dict[str, Callable[[Mapping[str, Any]], DataSource]] = {}
# Sources the spec names whose adapters come in later issues (listed in the error message).
PLANNED_SOURCES = ("finmind", "polygon", "finnhub", "taifex", "shioaji", "files")


def register(name: str) -> Callable:
    def deco(factory: Callable[[Mapping[str, Any]], DataSource]):
        _REGISTRY[name] = factory
        return factory

    return deco


def available_sources() -> list[str]:
    return sorted(_REGISTRY)


def make_source(name: str, options: Mapping[str, Any] | None = None) -> DataSource:
    """Build the source called ``name``; a one-line error for an unknown name."""
    # The registry fills on import of the adapter modules.
    from quant_genesis_dagster.domain.sources import sample  # noqa: F401

    factory = _REGISTRY.get(name)
    if factory is None:
        planned = [s for s in PLANNED_SOURCES if s not in _REGISTRY]
        hint = f" (not yet available: {', '.join(planned)})" if planned else ""
        raise QGError(
            f"unknown data source {name!r}: set the data_source resource's `name` to one of "
            f"{', '.join(available_sources())}{hint}"
        )
    return factory(dict(options or {}))


def check_tables(tables: Iterable[str]) -> list[str]:
    """Validate requested table names against the raw partitioned tables."""
    out = list(tables)
    unknown = [t for t in out if t not in RAW_PARTITIONED_TABLES]
    if unknown:
        raise QGError(
            f"unknown raw table(s) {', '.join(unknown)}; known: {', '.join(RAW_PARTITIONED_TABLES)}"
        )
    return out
