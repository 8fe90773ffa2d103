"""Dense (session × symbol) grids and start-independent rolling windows for the factor maths.

Factor code turns long panel rows into (T, N) float64 arrays once (``Grid.of`` + ``Grid.dense``),
computes with numpy along the session axis, and gathers results back onto the rows
(``Grid.rows``). The rolling helpers give the value at session D from the last ``L`` sessions
only, summed in a fixed order (oldest to newest), so D's value is bit-identical whatever the first
session of the input frame is, as long as the frame holds D's whole window: a multi-year backfill
and a one-day daily run agree exactly (SPEC §11), and later rows never change earlier ones.

Sessions are grid rows: the frame must cover consecutive XTAI sessions (a hole would make a
"20-session" window silently span more), which ``Grid.of`` checks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import polars as pl

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.errors import QGError


@dataclass(frozen=True, eq=False)
class Grid:
    """The (session, symbol) layout of a long frame sorted by session then symbol."""

    sessions: np.ndarray  # (T,) datetime64[D], consecutive XTAI sessions
    symbols: np.ndarray  # (N,) str, sorted
    t: np.ndarray  # (rows,) session index of each row
    s: np.ndarray  # (rows,) symbol index of each row

    @classmethod
    def of(cls, df: pl.DataFrame, *, what: str = "panel") -> Grid:
        """The grid of ``df`` (columns ``session``, ``symbol``; one row per pair)."""
        for col in ("session", "symbol"):
            if col not in df.columns:
                raise QGError(f"{what}: missing column {col!r}; factor inputs are keyed by it")
        if df.is_empty():
            empty = np.array([], dtype=np.int64)
            return cls(np.array([], dtype="datetime64[D]"), np.array([], dtype=str), empty, empty)
        # integer codes without sorting strings: days as day numbers, symbols by a hash join
        # onto the sorted unique symbols (np.unique on 4.5M strings would take seconds)
        day = df["session"].cast(pl.Int32).to_numpy().astype(np.int64)
        lo = int(day.min())
        seen = np.bincount(day - lo) > 0
        present = np.flatnonzero(seen)
        code = np.cumsum(seen) - 1
        t = code[day - lo]
        sessions = (present + lo).astype("datetime64[D]")
        symbols = df["symbol"].unique().sort()
        s = (
            df.select("symbol")
            .join(symbols.to_frame().with_row_index("_s"), on="symbol", how="left",
                  maintain_order="left")["_s"]
            .to_numpy()
            .astype(np.int64)
        )  # fmt: skip
        if sessions.size > 1:
            pos = calendar.session_index(sessions)
            gaps = np.flatnonzero(np.diff(pos) != 1)
            if gaps.size:
                a, b = sessions[gaps[0]], sessions[gaps[0] + 1]
                raise QGError(
                    f"{what}: sessions jump from {a} to {b} (sessions in between missing); "
                    "materialize the upstream asset for the whole lookback window"
                )
        keys = t * symbols.len() + s
        if np.bincount(keys).max() > 1:
            raise QGError(f"{what}: several rows for one (session, symbol); pass unique rows")
        return cls(sessions=sessions, symbols=symbols.to_numpy().astype(str), t=t, s=s)

    @property
    def shape(self) -> tuple[int, int]:
        return self.sessions.size, self.symbols.size

    @cached_property
    def flat(self) -> np.ndarray:
        """(rows,) position of each row in the raveled (T, N) grid."""
        return self.t * self.symbols.size + self.s

    def dense(self, values, fill: float = np.nan) -> np.ndarray:
        """(T, N) float64 array of ``values`` (one per row); ``fill`` where a pair has no row.
        Nulls become NaN."""
        if isinstance(values, pl.Series):
            # a Float64 series converts its nulls to NaN by itself (one pass, no copy if none)
            values = (values if values.dtype == pl.Float64 else values.cast(pl.Float64)).to_numpy()
        out = np.full(self.shape, fill, dtype=np.float64)
        out.ravel()[self.flat] = np.asarray(values, dtype=np.float64)
        return out

    def missing_mask(self) -> np.ndarray | None:
        """(T, N) bool: the pair has no row; None when every pair has one."""
        if self.t.size == self.shape[0] * self.shape[1]:
            return None
        return ~self.present()

    def present(self) -> np.ndarray:
        """(T, N) bool: the pair has a row."""
        out = np.zeros(self.shape, dtype=bool)
        out.ravel()[self.flat] = True
        return out

    def rows(self, grid: np.ndarray) -> np.ndarray:
        """Gather a (T, N) array back onto the rows."""
        return grid.reshape(-1).take(self.flat)

    def market(self, values, *, what: str = "market series") -> np.ndarray:
        """(T,) array of a per-session value repeated on every row of the session (first row
        wins; all rows of a session must agree)."""
        v = (
            values.cast(pl.Float64).fill_null(np.nan).to_numpy()
            if isinstance(values, pl.Series)
            else np.asarray(values, dtype=np.float64)
        )
        out = np.full(self.sessions.size, np.nan)
        first = np.unique(self.t, return_index=True)[1]
        out[self.t[first]] = v[first]
        return out


@dataclass(eq=False)
class Components:
    """A factor family's result on a grid, before it becomes rows: dense (T, N) arrays (NaN = no
    value; int codes / bools as computed) plus columns that are already on the panel rows.

    ``frame()`` builds the family's table (one row per panel row, ``schema`` order); the
    in-memory stack (``factors.stack``) hands the arrays to the standardization directly and
    never builds the rows it does not keep. ``labels`` maps an int-coded column to its string
    values (code i → labels[i]).
    """

    grid: Grid
    keys: pl.DataFrame  # session, symbol of the panel rows
    schema: pl.Schema
    dense: dict[str, np.ndarray]
    row_columns: dict[str, pl.Series]
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    partial: bool = False  # set by keep(): some columns were dropped

    def frame(self) -> pl.DataFrame:
        """The family's rows (``schema``): dense columns gathered onto the panel rows."""
        if self.partial:
            raise QGError("components: columns were dropped by keep(); build the rows first")
        columns = []
        for name in self.schema:
            if name in self.keys.columns:
                col = self.keys[name]
            elif name in self.row_columns:
                col = self.row_columns[name]
            else:
                col = self.column(name)
            columns.append(col.alias(name))
        return pl.DataFrame(columns).cast(dict(self.schema))

    def column(self, name: str) -> pl.Series:
        """One dense column gathered onto the panel rows as a series of its schema dtype."""
        values = self.grid.rows(self.dense[name])
        dtype = self.schema[name]
        if name in self.labels:
            mapping = dict(enumerate(self.labels[name]))
            return pl.Series(name, values.astype(np.int8)).replace_strict(
                mapping, return_dtype=pl.String
            )
        if dtype == pl.Float64:
            return pl.Series(name, values.astype(np.float64, copy=False), nan_to_null=True)
        if dtype == pl.Boolean:
            return pl.Series(name, values.astype(bool, copy=False), dtype=pl.Boolean)
        return pl.Series(name, values).cast(dtype)

    def array(self, name: str) -> np.ndarray:
        """The (T, N) float64 array of a column, NaN where a pair has no row (a window's value
        there is not a value); a row column is spread onto the grid."""
        if name in self.dense:
            x = np.asarray(self.dense[name], dtype=np.float64)
            missing = self.grid.missing_mask()
            return x if missing is None else np.where(missing, np.nan, x)
        if name in self.row_columns:
            return self.grid.dense(self.row_columns[name])
        raise QGError(f"components: no column {name!r}; have {', '.join(self.schema)}")

    def keep(self, names) -> None:
        """Drop every column not in ``names`` (frees memory when the rows are not built;
        ``frame()`` is not available afterwards)."""
        wanted = set(names)
        for store in (self.dense, self.row_columns):
            for name in [n for n in store if n not in wanted]:
                del store[name]
        self.partial = True


#: Symbols per block in the rolling helpers. A window takes several passes over its array; on a
#: (sessions × 64) block (≈1.3 MB of float64 over ten years) they run in cache instead of
#: streaming the whole (T, N) array through memory each time: ≈2× on the full market, and
#: every column's arithmetic is unchanged (bit-identical results).
BLOCK_SYMBOLS = 64


def by_symbol_blocks(fn):
    """Apply a column-wise ``fn(x, ...)`` (the result of each column depends on that column
    only) to blocks of ``BLOCK_SYMBOLS`` columns of a (T, N) array and assemble the results
    (an array or a tuple of arrays, shaped like ``x``). 1-d and narrow inputs go straight
    through."""

    @functools.wraps(fn)
    def blocked(x, *args, **kwargs):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] <= BLOCK_SYMBOLS:
            return fn(x, *args, **kwargs)
        out = None
        for j in range(0, x.shape[1], BLOCK_SYMBOLS):
            part = fn(np.ascontiguousarray(x[:, j : j + BLOCK_SYMBOLS]), *args, **kwargs)
            parts = part if isinstance(part, tuple) else (part,)
            if out is None:
                out = tuple(np.empty(x.shape, dtype=p.dtype) for p in parts)
            for o, p in zip(out, parts, strict=True):
                o[:, j : j + BLOCK_SYMBOLS] = p
        assert out is not None
        return out if isinstance(part, tuple) else out[0]

    return blocked


def map_symbol_blocks(fn, inputs: dict[str, np.ndarray], *args) -> dict[str, np.ndarray]:
    """``fn(blocks, *args)`` on blocks of ``BLOCK_SYMBOLS`` columns of the (T, N) ``inputs``
    (a dict of contiguous (T, b) arrays) → its dict of (T, b) results, assembled into (T, N)
    arrays. For a computation whose every column depends on the same column of the inputs only:
    the temporaries are block-sized (small, in cache), the values unchanged."""
    n = next(iter(inputs.values())).shape[1]
    out: dict[str, np.ndarray] = {}
    for j in range(0, max(n, 1), BLOCK_SYMBOLS):
        cols = slice(j, j + BLOCK_SYMBOLS)
        part = fn({k: np.ascontiguousarray(a[:, cols]) for k, a in inputs.items()}, *args)
        for k, a in part.items():
            if k not in out:
                out[k] = np.empty((a.shape[0], n), dtype=a.dtype)
            out[k][:, cols] = a
    return out


def _shift_add(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """a + b shifted down by k rows (rows before the first count as 0)."""
    out = a.copy()
    if k < a.shape[0]:
        out[k:] += b[: a.shape[0] - k]
    return out


@by_symbol_blocks
def rolling_sum(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the non-NaN values over the last ``window`` rows (the row included).

    Summed by doubling — sums over 1, 2, 4, … rows, then the window's binary decomposition
    (20 = 16 + 4: the last 16 rows plus the 4 before them) — so each row's sum is a fixed tree
    over its own window's values: bit-identical whatever the frame's first row, and
    O(log window) passes over the data. Rows whose window reaches before the first row see
    fewer values (their count says so).
    """
    if window < 1:
        raise QGError(f"rolling window={window}; use 1 or more sessions")
    valid = ~np.isnan(x)
    powers = [np.where(valid, x, 0.0)]  # powers[k]: sum over the last 2**k rows
    while 2 ** len(powers) <= window:
        k = 2 ** (len(powers) - 1)
        powers.append(_shift_add(powers[-1], powers[-1], k))
    total, offset = None, 0
    for k in range(len(powers) - 1, -1, -1):  # largest block first, ending at the row itself
        if window & (1 << k):
            if total is None:
                total = powers[k].copy() if k == 0 else powers[k]
            else:
                total = _shift_add(total, powers[k], offset)
            offset += 1 << k
    assert total is not None
    return total, rolling_count(valid, window)


@by_symbol_blocks
def rolling_count(mask: np.ndarray, window: int) -> np.ndarray:
    """Number of True over the last ``window`` rows (exact: integer cumulative sums)."""
    c = np.cumsum(mask, axis=0, dtype=np.int32)  # counts never exceed the session count
    out = c.copy()
    out[window:] -= c[:-window]
    return out


@by_symbol_blocks
def rolling_int_sum(x: np.ndarray, window: int) -> np.ndarray:
    """Exact rolling sum of int64 values (cumulative-sum difference; integers are associative,
    so long windows cost one pass and stay start-independent)."""
    c = np.cumsum(x, axis=0, dtype=np.int64)
    out = c.copy()
    out[window:] -= c[:-window]
    return out


@by_symbol_blocks
def rolling_mean(x: np.ndarray, window: int, min_count: int | None = None) -> np.ndarray:
    """Mean of the non-NaN values over the last ``window`` rows; NaN below ``min_count``
    values (default: the whole window)."""
    total, count = rolling_sum(x, window)
    need = window if min_count is None else min_count
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= need, total / np.maximum(count, 1), np.nan)


@by_symbol_blocks
def rolling_std(x: np.ndarray, window: int, min_count: int | None = None) -> np.ndarray:
    """Sample standard deviation (ddof=1) over the last ``window`` rows from the rolling sums of
    x and x² (start-independent like ``rolling_sum``), NaN below ``min_count`` values."""
    need = window if min_count is None else min_count
    total, count = rolling_sum(x, window)
    squares, _ = rolling_sum(x * x, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (squares - total * total / count) / (count - 1)
        return np.where((count >= max(need, 2)), np.sqrt(np.maximum(var, 0.0)), np.nan)


def lag(x: np.ndarray, k: int) -> np.ndarray:
    """The value ``k`` rows earlier (NaN before the first row)."""
    out = np.full_like(x, np.nan, dtype=np.float64)
    if k < x.shape[0]:
        out[k:] = x[: x.shape[0] - k]
    return out


@by_symbol_blocks
def streak(mask: np.ndarray, cap: int) -> np.ndarray:
    """Consecutive True rows ending at each row, capped at ``cap`` (int64). With at least ``cap``
    rows of history the value is exact whatever the frame's first row."""
    m = mask.astype(bool)
    c = np.cumsum(m, axis=0, dtype=np.int64)
    reset = np.where(~m, c, 0)
    np.maximum.accumulate(reset, axis=0, out=reset)
    return np.minimum(c - reset, cap)


def history_count(present: np.ndarray, window: int) -> np.ndarray:
    """Rows of the symbol present in the last ``window`` rows: the warm-up test for a window."""
    return rolling_count(present, window)
