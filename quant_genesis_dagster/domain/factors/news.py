"""Headline sentiment for F_S (SPEC §5.2): one scorer interface, an offline lexicon scorer for
Chinese and English Taiwan-market headlines, and the daily per-symbol / market-wide aggregation.

A scorer maps titles to a tone in [-1, 1] (positive = optimistic / euphoric, negative = fearful).
Any model scorer (a local transformer, a vendor API wrapped by the caller) fits behind
``SentimentScorer``; the default ``LexiconScorer`` needs no network and no model files.

Lexicon scoring: every title is lower-cased and scanned once with one regular expression made of
all lexicon terms (longest first, so 創新高 beats 新高 and "record low" beats "record"; the regex
is leftmost-first, so overlapping terms of opposite tone never double count). A term directly
preceded by a negator (不 / 未 / 沒有 / 無法 …, "not" / "no" / "never" / "without") counts with the
opposite tone. ``score = (pos − neg) / (pos + neg)``, 0 when the title holds no term.
"""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

import polars as pl

from quant_genesis_dagster.errors import QGError

# ------------------------------------------------------------------------------ the lexicon
# Curated for Taiwan financial headlines (經濟日報 / 工商時報 / 鉅亨網 / MoneyDJ style) and
# English wire copy on Taiwan stocks. Tone is the market mood the wording conveys: euphoric /
# optimistic (+) or fearful / pessimistic (−). Ambiguous words (漲價, 觀望, "cut", "spike",
# "sell") are left out on purpose; neutral corporate events (法說會, 董事會, 除息) carry no tone.

POSITIVE_ZH: tuple[str, ...] = (
    # price action
    "創新高", "再創新高", "新高", "歷史高點", "漲停", "亮燈漲停", "大漲", "飆漲", "飆升", "狂飆",
    "噴出", "勁揚", "走高", "攀升", "上揚", "強攻", "強彈", "反彈", "回升", "站上", "突破",
    "長紅", "紅盤", "收紅", "價量齊揚", "多頭", "多方", "軋空", "創高", "賣壓減輕",
    "恐慌指數回落", "恐慌指數下滑", "恐慌指數走低",
    # analysts and investors
    "喊進", "買進評等", "調升", "上調", "上修", "升評", "看好", "樂觀", "利多", "加碼", "搶進",
    "追捧", "買超", "回補", "吸金", "湧入", "資金追捧", "目標價上調",
    # fundamentals
    "暴增", "大增", "倍增", "激增", "成長", "優於預期", "超乎預期", "亮眼", "暢旺", "熱絡",
    "滿載", "報喜", "轉盈", "轉虧為盈", "獲利創高", "營收創高", "旺季", "受惠", "強勁",
)  # fmt: skip
NEGATIVE_ZH: tuple[str, ...] = (
    # price action
    "重挫", "跌停", "崩跌", "崩盤", "暴跌", "大跌", "重摔", "急殺", "殺盤", "下挫", "走低",
    "下跌", "跳水", "失守", "跌破", "破底", "長黑", "收黑", "翻黑", "綠油油", "空頭", "空方",
    "創新低", "新低", "賣壓", "恐慌性賣壓", "倒貨", "出脫", "賣超", "套牢", "斷頭", "追繳",
    "融資追繳", "恐慌指數飆升", "恐慌指數攀升", "恐慌指數走高",
    # analysts and investors
    "恐慌", "恐懼", "悲觀", "看壞", "看淡", "利空", "下修", "調降", "下調", "降評", "減碼",
    "砍目標價", "大砍", "示警", "警訊", "疑慮", "憂慮", "擔憂", "黑天鵝", "風暴", "保守",
    # fundamentals
    "衰退", "虧損", "轉虧", "由盈轉虧", "大減", "銳減", "驟減", "下滑", "放緩", "疲弱", "疲軟",
    "不如預期", "低於預期", "遜於預期", "淡季", "停工", "斷鏈", "違約", "掏空", "下市", "暴雷",
)  # fmt: skip
#: English verbs (inflected: -s / -es / -ed / -ing / -ies / -ied and the irregular forms below;
#: a phrase inflects its first word: "piles into", "cutting target") ...
POSITIVE_EN_VERBS: tuple[str, ...] = (
    "surge", "soar", "jump", "rally", "rebound", "climb", "gain", "rise", "recover", "beat",
    "exceed", "outperform", "upgrade", "boost", "pile into", "snap up", "hit record",
    "raise target", "top estimates", "win",
)  # fmt: skip
NEGATIVE_EN_VERBS: tuple[str, ...] = (
    "plunge", "slump", "tumble", "plummet", "crash", "sink", "slide", "drop", "fall", "decline",
    "dive", "dump", "panic", "warn", "downgrade", "underperform", "miss", "slash", "worry",
    "cut target", "halt", "slip",
)  # fmt: skip
#: ... and words or phrases matched exactly as written (plurals listed explicitly).
POSITIVE_EN_WORDS: tuple[str, ...] = (
    "record", "record high", "record highs", "all-time high", "record revenue", "record profit",
    "record sales", "overweight", "buy rating", "bullish", "optimism", "optimistic", "upbeat",
    "robust", "strong", "stronger", "boom", "booming", "breakout", "strong demand",
)  # fmt: skip
NEGATIVE_EN_WORDS: tuple[str, ...] = (
    "sell-off", "selloff", "sell-offs", "fear", "fears", "warning", "profit warning",
    "underweight", "sell rating", "bearish", "pessimism", "pessimistic", "gloomy", "weak",
    "weaker", "slowdown", "loss", "losses", "record low", "record loss", "concern", "concerns",
    "worries", "margin call", "default", "probe", "lawsuit", "bankruptcy", "turmoil", "rout",
    "jitters", "volatility spikes",
)  # fmt: skip

NEGATORS_ZH: tuple[str, ...] = ("沒有", "無法", "未能", "不再", "不會", "並未", "不", "未", "沒", "無")  # fmt: skip
NEGATORS_EN: tuple[str, ...] = ("not", "no", "never", "without", "fails to", "failed to")

_IRREGULAR_EN: dict[str, tuple[str, ...]] = {
    "sink": ("sank", "sunk"),
    "rise": ("rose", "risen"),
    "fall": ("fell", "fallen"),
    "win": ("won", "winning"),
    "slide": ("slid",),
    "dive": ("dove",),
    "hit": ("hitting",),
    "beat": ("beaten",),
    "panic": ("panicked", "panicking"),
}
_DOUBLING = ("drop", "slip", "snap", "top", "cut", "plan")


def _inflect(phrase: str) -> set[str]:
    """Surface forms of an English verb (phrase): its first word inflected, the rest kept."""
    head, sep, tail = phrase.partition(" ")
    forms = {head, *_IRREGULAR_EN.get(head, ())}
    if head.endswith("y") and head[-2] not in "aeiou":
        forms |= {head[:-1] + "ies", head[:-1] + "ied", head + "ing"}
    elif head.endswith("e"):
        forms |= {head + "s", head + "d", head[:-1] + "ing"}
    elif head.endswith(("sh", "ch", "ss", "x")):
        forms |= {head + "es", head + "ed", head + "ing"}
    else:
        forms |= {head + "s", head + "ed", head + "ing"}
    if head in _DOUBLING:
        forms |= {head + head[-1] + "ed", head + head[-1] + "ing"}
    return {f + sep + tail for f in forms}


def _lexicon() -> dict[str, int]:
    """Surface form → tone (+1 / −1). Written words win over inflected forms."""
    lex: dict[str, int] = {}
    for terms, tone in (
        (POSITIVE_ZH, 1),
        (NEGATIVE_ZH, -1),
        (POSITIVE_EN_WORDS, 1),
        (NEGATIVE_EN_WORDS, -1),
    ):
        for t in terms:
            lex[t] = tone
    for verbs, tone in ((POSITIVE_EN_VERBS, 1), (NEGATIVE_EN_VERBS, -1)):
        for v in verbs:
            for form in _inflect(v):
                lex.setdefault(form, tone)
    return lex


#: Every surface form of the default lexicon → tone (+1 optimistic, −1 fearful).
LEXICON: dict[str, int] = _lexicon()


def _alternation(terms) -> str:
    return "|".join(re.escape(t) for t in sorted(terms, key=lambda t: (-len(t), t)))


def _patterns(lex: dict[str, int]) -> tuple[str, str]:
    """(the match regex over lower-cased titles, the regex stripping a leading negator)."""
    zh = [t for t in lex if not t.isascii()]
    en = [t for t in lex if t.isascii()]
    neg_zh, neg_en = _alternation(NEGATORS_ZH), _alternation(NEGATORS_EN)
    parts = []
    if zh:
        parts.append(rf"(?:(?:{neg_zh})?(?:{_alternation(zh)}))")
    if en:
        # English terms on word boundaries; the negator directly before the term
        parts.append(rf"(?:\b(?:(?:{neg_en})\s+)?(?:{_alternation(en)})\b)")
    return "|".join(parts), rf"^(?:(?:{neg_zh})|(?:(?:{neg_en})\s+))"


# ------------------------------------------------------------------------------ scorers


@runtime_checkable
class SentimentScorer(Protocol):
    """Scores headlines: ``score(titles)`` returns one Float64 per title in [-1, 1] (positive =
    optimistic / euphoric, negative = fearful), null for a null title. ``name`` identifies the
    scorer (and its version) in lineage."""

    name: str

    def score(self, titles: pl.Series) -> pl.Series: ...


class LexiconScorer:
    """The default, offline scorer: Chinese + English Taiwan-finance lexicon with simple negation
    (see the module docstring). ``extra`` adds or overrides terms (term → +1 / −1)."""

    def __init__(self, extra: dict[str, int] | None = None, name: str = "lexicon_v1") -> None:
        lex = dict(LEXICON)
        for term, tone in (extra or {}).items():
            if tone not in (-1, 1) or not term.strip():
                raise QGError(f"lexicon term {term!r}: tone {tone!r}; use +1 or -1")
            lex[term.lower()] = int(tone)
        self.name = name
        self.lexicon = lex
        self._match, self._strip = _patterns(lex)

    def counts(self, titles: pl.Series) -> pl.DataFrame:
        """Per title: ``pos`` and ``neg`` term counts (UInt32, negation applied; null for a
        null title)."""
        keys = pl.Series(list(self.lexicon), dtype=pl.String)
        tones = pl.Series(list(self.lexicon.values()), dtype=pl.Int8)
        m = pl.element()
        direct = m.replace_strict(keys, tones, default=None, return_dtype=pl.Int8)
        negated = -m.str.replace(self._strip, "").replace_strict(
            keys, tones, default=0, return_dtype=pl.Int8
        )
        hits = pl.col("t").str.to_lowercase().str.extract_all(self._match)
        hits = hits.list.eval(pl.coalesce(direct, negated))
        return pl.DataFrame({"t": titles.cast(pl.String)}).select(
            pos=hits.list.eval((pl.element() > 0).cast(pl.UInt32)).list.sum(),
            neg=hits.list.eval((pl.element() < 0).cast(pl.UInt32)).list.sum(),
        )

    def score(self, titles: pl.Series) -> pl.Series:
        """Tone in [-1, 1]: (pos − neg) / (pos + neg), 0 without a term, null for a null title."""
        c = self.counts(titles)
        pos, neg = pl.col("pos").cast(pl.Float64), pl.col("neg").cast(pl.Float64)
        out = c.select(
            pl.when(pos.is_null())
            .then(None)
            .when(pos + neg > 0)
            .then((pos - neg) / (pos + neg))
            .otherwise(0.0)
            .cast(pl.Float64)
            .alias(titles.name or "score")
        )
        return out.to_series()


# ------------------------------------------------------------------------------ aggregation

_NEWS_COLUMNS = ("session", "symbol", "title")


def score_news(news: pl.DataFrame, scorer: SentimentScorer | None = None) -> pl.DataFrame:
    """``news`` with a ``score`` column (Float64 in [-1, 1]); rows with a null or blank title
    are dropped (not a headline). Raises ``QGError`` on a missing column or a scorer that returns
    the wrong length or values outside [-1, 1]."""
    scorer = scorer or LexiconScorer()
    for col in _NEWS_COLUMNS:
        if col not in news.columns:
            raise QGError(f"news: missing column {col!r}; expected {', '.join(_NEWS_COLUMNS)}")
    rows = news.select(
        pl.col("session").cast(pl.Date), pl.col("symbol").cast(pl.String), pl.col("title")
    ).filter(pl.col("title").str.strip_chars().str.len_chars() > 0)
    s = scorer.score(rows["title"])
    if not isinstance(s, pl.Series) or s.len() != rows.height:
        got = s.len() if isinstance(s, pl.Series) else type(s).__name__
        raise QGError(
            f"sentiment scorer {scorer.name!r} returned {got} scores for {rows.height} titles; "
            "return one Float64 Series value per title"
        )
    s = s.cast(pl.Float64, strict=False).fill_nan(None)
    if s.drop_nulls().len() and (s.min() < -1 or s.max() > 1):  # type: ignore[operator]
        raise QGError(f"sentiment scorer {scorer.name!r} returned scores outside [-1, 1]")
    return rows.with_columns(score=s)


def daily_news_sentiment(news: pl.DataFrame, scorer: SentimentScorer | None = None) -> pl.DataFrame:
    """Per (session, symbol) with at least one symbol headline: ``news_score_sum`` (Σ scores,
    Float64) and ``news_count`` (headlines, Int32). Market-wide rows (symbol null) are left to
    ``daily_market_news_sentiment``. Sorted by session, symbol; sums add titles in input order
    within a session (the scorer is row-wise, so a row's score never depends on other rows)."""
    scored = score_news(news, scorer)
    return (
        scored.filter(pl.col("symbol").is_not_null() & pl.col("score").is_not_null())
        .group_by("session", "symbol", maintain_order=True)
        .agg(
            news_score_sum=pl.col("score").sum().cast(pl.Float64),
            news_count=pl.len().cast(pl.Int32),
        )
        .sort("session", "symbol", maintain_order=True)
    )


def daily_market_news_sentiment(
    news: pl.DataFrame, scorer: SentimentScorer | None = None
) -> pl.DataFrame:
    """Per session with a market-wide headline (symbol null): ``market_news_score_sum``,
    ``market_news_count`` (Int32) and ``market_news_sentiment`` (mean tone in [-1, 1])."""
    scored = score_news(news, scorer)
    return (
        scored.filter(pl.col("symbol").is_null() & pl.col("score").is_not_null())
        .group_by("session", maintain_order=True)
        .agg(
            market_news_score_sum=pl.col("score").sum().cast(pl.Float64),
            market_news_count=pl.len().cast(pl.Int32),
        )
        .with_columns(
            market_news_sentiment=pl.col("market_news_score_sum") / pl.col("market_news_count")
        )
        .sort("session", maintain_order=True)
    )
