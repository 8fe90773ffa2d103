"""Predictions (SPEC §6): ``R_pred[h] = h·k·(β_C·F_C + β_S·F_S + β_D·F_D) + h·α + correction``.

Made after the close of session D (its decision time) from D's z-scored composites and the
champion parameter version, for the next 1, 5 and 10 sessions. ``k`` (``return_per_score``) turns
the combined score (z units) into an expected return per session; horizons scale linearly.

A composite that is missing on a row (no fundamentals yet, a warm-up window) counts as neutral
(0) in the score: the name is still ranked on what is known, and ``warmup`` says so.

Cross-market correction (the notes' "method B"): the overnight US move of the semiconductor and
Nasdaq proxies (mean of SMH, SOXX, QQQ, TSM returns of the NY session(s) mapped to D) beyond
``us_threshold`` adds ``us_sensitivity × (move − sign·threshold)`` to the next-session expected
return (horizon-independent: one overnight shock), and a move below −threshold scales the
suggested position weight by ``us_position_cut``. The same function serves the pre-open update
with a fresher US move (sidecar, later issue).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from quant_genesis_dagster.domain.params import HORIZONS, ParamSet
from quant_genesis_dagster.domain.tables import polars_schema
from quant_genesis_dagster.domain.warehouse import models
from quant_genesis_dagster.errors import QGError

PREDICTIONS_SCHEMA = polars_schema(models.Predictions)
#: Panel columns of the US proxies that form the cross-market move (SPY is the broad market).
US_MOVE_COLUMNS: tuple[str, ...] = ("us_smh_ret", "us_soxx_ret", "us_qqq_ret", "us_tsm_ret")


def cross_market_adjustment(us_move: np.ndarray, params: ParamSet) -> tuple[np.ndarray, np.ndarray]:
    """(return adjustment, position scale) for overnight US moves (fractions, NaN = unknown)."""
    move = np.asarray(us_move, dtype=np.float64)
    known = ~np.isnan(move)
    m = np.where(known, move, 0.0)
    excess = np.sign(m) * np.maximum(np.abs(m) - params.us_threshold, 0.0)
    adjust = params.us_sensitivity * excess
    scale = np.where(m <= -params.us_threshold, params.us_position_cut, 1.0)
    return adjust, scale


def us_move(panel: pl.DataFrame) -> pl.DataFrame:
    """Per session: the mean overnight return of the US proxies mapped to it (null when none)."""
    missing = [c for c in US_MOVE_COLUMNS if c not in panel.columns]
    if missing:
        raise QGError(f"aligned_panel: missing column(s) {', '.join(missing)} for the US move")
    # the proxies are per-session values repeated on every row: the first row of each session
    return (
        panel.select("session", *US_MOVE_COLUMNS)
        .filter(pl.col("session").is_first_distinct())
        .select("session", pl.mean_horizontal(*US_MOVE_COLUMNS).alias("us_move"))
        .sort("session")
    )


def predict(
    zscored: pl.DataFrame, us: pl.DataFrame, params: ParamSet, param_version: str
) -> pl.DataFrame:
    """Prediction rows (``polars_schema(models.Predictions)``) for every zscored row.

    ``zscored``: session, symbol, f_c, f_s, f_d, warmup. ``us``: session, us_move (``us_move``).
    ``param_version``: the id of the version ``params`` came from (stored on every row).
    """
    need = ["session", "symbol", "f_c", "f_s", "f_d", "warmup"]
    missing = [c for c in need if c not in zscored.columns]
    if missing:
        raise QGError(f"zscored_factors: missing column(s) {', '.join(missing)}; nothing written")
    if not param_version:
        raise QGError("predictions: no parameter version id; read the champion first")
    b_c, b_s, b_d = params.betas
    # the session's US move onto each row by a per-session lookup (no copy of the whole frame)
    moves = us.select("session", "us_move").unique("session", keep="first")
    move = zscored["session"].replace_strict(
        moves["session"], moves["us_move"], default=None, return_dtype=pl.Float64
    )
    adjust, scale = cross_market_adjustment(move.to_numpy(), params)
    # the score in place, one composite at a time (a missing composite is neutral: 0)
    score = np.zeros(zscored.height)
    for name, beta in (("f_c", b_c), ("f_s", b_s), ("f_d", b_d)):
        f = zscored[name].cast(pl.Float64).to_numpy()
        score += beta * np.where(np.isnan(f), 0.0, f)
    columns = {"score": pl.Series(score)}
    base = score * params.return_per_score + params.alpha
    for h in HORIZONS:
        columns[f"r_pred_{h}d"] = pl.Series(base * h + adjust)
    del base
    out = zscored.select("session", "symbol", "f_c", "f_s", "f_d").with_columns(
        **columns,
        us_move=move,
        us_adjust=pl.Series(adjust),
        position_scale=pl.Series(scale),
        warmup=zscored["warmup"],
        param_version=pl.lit(param_version),
    )
    return out.select(list(PREDICTIONS_SCHEMA)).cast(dict(PREDICTIONS_SCHEMA))


def check_param_versions(pred: pl.DataFrame) -> tuple[bool, dict]:
    """Every prediction row names its parameter version."""
    bad = pred.filter(pl.col("param_version").is_null() | (pl.col("param_version") == ""))
    versions = sorted(pred["param_version"].drop_nulls().unique().to_list())
    return bad.height == 0, {"rows": pred.height, "without_version": bad.height,
                             "versions": ", ".join(versions)}  # fmt: skip
