"""Headlines of the sample market: Chinese and English titles whose wording carries sentiment.

A symbol's headline tone follows its retail crowding (= −sentiment exposure) plus noise: crowded
names get euphoric headlines, shunned ones fearful headlines. Market-wide headlines (symbol null)
follow the regime and the day's market move. About 1 headline per 50 listed symbols per session
(at least 3). ``published_at`` is spread over the Taipei day (the session's own date, and the
weekend or holiday dates before it); ``session`` is the first session on or after that Taipei
date.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from quant_genesis_dagster.domain.sample.config import BULL, PANIC
from quant_genesis_dagster.domain.sample.latent import World
from quant_genesis_dagster.domain.sample.rng import Stream, session_rng
from quant_genesis_dagster.domain.tables import RAW_SCHEMAS

# templates[market_wide][language][tone]; tone 0 fearful, 1 neutral, 2 euphoric
_SYMBOL_ZH = (
    (
        "{name}({sym}) 獲利衰退 股價重挫",
        "{name} 遭外資大砍目標價 恐慌賣壓湧現",
        "{name}({sym}) 營運展望保守 股價跌停",
        "{name} 融資斷頭潮 股價崩跌",
    ),
    (
        "{name}({sym}) 召開法說會 說明營運現況",
        "{name} 公告董事會決議",
        "{name}({sym}) 月營收公布 與去年同期持平",
    ),
    (
        "{name}({sym}) 營收創新高 法人喊進",
        "{name} 接單暢旺 股價強攻漲停",
        "散戶追捧{name} 融資餘額暴增",
        "{name}({sym}) 獲外資調升目標價 多頭氣勢旺",
    ),
)
_SYMBOL_EN = (
    (
        "{sym}.TW shares plunge after profit warning",
        "{sym}.TW slumps as foreign investors dump the stock",
        "Panic selling hits {sym}.TW",
    ),
    ("{sym}.TW to hold investor conference", "{sym}.TW reports monthly sales in line"),
    (
        "{sym}.TW shares surge on record revenue",
        "Analysts upgrade {sym}.TW, citing strong demand",
        "Retail investors pile into {sym}.TW as rally extends",
    ),
)
_MARKET_ZH = (
    ("台股重挫 恐慌指數飆升", "外資大賣 台股失守季線 市場恐慌蔓延", "台股崩跌 融資追繳壓力大"),
    ("台股量縮整理 觀望氣氛濃", "台股震盪 盤面個股表現分歧"),
    ("台股強彈 加權指數大漲 外資回補", "台股站上月線 多頭氣勢強", "台股再創新高 市場樂觀"),
)
_MARKET_EN = (
    (
        "Taiwan stocks tumble as volatility index spikes",
        "Panic grips Taipei market as foreigners sell",
    ),
    ("Taiwan shares flat in cautious trade",),
    ("Taiwan stocks rally as foreign investors return", "Taiex hits record on chip optimism"),
)
_SOURCES_ZH = ("經濟日報", "工商時報", "鉅亨網", "MoneyDJ")
_SOURCES_EN = ("Reuters", "Bloomberg", "Focus Taiwan")
_SOURCES_ZH_ARR, _SOURCES_EN_ARR = np.array(_SOURCES_ZH), np.array(_SOURCES_EN)


def _catalog() -> pl.DataFrame:
    """Every template with its (market_wide, english, tone) key."""
    rows = []
    for wide, pair in ((False, (_SYMBOL_ZH, _SYMBOL_EN)), (True, (_MARKET_ZH, _MARKET_EN))):
        for english, by_tone in enumerate(pair):
            for tone, templates in enumerate(by_tone):
                rows += [(wide, bool(english), tone, i, t) for i, t in enumerate(templates)]
    return pl.DataFrame(
        rows, schema=["market_wide", "english", "tone", "variant", "template"], orient="row"
    )


_CATALOG = _catalog()
_COUNTS = _CATALOG.group_by(["market_wide", "english", "tone"]).agg(pl.len().alias("n_variants"))


def build_news(world: World, t0: int, t1: int) -> pl.DataFrame:
    """Headlines of sessions [t0, t1)."""
    u = world.universe
    parts = []
    for t in range(t0, t1):  # per-session draws (a few dozen headlines each)
        rng = session_rng(world.cfg.seed, Stream.NEWS, t)
        listed = np.flatnonzero(world.traded[t])
        k = max(3, int(round(0.02 * listed.size * (0.5 + rng.random()))))
        wide = rng.random(k) < 0.25
        if listed.size == 0:
            wide[:] = True
        crowd = -world.exposures["sentiment"][t].astype(np.float64)
        weight = 1 + np.abs(crowd[listed]) if listed.size else np.ones(1)
        pick = (
            listed[rng.choice(listed.size, k, p=weight / weight.sum())]
            if listed.size
            else np.zeros(k, np.int64)
        )
        # tone: symbol headlines follow crowding; market headlines the regime and the day's move
        reg, mret = world.regime[t], world.market_ret[t]
        market_score = (1.0 if reg == BULL else -1.2 if reg == PANIC else 0.0) + 60 * mret
        score = np.where(wide, market_score, crowd[pick]) + 0.8 * rng.standard_normal(k)
        tone = np.where(score > 0.5, 2, np.where(score < -0.5, 0, 1))
        english = rng.random(k) < 0.3
        # publication time: mostly the session's own date, else a preceding non-session date
        prev = world.sessions[t - 1] if t > 0 else world.sessions[t] - np.timedelta64(1, "D")
        gap = int((world.sessions[t] - prev).astype(int)) - 1
        back = np.where(rng.random(k) < 0.75, 0, (rng.random(k) * gap).astype(np.int64) + 1)
        back = np.where(gap > 0, back, 0)
        second = (6 * 3600 + rng.random(k) * 17 * 3600).astype(np.int64)  # 06:00–23:00 Taipei
        day = (world.sessions[t] - back.astype("timedelta64[D]")).astype("datetime64[us]")
        utc = day + (second - 8 * 3600).astype("timedelta64[s]")
        parts.append(
            pl.DataFrame(
                {
                    "t": np.full(k, t),
                    "published_at": utc,
                    "sym_idx": pick,
                    "market_wide": wide,
                    "english": english,
                    "tone": tone,
                    "draw": rng.random(k),
                    "source": np.where(
                        english,
                        _SOURCES_EN_ARR[(rng.random(k) * len(_SOURCES_EN)).astype(np.int64)],
                        _SOURCES_ZH_ARR[(rng.random(k) * len(_SOURCES_ZH)).astype(np.int64)],
                    ),
                }
            )
        )
    if not parts:
        return pl.DataFrame(schema=RAW_SCHEMAS["news"])
    df = pl.concat(parts).with_row_index("seq")
    symbols = pl.Series(u.symbols.tolist(), dtype=pl.String)
    names = pl.Series(u.names.tolist(), dtype=pl.String)
    sym_idx = df["sym_idx"].to_numpy()
    df = (
        df.with_columns(
            symbol=symbols.gather(sym_idx),
            name=names.gather(sym_idx),
            session=pl.Series(world.sessions[df["t"].to_numpy()]),
        )
        .join(_COUNTS, on=["market_wide", "english", "tone"], how="left")
        .with_columns(variant=(pl.col("draw") * pl.col("n_variants")).cast(pl.Int64))
        .join(_CATALOG, on=["market_wide", "english", "tone", "variant"], how="left")
        .with_columns(
            title=pl.col("template")
            .str.replace_all("{name}", pl.col("name"), literal=True)
            .str.replace_all("{sym}", pl.col("symbol"), literal=True),
            symbol=pl.when(pl.col("market_wide")).then(None).otherwise(pl.col("symbol")),
            body=pl.lit(None, dtype=pl.String),
        )
        .sort(["session", "published_at", "seq"])
    )
    schema = RAW_SCHEMAS["news"]
    return (
        df.with_columns(published_at=pl.col("published_at").dt.replace_time_zone("UTC"))
        .cast(dict(schema))
        .select(list(schema))
    )
