"""Predictions, signals and risk rules by hand (SPEC §6): β renormalization, horizons, the
cross-market correction, P1/P2 conditions with their reasons, LAC stop, run-up warning and the
market-level exposure cuts."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from quant_genesis_dagster.domain import calendar, model, risk, signals
from quant_genesis_dagster.domain.params import DEFAULTS, ParamSet, validate
from quant_genesis_dagster.errors import QGError

D = dt.date(2024, 5, 2)


def zrow(symbol="A", f_c=1.0, f_s=0.0, f_d=0.0, warmup=False, session=D) -> dict:
    return {"session": session, "symbol": symbol, "f_c": f_c, "f_s": f_s, "f_d": f_d,
            "warmup": warmup}  # fmt: skip


def test_prediction_is_the_beta_weighted_score_scaled_by_horizon():
    p = DEFAULTS.replace(beta_c=0.5, beta_s=0.25, beta_d=0.25, return_per_score=0.001, alpha=0.0)
    z = pl.DataFrame([zrow(f_c=2.0, f_s=-1.0, f_d=None)])
    us = pl.DataFrame({"session": [D], "us_move": [0.0]})
    out = model.predict(z, us, p, "quant_genesis_params/v7")
    r = out.row(0, named=True)
    score = 0.5 * 2.0 + 0.25 * -1.0 + 0.25 * 0.0  # missing F_D counts as neutral
    assert r["score"] == pytest.approx(score)
    assert r["r_pred_1d"] == pytest.approx(0.001 * score)
    assert r["r_pred_5d"] == pytest.approx(0.005 * score)
    assert r["r_pred_10d"] == pytest.approx(0.010 * score)
    assert r["param_version"] == "quant_genesis_params/v7"
    assert r["position_scale"] == 1.0 and r["us_adjust"] == 0.0


def test_betas_are_renormalized_to_sum_one():
    p = DEFAULTS.replace(beta_c=1.0, beta_s=1.0, beta_d=0.0)
    assert p.betas == (0.5, 0.5, 0.0)


def test_cross_market_correction_beyond_the_threshold_only():
    p = DEFAULTS.replace(us_threshold=0.015, us_sensitivity=0.3, us_position_cut=0.5)
    adjust, scale = model.cross_market_adjustment(np.array([0.01, 0.03, -0.025, np.nan]), p)
    np.testing.assert_allclose(adjust, [0.0, 0.3 * 0.015, -0.3 * 0.010, 0.0])
    assert scale.tolist() == [1.0, 1.0, 0.5, 1.0]


def test_us_move_is_the_mean_of_the_semiconductor_and_nasdaq_proxies():
    panel = pl.DataFrame(
        {"session": [D, D], "symbol": ["A", "B"], "us_smh_ret": [0.02] * 2,
         "us_soxx_ret": [0.04] * 2, "us_qqq_ret": [0.0] * 2, "us_tsm_ret": [None, None]}
    )  # fmt: skip
    assert model.us_move(panel)["us_move"].to_list() == [pytest.approx(0.02)]


def test_bad_inputs_name_what_is_wrong():
    with pytest.raises(QGError, match="f_d"):
        model.predict(pl.DataFrame([zrow()]).drop("f_d"), pl.DataFrame(), DEFAULTS, "v")
    with pytest.raises(QGError, match="version"):
        model.predict(pl.DataFrame([zrow()]), pl.DataFrame({"session": [D], "us_move": [0.0]}),
                      DEFAULTS, "")  # fmt: skip
    with pytest.raises(QGError, match=r"t_fear=35.*\[10.0, 30.0\]"):
        DEFAULTS.replace(t_fear=35)
    with pytest.raises(QGError, match="position_weight"):
        validate({"position_weight": 1.5})
    with pytest.raises(QGError, match="unknown"):
        ParamSet.from_dict({"beta_x": 1})


def day_row(symbol="A", **kw) -> dict:
    row = {
        "session": D, "symbol": symbol, "f_c": 1.5, "close_adj": 103.0, "lac": 100.0,
        "lac_dist": 0.03, "rcnc_close_dev": None, "sweep_ratio": None, "fear_greed": 15.0,
        "market_abnormal": True, "equity_multiplier": 3.0, "margin_z": 0.5,
        "prev_close_adj": None, "prev_lac": None, "prev_lac_dist": None,
    }  # fmt: skip
    row.update(kw)
    return row


def quiet_market() -> pl.DataFrame:
    return pl.DataFrame(
        {"session": [D], "vixtwn": [15.0], "vix_high": [False], "atr_ratio": [1.0],
         "atr_compressed": [False], "margin_z": [0.0], "margin_anomaly": [False],
         "exposure_scale": [1.0]}
    )  # fmt: skip


def build(rows, market=None, params=DEFAULTS) -> pl.DataFrame:
    return signals.build_signals(pl.DataFrame(rows), market if market is not None
                                 else quiet_market(), params, "quant_genesis_params/v1")  # fmt: skip


def test_p1_fires_only_when_every_condition_holds_and_says_why():
    out = build([day_row("A")])
    p1 = out.filter(pl.col("signal") == "P1")
    assert p1["symbol"].to_list() == ["A"] and p1["action"][0] == "buy"
    reasons = json.loads(p1["reasons"][0])
    assert any("F_C 1.5" in r for r in reasons)
    assert any("LAC_dist 3.0%" in r for r in reasons)
    assert any("T_Fear 20" in r for r in reasons)
    assert any("DuPont" in r for r in reasons)
    for broken in (
        {"f_c": 0.5},  # chip not strong
        {"lac_dist": 0.2},  # too far above the cost line
        {"lac_dist": -0.01},  # below it
        {"fear_greed": 40.0},  # no fear
        {"market_abnormal": False},  # fear on a quiet tape: noise
        {"equity_multiplier": 9.0},  # levered: DuPont filter
        {"lac": None, "lac_dist": None},  # no cost line
    ):
        assert build([day_row("A", **broken)]).filter(pl.col("signal") == "P1").is_empty(), broken


def test_p2_needs_the_intraday_confirmation():
    assert build([day_row()]).filter(pl.col("signal") == "P2").is_empty()  # no sidecar row
    swept = build([day_row(sweep_ratio=0.3)]).filter(pl.col("signal") == "P2")
    assert any("sweep" in r for r in json.loads(swept["reasons"][0]))
    above = build([day_row(rcnc_close_dev=0.01)]).filter(pl.col("signal") == "P2")
    assert any("RCNC" in r for r in json.loads(above["reasons"][0]))


def test_lac_break_stop_and_run_up_warning():
    p = DEFAULTS.replace(lac_break_margin=0.05, t_runup_dev=0.30)
    out = build([day_row("S", close_adj=94.0, lac_dist=-0.06), day_row("R", lac_dist=0.35),
                 day_row("K", close_adj=96.0, lac_dist=-0.04)], params=p)  # fmt: skip
    assert out.filter(pl.col("signal") == "lac_break_stop")["symbol"].to_list() == ["S"]
    assert out.filter(pl.col("signal") == "run_up_warning")["symbol"].to_list() == ["R"]
    assert out.filter(pl.col("signal") == "margin_anomaly").is_empty()
    anomaly = build([day_row("M", margin_z=-4.0)]).filter(pl.col("signal") == "margin_anomaly")
    assert anomaly["action"].to_list() == ["reduce"]


def test_lac_rules_fire_on_the_session_their_condition_starts():
    p = DEFAULTS.replace(lac_break_margin=0.05, t_runup_dev=0.30)
    day2 = calendar.shift_session(D, 1)
    frame = signals.with_previous_session(
        pl.DataFrame(
            {"session": [D, day2, D, day2], "symbol": ["S", "S", "R", "R"],
             "close_adj": [94.0, 93.0, 135.0, 140.0], "lac": [100.0] * 4,
             "lac_dist": [-0.06, -0.07, 0.35, 0.40]}
        )
    )  # fmt: skip
    rows = [
        day_row(r["symbol"], **{k: v for k, v in r.items() if k != "symbol"})
        for r in frame.iter_rows(named=True)
    ]
    out = build(rows, market=quiet_market().vstack(quiet_market().with_columns(session=pl.lit(day2))),
                params=p)  # fmt: skip
    stops = out.filter(pl.col("signal") == "lac_break_stop")
    assert stops.select("session", "symbol").rows() == [(D, "S")]  # once, not again on day 2
    warns = out.filter(pl.col("signal") == "run_up_warning")
    assert warns.select("session", "symbol").rows() == [(D, "R")]


def _market(n: int, taiex, vix, margin) -> pl.DataFrame:
    sessions = calendar.last_sessions(n, D)
    return pl.DataFrame(
        {"session": sessions, "taiex_close": taiex, "vixtwn": vix, "margin_total": margin}
    )


def test_market_rules_vix_atr_compression_and_margin_anomaly():
    n = 100
    rng = np.random.default_rng(0)
    moves = rng.normal(0, 0.01, n)
    moves[-14:] *= 0.2  # the last 14 sessions barely move: ATR compression
    taiex = 10_000 * np.cumprod(1 + moves)
    margin = 1e11 * np.cumprod(1 + rng.normal(0, 0.001, n))
    margin[-1] = margin[-2] * 1.05  # a 5% jump in one day: anomaly
    vix = np.full(n, 20.0)
    vix[-1] = 35.0
    p = DEFAULTS.replace(vix_max=30.0, atr_compression=0.6, margin_anomaly_z=3.0,
                         exposure_cut=0.5)  # fmt: skip
    m = risk.market_risk(_market(n, taiex, vix, margin), p)
    last = m.row(-1, named=True)
    assert last["vix_high"] and last["atr_compressed"] and last["margin_anomaly"]
    assert last["exposure_scale"] == pytest.approx(0.125)
    assert m["margin_z"][:61].is_null().all()  # no full reference window yet: no verdict
    rows = build([day_row(f_c=0.0)], market=m.tail(1), params=p)
    market_rows = rows.filter(pl.col("symbol").is_null())
    assert sorted(market_rows["signal"]) == ["atr_compression", "market_margin_anomaly",
                                             "vix_high"]  # fmt: skip
    assert (market_rows["action"] == "reduce").all()


def test_every_signal_row_has_reasons_and_the_version():
    out = build([day_row("A"), day_row("B", close_adj=80.0, lac_dist=-0.2)])
    assert out.height >= 2
    assert (out["param_version"] == "quant_genesis_params/v1").all()
    assert all(json.loads(r) for r in out["reasons"])
    md = signals.top_signals_markdown(out)
    assert "| A | P1 |" in md
