"""F_C — the chip / main-force factor (籌碼, SPEC §5.1) and the cost-line maths shared with the
intraday RCNC (SPEC §7.2).

Three parts:

* ``main_force_flows`` — per (session, symbol): the net buying of the day's top broker branches
  (the "main force"), with the institutional fallback when a symbol-day has no broker rows, the
  broker concentration and the dealer tier ratio. Input: cleaned broker rows + aligned panel rows.
* ``cost_line`` / ``cost_lines`` — a cumulative net cost line ``Σ p·n / Σ n`` whose state carries
  across batches exactly (the sidecar's RCNC imports it).
* ``chip_factors`` — the per-row components over session windows: the main-force average cost
  line LAC and its distance, consecutive net-buy days, the 20-session net ratio, rolling
  concentration and tier ratio, and the sidecar's end-of-day aggregates when present.
  ``COMPONENTS`` declares the signed weights of their z-scores in the composite F_C (computed in
  ``standardize``).

Units: shares for flows and volumes, TWD per share for prices and cost lines, plain ratios
(0.3 = 30%) for the rest. Point in time: a row for session D uses only rows with session <= D,
and its value is bit-identical whatever the first session of the input frame, as long as the
frame holds D's windows (integer fixed-point sums and ``grid``'s fixed-order rolling sums).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from quant_genesis_dagster.domain.factors import grid as g
from quant_genesis_dagster.domain.params import FactorSettings
from quant_genesis_dagster.errors import QGError

#: The default settings (frozen, so safe as an argument default).
DEFAULT_SETTINGS = FactorSettings()

#: Columns ``main_force_flows`` reads from the cleaned broker rows and the panel.
BROKER_COLUMNS: tuple[str, ...] = ("session", "symbol", "broker_id", "buy_shares", "sell_shares")
PANEL_FLOW_COLUMNS: tuple[str, ...] = ("session", "symbol", "inst_net")

#: Output of ``main_force_flows``.
FLOWS_SCHEMA = pl.Schema(
    {
        "session": pl.Date(),
        "symbol": pl.String(),
        "mf_net": pl.Int64(),
        "mf_source": pl.String(),
        "mf_buy": pl.Int64(),
        "mf_sell": pl.Int64(),
        "branches": pl.Int32(),
        "broker_concentration": pl.Float64(),
        "tier_ratio": pl.Float64(),
    }
)

#: mf_source values.
SOURCE_BROKER = "broker"
SOURCE_INSTITUTIONAL = "institutional"

#: Columns ``chip_factors`` reads.
FLOW_INPUT_COLUMNS: tuple[str, ...] = (
    "session",
    "symbol",
    "mf_net",
    "mf_source",
    "broker_concentration",
    "tier_ratio",
)
PANEL_PRICE_COLUMNS: tuple[str, ...] = (
    "session",
    "symbol",
    "close",
    "close_adj",
    "vwap_adj",
    "volume_shares",
)
#: End-of-day aggregates of the intraday sidecar (SPEC §5.1, §7.5); each may be absent.
EOD_COLUMNS: tuple[str, ...] = ("rcnc_close", "rcnc_vol", "sweep_ratio", "liquidity_pressure")

#: Output of ``chip_factors``.
CHIP_SCHEMA = pl.Schema(
    {
        "session": pl.Date(),
        "symbol": pl.String(),
        "mf_net": pl.Int64(),
        "mf_source": pl.String(),
        "lac": pl.Float64(),
        "lac_status": pl.String(),
        "lac_dist": pl.Float64(),
        "consec_buy_days": pl.Int32(),
        "net_ratio_20d": pl.Float64(),
        "broker_concentration_20d": pl.Float64(),
        "tier_ratio_20d": pl.Float64(),
        "rcnc_close_dev": pl.Float64(),
        "rcnc_vol": pl.Float64(),
        "sweep_ratio": pl.Float64(),
        "liquidity_pressure": pl.Float64(),
        "warmup": pl.Boolean(),
    }
)

#: lac_status values: the LAC is defined ("ok"), the symbol lacks a full window ("warmup"), the
#: window's net accumulation is <= 0 or below ``lac_min_net_share`` of its volume ("immaterial"),
#: or the window has no main-force flow at all ("no_flow").
LAC_OK, LAC_WARMUP, LAC_IMMATERIAL, LAC_NO_FLOW = "ok", "warmup", "immaterial", "no_flow"
_LAC_STATUSES = (LAC_OK, LAC_WARMUP, LAC_IMMATERIAL, LAC_NO_FLOW)

#: Signed weights of the z-scored components in the composite F_C (a weighted mean of the
#: available z-scores, computed in ``standardize``). Chosen by measurement on the sample market
#: (default settings, 120 symbols, 500 sessions to 2019-12-31, sidecar aggregates rebuilt from
#: the sample ticks with ``cost_lines``): mean daily cross-sectional Spearman correlation of each
#: component with the planted chip exposure over the rows past the LAC warm-up (321 sessions),
#: seed 7 / seed 11 (tests/test_chip.py pins seed 7 over all 481 sessions with a net ratio):
#:
#:   net_ratio_20d +0.55 / +0.55    consec_buy_days +0.30 / +0.31    lac_dist +0.09 / -0.02
#:   broker_concentration_20d -0.03 / +0.00    tier_ratio_20d -0.02 / +0.02
#:   rcnc_close_dev -0.01 / -0.01   rcnc_vol +0.01 / +0.01   sweep_ratio +0.07 / -0.01
#:   liquidity_pressure +0.01 / +0.04
#:
#: Only components whose sign is stable and |rho| > 0.1 carry weight; F_C (these two) reaches
#: +0.57 / +0.57 against +0.55 for the net ratio alone, and adding any of the others at ±0.1 to
#: ±0.25 changes it by less than ±0.01 with a sign that flips between seeds.
COMPONENTS: dict[str, float] = {
    # Σ main-force net / Σ volume over 20 sessions: the direct reading of accumulation (a
    # campaign is sized in proportion to volume and persists for weeks). The anchor.
    "net_ratio_20d": 1.0,
    # a run of net-buy days is persistent accumulation, positive like the net ratio; half weight
    # because it is a capped count with many ties (0 for every net seller) and partly redundant.
    "consec_buy_days": 0.5,
    # Not weighted (reported for the signals and the RL state):
    # * broker_concentration_20d, tier_ratio_20d measure HOW concentrated the flow is, not its
    #   direction — a distribution campaign is as concentrated as an accumulation — so they
    #   cannot carry a signed exposure (measured ≈ 0).
    # * lac_dist is read as a level by the rules (SPEC §6 P1: 0 < LAC_dist <= lac_dev_max; the
    #   take-profit warning above t_runup_dev); its cross-sectional rank has no stable sign.
    # * the sidecar aggregates (rcnc_close_dev, rcnc_vol, sweep_ratio, liquidity_pressure) exist
    #   only on days the sidecar ran; sweep_ratio is unsigned (buy and sell sweeps) and is used
    #   by the P2 rule directly; none shows a stable sign against the exposure.
}
#: F_C is not neutralized within industry (the campaign flow is symbol-specific).
INDUSTRY_NEUTRAL = False

#: Sessions of broker rows per block in ``main_force_flows`` (~36k rows per session at 1,800
#: symbols → ~4M rows per block).
BLOCK_SESSIONS = 120

#: Fixed-point scale of the price × shares products in the LAC sums (milli-TWD): int64 sums are
#: exact and associative, so a window's sum does not depend on where the frame starts.
_LAC_SCALE = 1000


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _require(df: pl.DataFrame, columns: tuple[str, ...], what: str) -> None:
    for col in columns:
        if col not in df.columns:
            raise QGError(f"{what}: missing column {col!r}; pass {what} rows with {col}")


def _unique_keys(df: pl.DataFrame, what: str) -> None:
    dup = df.select("session", "symbol").filter(pl.struct("session", "symbol").is_duplicated())
    if dup.height:
        r = dup.row(0, named=True)
        raise QGError(
            f"{what}: several rows for {r['session']} {r['symbol']}; pass one row per "
            "(session, symbol)"
        )


def _join_onto(keys: pl.DataFrame, right: pl.DataFrame, what: str) -> pl.DataFrame:
    """``right``'s rows on the (session, symbol) ``keys`` (left join, keys' order); several
    ``right`` rows for one key of ``keys`` are an error (cheap: only the row count is checked
    unless it is off). Fast path: ``right`` already has exactly the keys' rows in order."""
    if right.height == keys.height and right.select("session", "symbol").equals(keys):
        return keys.hstack(right.drop("session", "symbol"))
    out = keys.join(right, on=["session", "symbol"], how="left", maintain_order="left")
    if out.height != keys.height:
        _unique_keys(right.join(keys, on=["session", "symbol"], how="semi"), what)
    return out


def _float(name: str, values: np.ndarray) -> pl.Series:
    """Float64 series with NaN as null."""
    return pl.Series(name, np.asarray(values, dtype=np.float64), dtype=pl.Float64, nan_to_null=True)


# --------------------------------------------------------------------------------------------
# main-force flows
# --------------------------------------------------------------------------------------------


def _daily_broker(block: pl.DataFrame, top: int, tier: int) -> pl.DataFrame:
    """One row per (session, symbol) of a block of broker rows: branches, gross (Σ buy + sell
    of all branches), and over the top ``top`` branches by |buy − sell| (ties: lower broker_id
    first) Σ net, Σ buy, Σ sell, Σ |net|, plus Σ |net| of the top ``tier``. Shares."""
    return (
        block.lazy()
        .select(
            pl.col("session").cast(pl.Date),
            pl.col("symbol").cast(pl.String),
            pl.col("broker_id").cast(pl.String),
            buy=pl.col("buy_shares").cast(pl.Int64).fill_null(0),
            sell=pl.col("sell_shares").cast(pl.Int64).fill_null(0),
        )
        .with_columns(net=pl.col("buy") - pl.col("sell"))
        .with_columns(abs_net=pl.col("net").abs())
        # one global sort, then the groups keep that order: head(k) = the top k branches
        .sort(
            ["session", "symbol", "abs_net", "broker_id"],
            descending=[False, False, True, False],
        )
        .group_by("session", "symbol", maintain_order=True)
        .agg(
            branches=pl.len().cast(pl.Int32),
            gross=(pl.col("buy") + pl.col("sell")).sum(),
            mf_net=pl.col("net").head(top).sum(),
            mf_buy=pl.col("buy").head(top).sum(),
            mf_sell=pl.col("sell").head(top).sum(),
            top_abs=pl.col("abs_net").head(top).sum(),
            tier_abs=pl.col("abs_net").head(tier).sum(),
        )
        .collect()
    )


def _blocks(broker_flows: pl.DataFrame, sessions: np.ndarray, block_sessions: int):
    """The broker rows of ``sessions`` in blocks of ``block_sessions`` sessions."""
    col = broker_flows["session"].cast(pl.Date)
    ordered = col.is_sorted()
    for i in range(0, sessions.size, block_sessions):
        lo, hi = sessions[i], sessions[min(i + block_sessions, sessions.size) - 1]
        lo_d, hi_d = lo.astype(object), hi.astype(object)
        if ordered:
            a = int(col.search_sorted(lo_d, side="left"))
            b = int(col.search_sorted(hi_d, side="right"))
            yield broker_flows.slice(a, b - a)
        else:
            yield broker_flows.filter(col.is_between(lo_d, hi_d))


def main_force_flows(
    broker_flows: pl.DataFrame,
    panel: pl.DataFrame,
    settings: FactorSettings = DEFAULT_SETTINGS,
    *,
    block_sessions: int = BLOCK_SESSIONS,
) -> pl.DataFrame:
    """Main-force net flow per panel row (SPEC §5.1), ``FLOWS_SCHEMA``, in the panel's row order.

    * ``broker_flows``: cleaned broker rows (``BROKER_COLUMNS``; null share counts count as 0).
    * ``panel``: aligned panel rows (``PANEL_FLOW_COLUMNS``); it defines the output rows.

    Per symbol-day with broker rows (``mf_source`` "broker"): the branches are ranked by
    |buy − sell| (shares; ties by broker_id ascending, so the choice is deterministic) and the
    top ``settings.top_branches`` make the main force: ``mf_net`` = Σ (buy − sell), ``mf_buy`` /
    ``mf_sell`` = Σ buy / Σ sell of them (shares); ``branches`` = broker rows of the day;
    ``broker_concentration`` = Σ_top |net| / Σ_all (buy + sell) (null on zero gross);
    ``tier_ratio`` = Σ over the top ``settings.tier_branches`` of |net| / Σ_top |net| (null when
    that is 0). Without broker rows: ``mf_net`` = the panel's ``inst_net`` (``mf_source``
    "institutional"), or null with a null source when that is null too; ``branches`` = 0 and
    the other columns null.

    Broker rows are processed ``block_sessions`` sessions at a time (bounded memory on a
    multi-year range); rows of sessions or symbols not on the panel are ignored.
    """
    _require(broker_flows, BROKER_COLUMNS, "broker_flows")
    _require(panel, PANEL_FLOW_COLUMNS, "panel")
    if not isinstance(block_sessions, int) or block_sessions < 1:
        raise QGError(f"main_force_flows: block_sessions={block_sessions!r}; use an integer >= 1")
    keys = panel.select(
        pl.col("session").cast(pl.Date),
        pl.col("symbol").cast(pl.String),
        pl.col("inst_net").cast(pl.Int64),
    )
    _unique_keys(keys, "panel")
    sessions = np.unique(keys["session"].to_numpy().astype("datetime64[D]"))
    daily = [
        _daily_broker(block, settings.top_branches, settings.tier_branches)
        for block in _blocks(broker_flows, sessions, block_sessions)
        if block.height
    ]
    daily_schema = {
        "session": pl.Date,
        "symbol": pl.String,
        "branches": pl.Int32,
        "gross": pl.Int64,
        "mf_net": pl.Int64,
        "mf_buy": pl.Int64,
        "mf_sell": pl.Int64,
        "top_abs": pl.Int64,
        "tier_abs": pl.Int64,
    }
    day = pl.concat(daily) if daily else pl.DataFrame(schema=daily_schema)
    has = pl.col("branches").is_not_null()
    return (
        keys.join(day, on=["session", "symbol"], how="left", maintain_order="left")
        .select(
            "session",
            "symbol",
            mf_net=pl.when(has).then(pl.col("mf_net")).otherwise(pl.col("inst_net")),
            mf_source=pl.when(has)
            .then(pl.lit(SOURCE_BROKER))
            .when(pl.col("inst_net").is_not_null())
            .then(pl.lit(SOURCE_INSTITUTIONAL)),
            mf_buy="mf_buy",
            mf_sell="mf_sell",
            branches=pl.col("branches").fill_null(0),
            broker_concentration=pl.when(pl.col("gross") > 0).then(
                pl.col("top_abs") / pl.col("gross")
            ),
            tier_ratio=pl.when(pl.col("top_abs") > 0).then(pl.col("tier_abs") / pl.col("top_abs")),
        )
        .cast(dict(FLOWS_SCHEMA))
    )


# --------------------------------------------------------------------------------------------
# cost lines (shared with the intraday RCNC)
# --------------------------------------------------------------------------------------------

#: Cost is accumulated in integer units of 2**-10 TWD: integer sums are exact, so any split of a
#: sequence into batches (and any segmentation of many symbols) gives bit-identical lines, and
#: the carried float ``cum_cost`` (a multiple of 2**-10) converts back exactly while
#: |cum_cost| < 2**53 × 2**-10 ≈ 8.8e12 TWD.
_COST_SCALE = 1024


@dataclass(frozen=True)
class CostLineState:
    """Carried state of one symbol's cost line.

    ``cum_net`` shares (Σ net), ``cum_cost`` TWD (Σ price × net, a multiple of 2**-10 TWD),
    ``last`` TWD/share (the last valid line value; NaN before the first)."""

    cum_net: int = 0
    cum_cost: float = 0.0
    last: float = math.nan


#: State of many symbols' cost lines: (cum_net int64[N], cum_cost float64[N], last float64[N]),
#: indexed by symbol index; ``cost_states(n)`` is the start-of-session state.
CostStates = tuple[np.ndarray, np.ndarray, np.ndarray]


def cost_states(n_symbols: int) -> CostStates:
    """The start-of-session state of ``n_symbols`` cost lines (nothing accumulated)."""
    return (
        np.zeros(n_symbols, dtype=np.int64),
        np.zeros(n_symbols, dtype=np.float64),
        np.full(n_symbols, np.nan),
    )


def _as_shares(net, what: str) -> np.ndarray:
    arr = np.asarray(net)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise QGError(f"{what}: net contains NaN or inf; pass whole shares (0 for no flow)")
    return np.rint(arr).astype(np.int64)


def cost_lines(symbol_idx, price, net, state: CostStates) -> tuple[np.ndarray, CostStates]:
    """Cost lines of many symbols over one batch of events in arrival order.

    ``symbol_idx`` (int, into the state arrays), ``price`` (TWD/share), ``net`` (shares, signed:
    + buyer-initiated, − seller-initiated, 0 none) per event. Per symbol, in order:
    ``cum_net = Σ net``, ``cum_cost = Σ price·net`` from the carried ``state``; the line is
    ``cum_cost / cum_net`` where ``cum_net != 0``, else the last valid value (carried too), else
    NaN. Returns the line per event (arrival order) and the new state (fresh arrays; symbols
    without events keep theirs). Processing a sequence whole or in any split into batches,
    carrying the state, gives bit-identical lines (integer fixed-point sums). Vectorized: one
    stable sort by symbol and segmented cumulative sums.
    """
    cum_net0, cum_cost0, last0 = (np.asarray(a) for a in state)
    sym = np.asarray(symbol_idx, dtype=np.int64)
    p = np.asarray(price, dtype=np.float64)
    n = _as_shares(net, "cost_lines")
    if not sym.shape == p.shape == n.shape or sym.ndim != 1:
        raise QGError("cost_lines: symbol_idx, price and net must be 1-d arrays of one length")
    if sym.size and (sym.min() < 0 or sym.max() >= cum_net0.size):
        raise QGError(
            f"cost_lines: symbol index outside the state (0..{cum_net0.size - 1}); size the "
            "state with cost_states(number of symbols)"
        )
    if not np.isfinite(p[n != 0]).all():
        raise QGError("cost_lines: price is NaN or inf on an event with net flow; pass prices")
    new_net, new_cost, new_last = (
        cum_net0.astype(np.int64),
        cum_cost0.astype(float),
        last0.astype(float),
    )
    if sym.size == 0:
        return np.empty(0), (new_net, new_cost, new_last)

    order = np.argsort(sym, kind="stable")
    s = sym[order]
    nn = n[order]
    q = np.rint(np.where(nn != 0, p[order], 0.0) * nn * _COST_SCALE).astype(np.int64)
    first = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # segment starts
    seg = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1  # segment of each event
    seg_sym = s[first]
    cost_int0 = np.rint(cum_cost0[seg_sym].astype(float) * _COST_SCALE).astype(np.int64)

    cn = np.cumsum(nn)
    cn = cn - (cn - nn)[first][seg] + cum_net0[seg_sym].astype(np.int64)[seg]
    cq = np.cumsum(q)
    cq = cq - (cq - q)[first][seg] + cost_int0[seg]

    valid = cn != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (cq / _COST_SCALE) / np.where(valid, cn, 1)
    pos = np.maximum.accumulate(np.where(valid, np.arange(s.size), -1))
    own = pos >= first[seg]  # a valid value earlier in this symbol's batch
    line_sorted = np.where(own, value[np.maximum(pos, 0)], last0[s].astype(float))

    lines = np.empty(s.size)
    lines[order] = line_sorted
    last_ev = np.r_[first[1:], s.size] - 1
    new_net[seg_sym] = cn[last_ev]
    new_cost[seg_sym] = cq[last_ev] / _COST_SCALE
    new_last[seg_sym] = line_sorted[last_ev]
    return lines, (new_net, new_cost, new_last)


def cost_line(
    price,
    net,
    *,
    cum_net0: int = 0,
    cum_cost0: float = 0.0,
    last0: float = math.nan,
) -> tuple[np.ndarray, CostLineState]:
    """Cost line of ONE symbol's ordered events (``cost_lines`` with one symbol): the line per
    event (TWD/share) and the state to carry into the next batch."""
    p = np.asarray(price, dtype=np.float64)
    lines, (cn, cc, last) = cost_lines(
        np.zeros(p.shape, dtype=np.int64),
        p,
        net,
        (np.array([cum_net0], np.int64), np.array([cum_cost0], float), np.array([last0], float)),
    )
    return lines, CostLineState(cum_net=int(cn[0]), cum_cost=float(cc[0]), last=float(last[0]))


# --------------------------------------------------------------------------------------------
# chip factors
# --------------------------------------------------------------------------------------------


def _eod_frame(eod: pl.DataFrame | None, keys: pl.DataFrame) -> pl.DataFrame:
    """The eod aggregates on the panel rows (null where absent)."""
    nulls = keys.with_columns(pl.lit(None, pl.Float64).alias(c) for c in EOD_COLUMNS)
    nulls = nulls.select(EOD_COLUMNS)
    if eod is None or eod.height == 0:
        return nulls
    _require(eod, ("session", "symbol"), "eod aggregates")
    e = eod.select(
        pl.col("session").cast(pl.Date),
        pl.col("symbol").cast(pl.String),
        *(
            (pl.col(c) if c in eod.columns else pl.lit(None)).cast(pl.Float64).alias(c)
            for c in EOD_COLUMNS
        ),
    ).with_columns(pl.col(EOD_COLUMNS).fill_nan(None))
    return _join_onto(keys, e, "eod aggregates").select(EOD_COLUMNS)


def chip_factors(
    flows: pl.DataFrame,
    panel: pl.DataFrame,
    eod: pl.DataFrame | None = None,
    settings: FactorSettings = DEFAULT_SETTINGS,
    *,
    layout: g.Grid | None = None,
) -> pl.DataFrame:
    """The chip components per panel row (``CHIP_SCHEMA``, panel row order); the rows of
    ``chip_components`` (see there for the definitions)."""
    return chip_components(flows, panel, eod, settings, layout=layout).frame()


def chip_components(
    flows: pl.DataFrame,
    panel: pl.DataFrame,
    eod: pl.DataFrame | None = None,
    settings: FactorSettings = DEFAULT_SETTINGS,
    *,
    layout: g.Grid | None = None,
) -> g.Components:
    """The chip components on the panel's grid (``CHIP_SCHEMA`` columns; ``frame()`` gives the
    rows in panel order).

    ``flows``: ``main_force_flows`` rows; ``panel``: aligned panel rows (``PANEL_PRICE_COLUMNS``)
    over consecutive sessions: the history the windows need plus the sessions wanted (the caller
    filters). ``eod``: the sidecar's end-of-day aggregates (session, symbol and any of
    ``EOD_COLUMNS``) or None.

    With ``n`` = mf_net (shares; null counts as 0), ``p`` = vwap_adj (close_adj when null;
    TWD/share), ``v`` = volume_shares (null counts as 0), ``L`` = ``settings.lac_window``,
    ``F`` = ``settings.flow_window``:

    * ``lac`` = Σ_L p·n / Σ_L n (TWD/share, adjusted) where the window is full (the symbol is on
      the panel all L sessions), Σ_L n > 0 and Σ_L n >= lac_min_net_share × Σ_L v; else null and
      ``lac_status`` says why (``LAC_*``); ``warmup`` = the window is not full.
    * ``lac_dist`` = close_adj / lac − 1.
    * ``consec_buy_days`` = sessions with n > 0 in a row ending at D, capped at streak_cap.
    * ``net_ratio_20d`` = Σ_F n / Σ_F v; null with fewer than F sessions on the panel, no mf_net
      in the window or zero volume.
    * ``broker_concentration_20d``, ``tier_ratio_20d`` = means over the last F sessions of the
      daily values, null with fewer than F // 2 values (half a window: a symbol that loses its
      broker report for a few days keeps a reading, one that only has a couple does not).
    * ``rcnc_close_dev`` = rcnc_close / close − 1 (raw close: the RCNC is in raw prices);
      ``rcnc_vol``, ``sweep_ratio``, ``liquidity_pressure`` copied; all null without eod.
    """
    _require(flows, FLOW_INPUT_COLUMNS, "flows")
    _require(panel, PANEL_PRICE_COLUMNS, "panel")
    grid = layout or g.Grid.of(panel)
    keys = panel.select(pl.col("session").cast(pl.Date), pl.col("symbol").cast(pl.String))
    f = flows.select(
        pl.col("session").cast(pl.Date),
        pl.col("symbol").cast(pl.String),
        pl.col("mf_net").cast(pl.Int64),
        pl.col("mf_source").cast(pl.String),
        pl.col("broker_concentration").cast(pl.Float64).fill_nan(None),
        pl.col("tier_ratio").cast(pl.Float64).fill_nan(None),
    )
    rows = _join_onto(keys, f, "flows")
    shape = grid.shape

    mf = rows["mf_net"]
    known = np.zeros(shape, dtype=bool)
    known[grid.t, grid.s] = mf.is_not_null().to_numpy()
    n = np.zeros(shape, dtype=np.int64)
    n[grid.t, grid.s] = mf.fill_null(0).to_numpy()
    v = np.zeros(shape, dtype=np.int64)
    v[grid.t, grid.s] = panel["volume_shares"].cast(pl.Int64).fill_null(0).to_numpy()
    price = panel.select(
        pl.coalesce(pl.col("vwap_adj").fill_nan(None), pl.col("close_adj").fill_nan(None))
    ).to_series()
    inputs = {
        "present": grid.present(),
        "known": known,
        "n": n,
        "v": v,
        "p": grid.dense(price),
        "close_adj": grid.dense(panel["close_adj"].cast(pl.Float64).fill_nan(None)),
        "conc": grid.dense(rows["broker_concentration"]),
        "tier": grid.dense(rows["tier_ratio"]),
    }
    # every window is per symbol: blocks of symbols keep the temporaries small and in cache
    dense = g.map_symbol_blocks(_chip_windows, inputs, settings)
    del inputs, known, n, v

    # --- sidecar end-of-day aggregates --------------------------------------------------------
    e = _eod_frame(eod, keys)
    close = panel["close"].cast(pl.Float64).fill_nan(None)
    rcnc_dev = e.select(pl.when(close > 0).then(pl.col("rcnc_close") / close - 1.0)).to_series()

    return g.Components(
        grid=grid,
        keys=keys,
        schema=CHIP_SCHEMA,
        dense=dense,
        row_columns={
            "mf_net": rows["mf_net"],
            "mf_source": rows["mf_source"],
            "rcnc_close_dev": rcnc_dev,
            "rcnc_vol": e["rcnc_vol"],
            "sweep_ratio": e["sweep_ratio"],
            "liquidity_pressure": e["liquidity_pressure"],
        },
        labels={"lac_status": _LAC_STATUSES},
    )


def _chip_windows(x: dict[str, np.ndarray], settings: FactorSettings) -> dict[str, np.ndarray]:
    """The windowed chip components of a block of symbols (``chip_components`` defines them)
    from its (T, b) inputs: present, known (mf_net not null), n (mf_net, 0 for null), v
    (volume), p (cost price), close_adj, conc / tier (daily concentration and tier ratio)."""
    L, F = settings.lac_window, settings.flow_window
    present, known, n, v, p = x["present"], x["known"], x["n"], x["v"], x["p"]

    # --- LAC: exact int64 window sums (milli-TWD for p·n) -------------------------------------
    # a flow without any price (before the first bar) cannot enter the cost: left out of both
    n_lac = np.where(np.isnan(p), 0, n)
    pn = np.zeros(n.shape, dtype=np.int64)
    has_pn = n_lac != 0
    pn[has_pn] = np.rint(p[has_pn] * n_lac[has_pn] * _LAC_SCALE).astype(np.int64)
    sum_pn = g.rolling_int_sum(pn, L)
    sum_n = g.rolling_int_sum(n_lac, L)
    sum_v = g.rolling_int_sum(v, L)
    full = g.history_count(present, L) >= L
    flow_days = g.rolling_count(known, L)
    material = (sum_n > 0) & (sum_n >= settings.lac_min_net_share * sum_v)
    ok = full & (flow_days > 0) & material
    with np.errstate(invalid="ignore", divide="ignore"):
        lac = np.where(ok, (sum_pn / _LAC_SCALE) / np.where(ok, sum_n, 1), np.nan)
        lac_dist = x["close_adj"] / lac - 1.0
    # status as a code into _LAC_STATUSES (strings are made once, by polars)
    status = np.where(~full, 1, np.where(flow_days == 0, 3, np.where(material, 0, 2)))

    # --- flow windows -------------------------------------------------------------------------
    fsum_n = g.rolling_int_sum(n, F)
    fsum_v = g.rolling_int_sum(v, F)
    f_ok = (g.history_count(present, F) >= F) & (g.rolling_count(known, F) > 0) & (fsum_v > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        net_ratio = np.where(f_ok, fsum_n / np.where(f_ok, fsum_v, 1), np.nan)
    return {
        "lac": lac,
        "lac_status": status.astype(np.int8),
        "lac_dist": lac_dist,
        "consec_buy_days": g.streak(n > 0, settings.streak_cap).astype(np.int32),
        "net_ratio_20d": net_ratio,
        "broker_concentration_20d": g.rolling_mean(x["conc"], F, min_count=F // 2),
        "tier_ratio_20d": g.rolling_mean(x["tier"], F, min_count=F // 2),
        "warmup": ~full,
    }
