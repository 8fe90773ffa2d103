"""The sample market's security master: codes, names, industries, listings and delistings.

Symbols are 4-digit codes drawn from real TWSE/TPEx code blocks (the first two digits fix the
industry, as on the exchange). About 80% list before the history starts; the rest are IPOs
whose ``listed_date`` is their first session. About 8% delist: ``delisted_date`` is the first
session without trading (the last bar is the session before) and the name stays in
``stock_info`` (no survivorship bias). Also fixed per symbol here: beta, volatility, liquidity,
share count, margin eligibility and the main-force branches that run its campaigns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from quant_genesis_dagster.domain.sample.config import (
    CODE_PREFIXES,
    FINANCIAL_INDUSTRIES,
    INDUSTRY_BY_PREFIX,
    MAIN_FORCE_BRANCHES,
    MISSING_SESSION_PERIOD,
    SampleMarketConfig,
)
from quant_genesis_dagster.domain.sample.rng import Stream, world_rng
from quant_genesis_dagster.domain.tables import RAW_SCHEMAS

_NAME_HEADS = np.array(list("台聯華宏鴻益昇達興光晶新永大中信國元富東南統友力嘉泰凱群裕佳長全和"))
_NAME_TAILS = np.array(list("碩豐亞勝茂源成普德通揚創隆昌鼎宇億盛寶陽翔展欣鑫晟偉"))
_INDUSTRY_SUFFIX = {
    "水泥工業": "泥",
    "食品工業": "食品",
    "塑膠工業": "塑",
    "紡織纖維": "紡",
    "電機機械": "機電",
    "電器電纜": "電纜",
    "化學工業": "化",
    "玻璃陶瓷": "玻陶",
    "造紙工業": "紙業",
    "鋼鐵工業": "鋼",
    "橡膠工業": "橡膠",
    "汽車工業": "汽車",
    "半導體業": "電",
    "電子零組件業": "電子",
    "建材營造業": "建設",
    "航運業": "海運",
    "觀光餐旅": "觀光",
    "金融保險業": "金",
    "貿易百貨業": "百貨",
    "電腦及週邊設備業": "電腦",
    "光電業": "光電",
    "通信網路業": "通",
    "生技醫療業": "生技",
    "資訊服務業": "資訊",
    "電子通路業": "通路",
    "其他電子業": "科技",
    "其他業": "實業",
    "存託憑證": "-DR",
}
#: Pre-history listings are spread over these years.
_OLDEST_LISTING = dt.date(1962, 2, 9)
IPO_SHARE = 0.2
DELIST_SHARE = 0.08


@dataclass(frozen=True)
class Universe:
    """Per-symbol static facts, index-aligned (sorted by code)."""

    symbols: np.ndarray  # str codes, sorted
    industry: np.ndarray  # str
    market: np.ndarray  # "TWSE" | "TPEx"
    names: np.ndarray  # str
    listed_date: np.ndarray  # datetime64[D]
    list_idx: np.ndarray  # int64 session index of the first bar (0 for pre-history listings)
    is_ipo: np.ndarray  # bool: listed inside the history (no limit for 5 sessions)
    delisted_date: np.ndarray  # datetime64[D], NaT when still listed
    delist_idx: np.ndarray  # int64 session index of the first session without trading (T if none)
    beta: np.ndarray
    vol_mult: np.ndarray
    adv_lots: np.ndarray  # typical daily volume in lots
    price0: np.ndarray  # price before the first bar (prev close in 2009, IPO underwriting price)
    shares_out: np.ndarray  # shares outstanding (drives the balance-sheet scale)
    equity_multiplier: np.ndarray
    asset_turnover: np.ndarray  # quarterly revenue / assets
    opex_ratio: np.ndarray
    margin_eligible: np.ndarray  # bool
    dividend_payer: np.ndarray  # bool
    dividend_yield: np.ndarray  # cash dividend / price when paying
    campaign_brokers: np.ndarray  # (n, 3) indices into MAIN_FORCE_BRANCHES
    campaign_weights: np.ndarray  # (n, 3) shares of the campaign net flow, rows sum to 1

    @property
    def n(self) -> int:
        return len(self.symbols)

    def stock_info(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "symbol": self.symbols.tolist(),
                "name": self.names.tolist(),
                "market": self.market.tolist(),
                "industry": self.industry.tolist(),
                "listed_date": self.listed_date,
                "delisted_date": self.delisted_date,
            }
        ).cast(dict(RAW_SCHEMAS["stock_info"]))


def drop_sessions(seed: int, n_sessions: int) -> np.ndarray:
    """Session indices of the vendor-dropped daily_prices sessions: one per period, fixed phase."""
    phase = 5 + int(world_rng(seed, Stream.UNIVERSE, 1).integers(MISSING_SESSION_PERIOD))
    return np.arange(phase, n_sessions, MISSING_SESSION_PERIOD)


def build_universe(cfg: SampleMarketConfig, sessions: np.ndarray) -> Universe:
    """Draw the universe for ``sessions`` (the whole XTAI calendar, datetime64[D])."""
    rng = world_rng(cfg.seed, Stream.UNIVERSE)
    n, t_all = cfg.n_symbols, len(sessions)
    prefixes = np.array(CODE_PREFIXES)
    candidates = np.char.add(
        np.repeat(prefixes, 99),
        np.tile(np.char.zfill(np.arange(1, 100).astype(str), 2), len(prefixes)),
    )
    candidates = candidates[candidates <= "9958"]
    symbols = np.sort(rng.choice(candidates, size=n, replace=False))
    industry_of_prefix = np.array([INDUSTRY_BY_PREFIX[p] for p in CODE_PREFIXES])
    industry = industry_of_prefix[np.searchsorted(prefixes, symbols.astype("U2"))]
    market = np.where(rng.random(n) < 0.6, "TWSE", "TPEx")
    suffixes = np.array([_INDUSTRY_SUFFIX[i] for i in industry_of_prefix])
    suffix = suffixes[np.searchsorted(prefixes, symbols.astype("U2"))]
    names = np.char.add(np.char.add(rng.choice(_NAME_HEADS, n), rng.choice(_NAME_TAILS, n)), suffix)

    # Listings: IPOs get a session inside the history (never a dropped session, so the first
    # bar is always published); the rest a date before it.
    is_ipo = rng.random(n) < IPO_SHARE
    drops = drop_sessions(cfg.seed, t_all)
    ipo_idx = rng.integers(6, t_all - 5, n)
    ipo_idx = np.where(np.isin(ipo_idx, drops), ipo_idx + 1, ipo_idx)
    span = (np.datetime64(sessions[0]) - np.datetime64(_OLDEST_LISTING)).astype(int)
    old_dates = np.datetime64(_OLDEST_LISTING) + rng.integers(0, span - 1, n).astype(
        "timedelta64[D]"
    )
    list_idx = np.where(is_ipo, ipo_idx, 0)
    listed_date = np.where(is_ipo, sessions[ipo_idx], old_dates).astype("datetime64[D]")

    # Delistings: at least ~6 months after the first bar; a draw past the calendar means none.
    delists = rng.random(n) < DELIST_SHARE / 0.8
    delist_draw = (
        list_idx + 120 + (rng.random(n) * (1.25 * t_all - list_idx - 120)).astype(np.int64)
    )
    delist_idx = np.where(delists & (delist_draw < t_all), delist_draw, t_all)
    delisted_date = np.where(
        delist_idx < t_all, sessions[np.minimum(delist_idx, t_all - 1)], np.datetime64("NaT")
    ).astype("datetime64[D]")

    is_fin = np.isin(industry, list(FINANCIAL_INDUSTRIES))
    adv_lots = np.exp(rng.normal(np.log(1200.0), 1.1, n)).clip(30, 80_000)
    price0 = np.exp(rng.normal(np.log(35.0), 0.85, n)).clip(6, 1500)
    turnover_rate = np.exp(rng.normal(np.log(0.004), 0.5, n))
    shares_out = adv_lots * 1000 / turnover_rate
    n_brokers = rng.integers(1, 4, n)
    weights = rng.gamma(2.0, 1.0, (n, 3)) * (np.arange(3) < n_brokers[:, None])
    weights /= weights.sum(axis=1, keepdims=True)
    brokers = np.argsort(rng.random((n, len(MAIN_FORCE_BRANCHES))), axis=1)[:, :3]
    return Universe(
        symbols=symbols,
        industry=industry,
        market=market,
        names=names,
        listed_date=listed_date,
        list_idx=list_idx.astype(np.int64),
        is_ipo=is_ipo,
        delisted_date=delisted_date,
        delist_idx=delist_idx.astype(np.int64),
        beta=rng.uniform(0.6, 1.4, n),
        vol_mult=rng.uniform(0.7, 1.4, n),
        adv_lots=adv_lots,
        price0=price0,
        shares_out=shares_out,
        equity_multiplier=np.where(is_fin, rng.uniform(8, 15, n), rng.uniform(1.3, 3.0, n)),
        asset_turnover=np.where(is_fin, rng.uniform(0.01, 0.02, n), rng.uniform(0.12, 0.35, n)),
        opex_ratio=rng.uniform(0.04, 0.2, n),
        margin_eligible=rng.random(n) < 0.9,
        dividend_payer=rng.random(n) < 0.85,
        dividend_yield=rng.uniform(0.01, 0.065, n),
        campaign_brokers=brokers,
        campaign_weights=weights,
    )
