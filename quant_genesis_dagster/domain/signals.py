"""Entry signals and risk actions per session (SPEC §6), each row with its reasons.

* **P1 value accumulation** (buy): strong chip composite (``F_C ≥ fc_strong``), price just above
  the main-force cost (``0 < LAC_dist ≤ lac_dev_max``), market fear at or below ``T_Fear`` and
  confirmed by an abnormal market move (the noise filter: an extreme fear reading on a quiet
  tape is ignored), and the DuPont leverage filter passed.
* **P2 momentum push** (buy): strong chip composite plus the intraday engine's confirmation —
  a main-force sweep (``sweep_ratio ≥ sweep_min``) or a close above the real-time cost line
  (RCNC) — and the leverage filter. Without the sidecar's end-of-day row there is no P2.
* Risk actions from ``domain.risk``: ``lac_break_stop`` (exit) and ``run_up_warning`` (warn) —
  events on the session their condition starts (it did not hold on the symbol's previous
  session), so a name trading below its cost line for weeks is stopped once, not every day —
  ``margin_anomaly`` (reduce, symbol), and market-wide ``vix_high``, ``atr_compression``,
  ``market_margin_anomaly`` (reduce, no symbol; strength = the resulting exposure multiplier).

``strength`` is F_C for entries, LAC_dist for the LAC rules, the margin z for anomalies.
``reasons`` is a JSON list of the conditions that held, with their numbers.
"""

from __future__ import annotations

import json

import polars as pl

from quant_genesis_dagster.domain.params import ParamSet
from quant_genesis_dagster.domain.tables import polars_schema
from quant_genesis_dagster.domain.warehouse import models
from quant_genesis_dagster.errors import QGError

SIGNALS_SCHEMA = polars_schema(models.Signals)
#: Columns ``build_signals`` needs on the per-(session, symbol) frame.
SYMBOL_COLUMNS: tuple[str, ...] = (
    "session",
    "symbol",
    "f_c",
    "close_adj",
    "lac",
    "lac_dist",
    "rcnc_close_dev",
    "sweep_ratio",
    "fear_greed",
    "market_abnormal",
    "equity_multiplier",
    "margin_z",
    "prev_close_adj",
    "prev_lac",
    "prev_lac_dist",
)
ENTRY_SIGNALS = ("P1", "P2")


def _reasons(*parts: pl.Expr) -> pl.Expr:
    """A JSON list of the non-null reason strings (built column-wise; JSON-escaped)."""
    escaped = [x.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
               for x in parts]  # fmt: skip
    body = pl.concat_list(escaped).list.drop_nulls().list.join('", "')
    return pl.when(body == "").then(pl.lit("[]")).otherwise('["' + body + '"]')


def _pct(col: str) -> pl.Expr:
    return (pl.col(col) * 100).round(1).cast(pl.String) + "%"


def _num(col: str, digits: int = 2) -> pl.Expr:
    return pl.col(col).round(digits).cast(pl.String)


def build_signals(
    day: pl.DataFrame, market: pl.DataFrame, params: ParamSet, param_version: str
) -> pl.DataFrame:
    """Signal rows (``polars_schema(models.Signals)`` without ``id``) for the sessions of ``day``.

    ``day``: one row per (session, symbol) with ``SYMBOL_COLUMNS``; ``market``: ``risk.market_risk``
    rows for the same sessions.
    """
    missing = [c for c in SYMBOL_COLUMNS if c not in day.columns]
    if missing:
        raise QGError(f"signals: missing input column(s) {', '.join(missing)}; nothing written")
    p = params
    d = day.select(SYMBOL_COLUMNS).cast(
        {c: pl.Float64 for c in SYMBOL_COLUMNS[2:] if c != "market_abnormal"}
        | {"market_abnormal": pl.Boolean}
    )
    strong = pl.col("f_c") >= p.fc_strong
    levered_ok = pl.col("equity_multiplier").is_not_null() & (
        pl.col("equity_multiplier") <= p.equity_multiplier_max
    )
    near_lac = (pl.col("lac_dist") > 0) & (pl.col("lac_dist") <= p.lac_dev_max)
    fear = (pl.col("fear_greed") <= p.t_fear) & pl.col("market_abnormal").fill_null(False)
    swept = pl.col("sweep_ratio") >= p.sweep_min
    above_rcnc = pl.col("rcnc_close_dev") > 0
    r_fc = pl.lit("F_C ") + _num("f_c") + f" >= {p.fc_strong:g}"
    r_lev = (
        pl.lit("equity multiplier ")
        + _num("equity_multiplier")
        + (f" <= {p.equity_multiplier_max:g} (DuPont filter)")
    )
    frames = []

    p1 = d.filter((strong & near_lac & fear & levered_ok).fill_null(False)).with_columns(
        signal=pl.lit("P1"),
        action=pl.lit("buy"),
        strength=pl.col("f_c"),
        reasons=_reasons(
            r_fc,
            pl.lit("LAC_dist ") + _pct("lac_dist") + f" in (0, {p.lac_dev_max:.0%}]",
            pl.lit("fear & greed ") + _num("fear_greed", 1) + f" <= T_Fear {p.t_fear:g}, "
            "confirmed by an abnormal market move",
            r_lev,
        ),
    )
    frames.append(p1)

    p2 = d.filter((strong & (swept | above_rcnc) & levered_ok).fill_null(False)).with_columns(
        signal=pl.lit("P2"),
        action=pl.lit("buy"),
        strength=pl.col("f_c"),
        reasons=_reasons(
            r_fc,
            pl.when(swept.fill_null(False)).then(
                pl.lit("intraday sweep ratio ") + _pct("sweep_ratio") + f" >= {p.sweep_min:.0%}"
            ),
            pl.when(above_rcnc.fill_null(False)).then(
                pl.lit("close ") + _pct("rcnc_close_dev") + " above the intraday cost line RCNC"
            ),
            r_lev,
        ),
    )
    frames.append(p2)

    broken = (pl.col("close_adj") < pl.col("lac") * (1 - p.lac_break_margin)).fill_null(False)
    was_broken = (
        pl.col("prev_close_adj") < pl.col("prev_lac") * (1 - p.lac_break_margin)
    ).fill_null(False)
    stop = d.filter(broken & ~was_broken).with_columns(
        signal=pl.lit("lac_break_stop"),
        action=pl.lit("exit"),
        strength=pl.col("lac_dist"),
        reasons=_reasons(
            pl.lit("close ") + _num("close_adj") + " < LAC " + _num("lac")
            + f" x (1 - {p.lac_break_margin:.0%}): main-force cost line broken"
        ),
    )  # fmt: skip
    frames.append(stop)

    ran_up = (pl.col("lac_dist") > p.t_runup_dev).fill_null(False)
    had_run_up = (pl.col("prev_lac_dist") > p.t_runup_dev).fill_null(False)
    runup = d.filter(ran_up & ~had_run_up).with_columns(
        signal=pl.lit("run_up_warning"),
        action=pl.lit("warn"),
        strength=pl.col("lac_dist"),
        reasons=_reasons(
            pl.lit("LAC_dist ") + _pct("lac_dist") + f" > T_RunUp_Dev {p.t_runup_dev:.0%}: "
            "take profit"
        ),
    )
    frames.append(runup)

    anomaly = d.filter((pl.col("margin_z").abs() >= p.margin_anomaly_z).fill_null(False))
    frames.append(
        anomaly.with_columns(
            signal=pl.lit("margin_anomaly"),
            action=pl.lit("reduce"),
            strength=pl.col("margin_z"),
            reasons=_reasons(
                pl.lit("margin balance change z ")
                + _num("margin_z")
                + f" beyond ±{p.margin_anomaly_z:g}"
            ),
        )  # fmt: skip
    )

    out = [
        f.select(
            "session",
            "symbol",
            "signal",
            "action",
            "strength",
            "reasons",
            param_version=pl.lit(param_version),
        )  # fmt: skip
        for f in frames
    ]
    out.append(_market_rows(market, p, param_version))
    result = pl.concat([f.cast(dict(SIGNALS_SCHEMA)) for f in out], how="vertical")
    return result.sort(["session", "signal", "symbol"], nulls_last=False).select(
        list(SIGNALS_SCHEMA)
    )


def with_previous_session(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``prev_close_adj``, ``prev_lac``, ``prev_lac_dist``: the symbol's values on the
    previous session of ``df`` (null on its first)."""
    cols = ("close_adj", "lac", "lac_dist")
    return (
        df.sort("symbol", "session")
        .with_columns(**{f"prev_{c}": pl.col(c).shift(1).over("symbol") for c in cols})
        .sort("session", "symbol")
    )


def signal_inputs(
    zscored: pl.DataFrame,
    chip: pl.DataFrame,
    sentiment: pl.DataFrame,
    value: pl.DataFrame,
    panel: pl.DataFrame,
) -> pl.DataFrame:
    """One row per zscored (session, symbol) with every column the rules read (``SYMBOL_COLUMNS``).

    ``zscored``: session, symbol, f_c; ``chip``: session, symbol, lac, lac_dist, rcnc_close_dev,
    sweep_ratio — from the session before the first zscored one (the LAC rules fire on the day
    their condition starts); ``sentiment``: fear_greed, market_abnormal; ``value``:
    equity_multiplier; ``panel``: close_adj, margin_balance from ``risk.RISK_LOOKBACK`` sessions
    before the first (the margin-change z)."""
    from quant_genesis_dagster.domain import risk

    keys = ["session", "symbol"]
    margin = risk.symbol_margin_z(panel.select(*keys, "margin_balance"))
    prices = chip.select(*keys, "lac", "lac_dist", "rcnc_close_dev", "sweep_ratio").join(
        panel.select(*keys, "close_adj"), on=keys, how="left"
    )
    prices = with_previous_session(prices)
    out = zscored.select(*keys, "f_c")
    for other in (
        prices,
        sentiment.select(*keys, "fear_greed", "market_abnormal"),
        value.select(*keys, "equity_multiplier"),
        margin,
    ):
        out = out.join(other, on=keys, how="left")
    return out


def _market_rows(market: pl.DataFrame, p: ParamSet, param_version: str) -> pl.DataFrame:
    rules = [
        ("vix_high", "vix_high", pl.lit("VIXTWN ") + _num("vixtwn", 1) + f" > {p.vix_max:g}"),
        (
            "atr_compression",
            "atr_compressed",
            pl.lit("TAIEX ATR(14)/ATR(60) ") + _num("atr_ratio") + f" < {p.atr_compression:g}",
        ),
        (
            "market_margin_anomaly",
            "margin_anomaly",
            pl.lit("market margin change z ")
            + _num("margin_z")
            + f" beyond ±{p.margin_anomaly_z:g}",
        ),
    ]
    frames = [
        market.filter(pl.col(flag).fill_null(False)).select(
            "session",
            symbol=pl.lit(None, dtype=pl.String),
            signal=pl.lit(name),
            action=pl.lit("reduce"),
            strength=pl.col("exposure_scale"),
            reasons=_reasons(reason, pl.lit("exposure x ") + _num("exposure_scale", 3)),
            param_version=pl.lit(param_version),
        )
        for name, flag, reason in rules
    ]
    return pl.concat(frames, how="vertical")


def top_signals_markdown(signals: pl.DataFrame, n: int = 10) -> str:
    """A markdown table of the strongest entry signals of the last session (for metadata)."""
    if signals.is_empty():
        return "no signals"
    last = signals["session"].max()
    top = (
        signals.filter((pl.col("session") == last) & pl.col("signal").is_in(ENTRY_SIGNALS))
        .sort("strength", descending=True)
        .head(n)
    )
    lines = [f"**{last}** — top entry signals", "", "| symbol | signal | F_C | reasons |",
             "|---|---|---:|---|"]  # fmt: skip
    for r in top.iter_rows(named=True):
        reasons = "; ".join(json.loads(r["reasons"]))
        lines.append(f"| {r['symbol']} | {r['signal']} | {r['strength']:.2f} | {reasons} |")
    if top.is_empty():
        lines.append("| – | none | | |")
    return "\n".join(lines)
