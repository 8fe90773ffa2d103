"""F_S (SPEC §5.2): the headline scorer, the fear & greed index by hand, symbol components by
hand, the noise filter, point-in-time truncation / perturbation, and the components against the
sample market's planted sentiment exposure."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sample_data import daily_spearman, sample_data

from quant_genesis_dagster.domain import calendar
from quant_genesis_dagster.domain.factors import sentiment
from quant_genesis_dagster.domain.factors.news import (
    LexiconScorer,
    SentimentScorer,
    daily_market_news_sentiment,
    daily_news_sentiment,
    score_news,
)
from quant_genesis_dagster.domain.factors.sentiment import (
    COMPONENTS,
    NOISE_FILTERED,
    OUTPUT_SCHEMA,
    fear_greed,
    noise_mask,
    sentiment_factors,
    window_percentile,
)
from quant_genesis_dagster.domain.params import FactorSettings
from quant_genesis_dagster.domain.tables import polars_schema
from quant_genesis_dagster.domain.warehouse import models
from quant_genesis_dagster.errors import QGError

S = calendar.sessions(dt.date(2024, 3, 1), dt.date(2024, 4, 30))


def scores(*titles: str | None) -> list[float | None]:
    return LexiconScorer().score(pl.Series(list(titles), dtype=pl.String)).to_list()


# ------------------------------------------------------------------------------ the scorer


def test_lexicon_scores_chinese_headlines() -> None:
    assert scores(
        "台積電(2330) 營收創新高 法人喊進",  # positive
        "聯發科 股價重挫 恐慌賣壓湧現",  # negative
        "鴻海 召開法說會 說明營運現況",  # neutral: no tone word
        "廣達 接單暢旺 但股價下跌",  # mixed: 1 positive, 1 negative
        "大立光 獲利成長 但毛利率下滑 股價重挫",  # 1 positive, 2 negative
    ) == [1.0, -1.0, 0.0, 0.0, -1 / 3]


def test_lexicon_scores_english_headlines() -> None:
    assert scores(
        "2330.TW shares surge on record revenue",
        "UMC slumps as foreign investors dump the stock",
        "2317.TW to hold investor conference",
        "Analysts upgrade 2454.TW but warn of weak demand",  # 1 positive, 2 negative
        "TAIEX RALLIES to an all-time high",  # case-insensitive, inflected, phrase
    ) == [1.0, -1.0, 0.0, -1 / 3, 1.0]


def test_negation_flips_the_tone_and_longest_terms_win() -> None:
    assert scores(
        "台股並未重挫",  # negated negative → positive
        "法人不看好 營運",  # negated positive → negative
        "股價無法突破",
        "營運不如預期",  # a term that starts with a negator is the term itself
        "2330.TW does not rally",
        "record loss at the panel maker",  # "record loss" beats "record"
        "台股再創新高",  # one term, not 創新高 + 新高
    ) == [1.0, -1.0, -1.0, -1.0, -1.0, -1.0, 1.0]
    counts = LexiconScorer().counts(pl.Series(["台股再創新高 再創新高"]))
    assert counts.row(0) == (2, 0)


def test_null_and_blank_titles_and_extra_terms() -> None:
    assert scores(None, "", "   ") == [None, 0.0, 0.0]
    custom = LexiconScorer(extra={"護國神山": 1})
    assert custom.score(pl.Series(["護國神山 法說"])).to_list() == [1.0]
    assert isinstance(custom, SentimentScorer)
    with pytest.raises(QGError, match="tone"):
        LexiconScorer(extra={"x": 2})


def news_rows(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"session": pl.Date, "symbol": pl.String, "title": pl.String}, orient="row"
    )


def test_daily_news_sentiment_sums_per_symbol_and_market() -> None:
    news = news_rows(
        (S[0], "2330", "台積電 營收創新高"),  # +1
        (S[0], "2330", "台積電 股價重挫"),  # −1
        (S[0], "2330", "台積電 公告董事會決議"),  # 0
        (S[0], "2317", "Hon Hai shares surge"),  # +1
        (S[1], "2330", None),  # not a headline
        (S[0], None, "台股崩跌 市場恐慌"),  # market-wide: −1
        (S[0], None, "Taiwan stocks rally"),  # +1
        (S[1], None, "台股重挫"),  # −1
    )
    out = daily_news_sentiment(news)
    assert out.schema == pl.Schema(
        {"session": pl.Date, "symbol": pl.String, "news_score_sum": pl.Float64,
         "news_count": pl.Int32}
    )  # fmt: skip
    assert out.rows() == [(S[0], "2317", 1.0, 1), (S[0], "2330", 0.0, 3)]
    market = daily_market_news_sentiment(news)
    assert market.rows() == [(S[0], 0.0, 2, 0.0), (S[1], -1.0, 1, -1.0)]


class _BadScorer:
    name = "bad"

    def score(self, titles: pl.Series) -> pl.Series:
        return pl.Series([2.0] * titles.len())


def test_scorer_contract_is_checked() -> None:
    news = news_rows((S[0], "2330", "x"))
    with pytest.raises(QGError, match="'bad'.*outside"):
        score_news(news, _BadScorer())
    with pytest.raises(QGError, match="'title'"):
        daily_news_sentiment(news.drop("title"))


# ------------------------------------------------------------------------------ fear & greed


def test_window_percentile_by_hand() -> None:
    x = np.array([3.0, 1.0, 2.0, 2.0, 5.0, np.nan, 4.0])
    got = window_percentile(x, 3, 2)
    # row 1: 1 is the min of {3, 1}; row 2: 2 is the middle of {3, 1, 2}; row 3: 2 ties with 2
    # in {1, 2, 2} (mid rank: 1 below + ½ tie → 1.5 / 2); row 4: max; row 6: {5, 4} (NaN skipped)
    np.testing.assert_array_equal(got, [np.nan, 0.0, 50.0, 75.0, 100.0, np.nan, 0.0])


INDICATORS = pl.DataFrame(
    {
        "session": S[:7],
        "taiex_close": [100.0, 101.0, 100.0, 101.0, 100.0, 101.0, 110.0],
        "vixtwn": [20.0, 22.0, 18.0, 25.0, 30.0, 15.0, 16.0],
        "put_call_ratio": [1.0, 1.0, 1.2, 0.8, 1.1, 0.9, 1.0],
        "tx_foreign_net_oi": [0.0, 100.0, -50.0, 200.0, 300.0, -100.0, 50.0],
        "margin_total": [100.0, 101.0, 102.0, 100.0, 99.0, 103.0, 104.0],
    }
)
TINY = FactorSettings(fg_window=5, vix_slope_window=2, move_window=5)


def test_fear_greed_by_hand() -> None:
    out = fear_greed(INDICATORS, TINY)
    last = out.row(6, named=True)
    # window = sessions 2..6
    assert last["fg_vix_level"] == 75.0  # VIX 16: second lowest of {18, 25, 30, 15, 16}
    # VIX 2-session slope (16 − 30) / 2 = −7: the steepest fall of {−1, 1.5, 6, −5, −7} → greed
    assert last["fg_vix_slope"] == 100.0
    assert last["fg_put_call"] == 50.0  # 1.0 is the middle of {1.2, 0.8, 1.1, 0.9, 1.0}
    assert last["fg_foreign_oi"] == 50.0  # 50 is the middle of {−50, 200, 300, −100, 50}
    assert last["fg_margin"] == 100.0  # log(104 / 99) is the largest 2-session growth
    assert last["fear_greed"] == (75 + 100 + 50 + 50 + 100) / 5
    assert last["market_abnormal"]  # +8.9% against a ~1% daily std
    # session 4: VIX 30 is the window max (fear), put/call 1.1 second highest
    row4 = out.row(4, named=True)
    assert row4["fg_vix_level"] == 0.0
    assert row4["fg_put_call"] == 25.0
    assert row4["fg_vix_slope"] == 0.0  # slope 6 is the largest rise of {−1, 1.5, 6}
    # warm-up: fewer than fg_window=5 sessions of history
    assert out["fg_warmup"].to_list() == [True] * 4 + [False] * 3
    assert out["fear_greed"][:4].null_count() == 4
    assert out["market_abnormal"].to_list() == [False] * 6 + [True]
    assert out.columns == [
        "session", "fear_greed", "fg_vix_level", "fg_vix_slope", "fg_put_call",
        "fg_foreign_oi", "fg_margin", "fg_warmup", "market_abnormal",
    ]  # fmt: skip


def test_fear_greed_orientation() -> None:
    """Each indicator moved towards fear on the last session lowers its component."""
    base = fear_greed(INDICATORS, TINY).row(6, named=True)
    for col, bump, comp in (
        ("vixtwn", 40.0, "fg_vix_level"),
        ("put_call_ratio", 2.0, "fg_put_call"),
        ("tx_foreign_net_oi", -5000.0, "fg_foreign_oi"),
        ("margin_total", -50.0, "fg_margin"),
    ):
        bumped = INDICATORS.with_columns(
            pl.when(pl.col("session") == S[6]).then(pl.col(col) + bump).otherwise(pl.col(col))
        )
        row = fear_greed(bumped, TINY).row(6, named=True)
        assert row[comp] == 0.0, col
        assert row["fear_greed"] < base["fear_greed"], col


def test_fear_greed_errors() -> None:
    with pytest.raises(QGError, match="'vixtwn'"):
        fear_greed(INDICATORS.drop("vixtwn"))
    with pytest.raises(QGError, match="sessions jump"):
        fear_greed(INDICATORS.filter(pl.col("session") != S[3]))


# ------------------------------------------------------------------------------ symbol level


def tiny_panel() -> pl.DataFrame:
    """Two symbols over 8 sessions: A has margin data, B none."""
    n = 8
    rows = []
    for i in range(n):
        rows.append(
            {
                "session": S[i],
                "symbol": "A",
                "ret_1d": [None, 0.01, -0.01, 0.01, -0.01, 0.01, -0.01, 0.05][i],
                "volume_shares": [1000, 1000, 1000, 1000, 1000, 1000, 1000, 3000][i],
                "margin_balance": [5000, 5000, 5000, 5000, 5000, 6000, 7000, 8000][i],
                "short_balance": [500, 500, 500, 500, 500, 400, 300, 900][i],
            }
        )
        rows.append(
            {
                "session": S[i],
                "symbol": "B",
                "ret_1d": 0.0 if i else None,
                "volume_shares": 2000,
                "margin_balance": None,
                "short_balance": None,
            }
        )
    market = INDICATORS.vstack(
        INDICATORS.tail(1).with_columns(session=pl.lit(S[7])).cast(INDICATORS.schema)
    )
    return (
        pl.DataFrame(rows, schema_overrides={"volume_shares": pl.Int64})
        .join(market, on="session")
        .sort("session", "symbol")
    )


EMPTY_NEWS = pl.DataFrame(
    schema={
        "session": pl.Date,
        "symbol": pl.String,
        "news_score_sum": pl.Float64,
        "news_count": pl.Int32,
    }
)


def test_margin_components_by_hand() -> None:
    settings = FactorSettings(fg_window=5, vix_slope_window=2, move_window=5, news_window=2)
    out = sentiment_factors(tiny_panel(), EMPTY_NEWS, settings)
    assert dict(out.schema) == OUTPUT_SCHEMA == dict(polars_schema(models.SentimentFactors))
    a = out.filter(pl.col("symbol") == "A")
    b = out.filter(pl.col("symbol") == "B")
    # session 6: margin 7000 over a 1000-share mean volume → log 7; 5 sessions earlier 5000
    r6 = a.row(6, named=True)
    assert r6["margin_crowding"] == pytest.approx(math.log(7.0), rel=1e-15)
    assert r6["margin_change"] == pytest.approx((7000 - 5000) / 1000, rel=1e-15)
    assert r6["short_change"] == pytest.approx((300 - 500) / 1000, rel=1e-15)
    assert r6["short_ratio"] == pytest.approx(300 / 7000, rel=1e-15)
    # session 7: mean volume over sessions 3..7 = 7000 / 5 = 1400
    r7 = a.row(7, named=True)
    assert r7["margin_crowding"] == pytest.approx(math.log(8000 / 1400), rel=1e-15)
    assert r7["margin_change"] == pytest.approx((8000 - 5000) / 1400, rel=1e-15)
    # the 5-session change needs a balance 5 sessions back
    assert a["margin_change"][:5].null_count() == 5
    # session 0 has a one-session volume reference (< half the window) → no crowding
    assert a["margin_crowding"][0] is None and a["margin_crowding"][2] is not None
    # abnormal move: session 7 has 3× the previous mean volume and a 5% move vs a ~1% std
    assert a["abnormal_move"].to_list() == [False] * 7 + [True]
    # B: no margin data → nulls, not zeros; flat returns never abnormal
    assert b.select("margin_crowding", "margin_change", "short_ratio").null_count().row(0) == (
        8,
        8,
        8,
    )
    assert not b["abnormal_move"].any()
    # warm-up: fewer than move_window=5 sessions of the symbol's history
    assert a["warmup"].to_list() == b["warmup"].to_list() == [True] * 4 + [False] * 4
    # the market index is repeated on every row of the session
    fg = fear_greed(tiny_panel().filter(pl.col("symbol") == "A"), settings)
    assert a["fear_greed"].to_list() == fg["fear_greed"].to_list()
    assert b["market_abnormal"].to_list() == fg["market_abnormal"].to_list()


def test_news_window_aggregation() -> None:
    settings = FactorSettings(fg_window=5, vix_slope_window=2, move_window=5, news_window=2)
    news = pl.DataFrame(
        {
            "session": [S[4], S[5], S[5], S[6], S[2]],
            "symbol": ["A", "A", "A", "ZZZZ", "B"],  # ZZZZ is not on the panel: ignored
            "news_score_sum": [1.0, -0.5, -0.25, 1.0, 0.5],
            "news_count": [1, 2, 1, 3, 1],
        }
    )
    out = sentiment_factors(tiny_panel(), news, settings)
    a = out.filter(pl.col("symbol") == "A")
    # window of 2 sessions: S4 → 1/1, S5 → (1 − 0.5 − 0.25) / 4, S6 → −0.75 / 3, S7 → none
    assert a["news_sentiment"].to_list()[3:] == [None, 1.0, 0.25 / 4, -0.75 / 3, None]
    assert a["news_count"].to_list()[3:] == [0, 1, 4, 3, 0]
    b = out.filter(pl.col("symbol") == "B")
    assert b["news_sentiment"].to_list()[1:5] == [None, 0.5, 0.5, None]


def test_missing_inputs_name_the_column() -> None:
    with pytest.raises(QGError, match="'margin_balance'"):
        sentiment_factors(tiny_panel().drop("margin_balance"), EMPTY_NEWS)
    with pytest.raises(QGError, match="'news_count'"):
        sentiment_factors(tiny_panel(), EMPTY_NEWS.drop("news_count"))
    assert sentiment_factors(tiny_panel().head(0), EMPTY_NEWS).is_empty()


def test_noise_mask_by_hand() -> None:
    z = np.array([[2.5, -2.0, 1.9, np.nan], [-3.0, 0.0, 2.0, 2.1]])
    abnormal = np.array([[False, False, False, False], [True, False, True, False]])
    np.testing.assert_array_equal(
        noise_mask(z, abnormal, 2.0),
        # extreme (|z| ≥ 2) and unconfirmed → ignored; confirmed or moderate or NaN → kept
        [[True, True, False, False], [False, False, False, True]],
    )
    # float abnormal flags: NaN (unknown) counts as unconfirmed
    np.testing.assert_array_equal(
        noise_mask(np.array([3.0, 3.0, 3.0]), np.array([1.0, 0.0, np.nan]), 2.0),
        [False, True, True],
    )
    assert set(NOISE_FILTERED) <= set(COMPONENTS)
    assert set(COMPONENTS) == set(models.Z_COMPONENTS["sentiment"])


# ------------------------------------------------------------------------------ point in time


def _sample_inputs():
    d = sample_data()
    return d, daily_news_sentiment(d.raw["news"])


def test_start_independence_truncation_and_perturbation() -> None:
    d, news = _sample_inputs()
    settings = FactorSettings()
    lookback = settings.lookback()
    full = sentiment_factors(d.panel, news, settings)
    sessions = d.sessions
    first = sessions[-60]  # compare the last 60 sessions
    start = sessions[len(sessions) - 60 - lookback]
    cut = d.panel.filter(pl.col("session") >= start)
    part = sentiment_factors(cut, news, settings)
    keep = pl.col("session") >= first
    assert_frame_equal(full.filter(keep), part.filter(keep), check_exact=True)
    # the news of the truncated range alone give the same values
    cut_news = daily_news_sentiment(d.raw["news"].filter(pl.col("session") >= start))
    assert_frame_equal(
        full.filter(keep), sentiment_factors(cut, cut_news, settings).filter(keep),
        check_exact=True,
    )  # fmt: skip
    # later rows never change earlier ones: perturb everything after D
    day = sessions[-30]
    late = pl.col("session") > day
    rng = np.random.default_rng(1)
    noisy = d.panel.with_columns(
        [
            pl.when(late).then(pl.col(c) * pl.lit(rng.uniform(0.5, 2.0))).otherwise(pl.col(c))
            for c in ("ret_1d", "vixtwn", "put_call_ratio", "tx_foreign_net_oi", "margin_total",
                      "taiex_close")
        ]
        + [
            pl.when(late).then(pl.col(c) * 3).otherwise(pl.col(c))
            for c in ("volume_shares", "margin_balance", "short_balance")
        ]
    )  # fmt: skip
    noisy_news = news.with_columns(
        news_score_sum=pl.when(pl.col("session") > day).then(-pl.col("news_score_sum"))
        .otherwise(pl.col("news_score_sum"))
    )  # fmt: skip
    early = pl.col("session") <= day
    assert_frame_equal(
        full.filter(early),
        sentiment_factors(noisy, noisy_news, settings).filter(early),
        check_exact=True,
    )
    assert not full.filter(late).equals(sentiment_factors(noisy, noisy_news, settings).filter(late))


# ------------------------------------------------------------------------------ sample market

#: Mean daily cross-sectional Spearman ρ with the planted sentiment exposure, measured on
#: sample_data() (seed 7, 120 symbols, 500 sessions, non-warm-up rows, days with ≥ 10 names):
#: margin_crowding −0.919, short_ratio +0.992, news_sentiment −0.667, margin_change −0.420,
#: short_change +0.379. Thresholds leave ~0.1 of room (0.05 for the near-deterministic short
#: ratio) — far beyond day-to-day noise of the mean (daily std 0.002–0.17 over 370–480 days),
#: so a failure means the component lost its meaning, not bad luck.
THRESHOLDS = {
    "margin_crowding": -0.80,
    "short_ratio": 0.90,
    "news_sentiment": -0.55,
    "margin_change": -0.30,
    "short_change": 0.25,
}


def test_components_track_planted_sentiment() -> None:
    d, news = _sample_inputs()
    out = sentiment_factors(d.panel, news).join(d.truth.exposures, on=["session", "symbol"])
    out = out.filter(~pl.col("warmup"))
    for col, threshold in THRESHOLDS.items():
        rho, sessions = daily_spearman(out, col, "sentiment")
        assert sessions > 300, col
        if threshold < 0:
            assert rho < threshold, (col, rho)
        else:
            assert rho > threshold, (col, rho)
        # the composite weight has the sign of the measured correlation (fear is positive)
        assert math.copysign(1, COMPONENTS[col]) == math.copysign(1, rho), col
    # the market index spans fear and greed, and abnormal moves are the exception
    assert 0 <= out["fear_greed"].min() < 20 and 80 < out["fear_greed"].max() <= 100
    assert 0.01 < out["abnormal_move"].mean() < 0.2
    assert sentiment.INDUSTRY_NEUTRAL is False
