"""SQLAlchemy 2.0 ORM models of the warehouse — the one place every table is declared.

Layers (SPEC §3, §4):

* **raw** (``raw_*``): what a source adapter returned, unmodified. Raw tables keep duplicates
  and bad prints (the cleaner must see them), so they have a surrogate ``id`` key.
* **clean** (``cleaned_prices``, ``aligned_panel``, ``quarantine``): validated, adjusted and
  point-in-time aligned data with natural keys.
* factor and result tables arrive with their issues, each through an Alembic migration.

Every partitioned table has a ``session`` column: the XTAI trading session whose partition owns
the row (see ``domain.calendar`` for how non-session dates such as a Saturday publication or a
New York date are mapped). Writing a partition replaces exactly the rows whose ``session`` lies in
the partition range, in one transaction (``warehouse.io``).

Units: share counts in shares (not lots), money in TWD, prices in TWD per share, US prices in USD.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# A BIGINT surrogate key that is also SQLite's rowid alias (autoincrement works there).
SurrogateKey = BigInteger().with_variant(Integer(), "sqlite")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# --------------------------------------------------------------------------------------------
# raw layer
# --------------------------------------------------------------------------------------------


class RawStockInfo(Base):
    """The security master, delisted names included (no survivorship bias). Not partitioned."""

    __tablename__ = "raw_stock_info"
    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    market: Mapped[str] = mapped_column(String(8))  # TWSE | TPEx
    industry: Mapped[str] = mapped_column(String(64))
    listed_date: Mapped[dt.date] = mapped_column(Date)
    delisted_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)


class RawDailyPrices(Base):
    """Unadjusted daily bars as published. Suspended sessions have no row."""

    __tablename__ = "raw_daily_prices"
    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    session: Mapped[dt.date] = mapped_column(Date)
    symbol: Mapped[str] = mapped_column(String(16))
    open: Mapped[float | None] = mapped_column(Float, nullable=True)
    high: Mapped[float | None] = mapped_column(Float, nullable=True)
    low: Mapped[float | None] = mapped_column(Float, nullable=True)
    close: Mapped[float | None] = mapped_column(Float, nullable=True)
    volume_shares: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    turnover_twd: Mapped[float | None] = mapped_column(Float, nullable=True)
    trades: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    __table_args__ = (Index(None, "session", "symbol"),)


class RawCorporateActions(Base):
    """Ex-dividend / ex-rights events. ``session`` is the ex-date (always a session)."""

    __tablename__ = "raw_corporate_actions"
    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    session: Mapped[dt.date] = mapped_column(Date)
    symbol: Mapped[str] = mapped_column(String(16))
    ex_date: Mapped[dt.date] = mapped_column(Date)
    cash_dividend: Mapped[float] = mapped_column(Float)  # TWD per share
    stock_dividend_ratio: Mapped[float] = mapped_column(Float)  # new shares per share (0.05 = 5%)
    split_ratio: Mapped[float] = mapped_column(Float)  # new shares per old share (1.0 = none)
    __table_args__ = (Index(None, "session", "symbol"),)


class RawInstitutionalFlows(Base):
    """Daily buy/sell of the five institutional investor types (三大法人)."""

    __tablename__ = "raw_institutional_flows"
    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    session: Mapped[dt.date] = mapped_column(Date)
    symbol: Mapped[str] = mapped_column(String(16))
    # Foreign_Investor | Foreign_Dealer_Self | Investment_Trust | Dealer_self | Dealer_Hedging
    investor: Mapped[str] = mapped_column(String(32))
    buy_shares: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sell_shares: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    __table_args__ = (Index(None, "session", "symbol"),)


class RowShapes(DeclarativeBase):
    """Row shapes of tables the warehouse stores *packed* (``PACKED_TABLES``): their rows are
    read and written through ``warehouse.io`` exactly like any table's, but they are never
    created as tables of their own (this metadata is not the warehouse's)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RawBrokerFlows(RowShapes):
    """Broker-branch daily report (分點), one row per (session, symbol, branch).

    Stored packed, one warehouse row per session (``RawBrokerFlowsPacked``): it is by far the
    largest raw table (every branch that traded a stock that day — ~17 per symbol in the sample
    market, hundreds for a large cap in the real report), and row-by-row storage made moving it
    through the database drivers the single largest cost of a multi-year backfill.
    """

    __tablename__ = "raw_broker_flows"
    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True)  # position in the session
    session: Mapped[dt.date] = mapped_column(Date)
    symbol: Mapped[str] = mapped_column(String(16))
    broker_id: Mapped[str] = mapped_column(String(16))
    buy_shares: Mapped[int] = mapped_column(BigInteger)
    sell_shares: Mapped[int] = mapped_column(BigInteger)
    avg_buy_price: Mapped[float | None] = mapped_column(Float, nullable=True)
    avg_sell_price: Mapped[float | None] = mapped_column(Float, nullable=True)


class RawBrokerFlowsPacked(Base):
    """``raw_broker_flows`` as stored: one row per session whose ``payload`` holds that
    session's branch rows (every column but ``session``, in the order written) as a Parquet
    file, LZ4-compressed. Read and write it through ``warehouse.io`` with ``RawBrokerFlows``."""

    __tablename__ = "raw_broker_flows_packed"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    n_rows: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class RawMargin(Base):
    """Margin purchase / short sale balances and daily changes, in shares."""

    __tablename__ = "raw_margin"
    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    session: Mapped[dt.date] = mapped_column(Date)
    symbol: Mapped[str] = mapped_column(String(16))
    margin_balance: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    short_balance: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    margin_buy: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    margin_sell: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    short_sell: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    short_cover: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    __table_args__ = (Index(None, "session", "symbol"),)


class RawFinancials(Base):
    """Quarterly statements: income items are single-quarter flows, balance items period-end stocks.

    ``available_date`` is the publication date when known, else null in raw (the cleaner then uses
    the regulatory deadline). ``session`` is the first session on or after the date the row
    became public (publication date, or the deadline when unknown).
    """

    __tablename__ = "raw_financials"
    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    session: Mapped[dt.date] = mapped_column(Date)
    symbol: Mapped[str] = mapped_column(String(16))
    period_end: Mapped[dt.date] = mapped_column(Date)
    available_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    revenue: Mapped[float | None] = mapped_column(Float, nullable=True)
    gross_profit: Mapped[float | None] = mapped_column(Float, nullable=True)
    operating_income: Mapped[float | None] = mapped_column(Float, nullable=True)
    pretax_income: Mapped[float | None] = mapped_column(Float, nullable=True)
    net_income: Mapped[float | None] = mapped_column(Float, nullable=True)
    interest_expense: Mapped[float | None] = mapped_column(Float, nullable=True)
    total_assets: Mapped[float | None] = mapped_column(Float, nullable=True)
    total_equity: Mapped[float | None] = mapped_column(Float, nullable=True)
    __table_args__ = (Index(None, "session", "symbol"),)


class RawMarketIndicators(Base):
    """Market-wide daily series: TAIEX, VIXTWN, TXO put/call, TX foreign net OI, total margin."""

    __tablename__ = "raw_market_indicators"
    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    session: Mapped[dt.date] = mapped_column(Date, index=True)
    taiex_close: Mapped[float | None] = mapped_column(Float, nullable=True)
    vixtwn: Mapped[float | None] = mapped_column(Float, nullable=True)
    put_call_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    tx_foreign_net_oi: Mapped[float | None] = mapped_column(Float, nullable=True)  # contracts
    margin_total: Mapped[float | None] = mapped_column(Float, nullable=True)  # TWD


class RawUsMarket(Base):
    """US proxy daily bars. ``session`` is the first TW session that opens after the NY close."""

    __tablename__ = "raw_us_market"
    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    session: Mapped[dt.date] = mapped_column(Date)
    ny_date: Mapped[dt.date] = mapped_column(Date)
    symbol: Mapped[str] = mapped_column(String(16))
    open: Mapped[float | None] = mapped_column(Float, nullable=True)
    high: Mapped[float | None] = mapped_column(Float, nullable=True)
    low: Mapped[float | None] = mapped_column(Float, nullable=True)
    close: Mapped[float | None] = mapped_column(Float, nullable=True)
    volume: Mapped[float | None] = mapped_column(Float, nullable=True)
    __table_args__ = (Index(None, "session", "symbol"),)


class RawNews(Base):
    """Headlines. ``session`` is the first session on or after the Taipei date of publication."""

    __tablename__ = "raw_news"
    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    session: Mapped[dt.date] = mapped_column(Date)
    published_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    symbol: Mapped[str | None] = mapped_column(String(16), nullable=True)
    source: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (Index(None, "session", "symbol"),)


# --------------------------------------------------------------------------------------------
# clean layer
# --------------------------------------------------------------------------------------------


class Quarantine(Base):
    """Raw rows the cleaner rejected (or gaps it found), each with a machine-readable reason."""

    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    session: Mapped[dt.date] = mapped_column(Date)
    table_name: Mapped[str] = mapped_column(String(64))  # the raw table the row came from
    symbol: Mapped[str | None] = mapped_column(String(16), nullable=True)
    reason: Mapped[str] = mapped_column(String(64))
    # rejected: row dropped | corrected: row kept with a fixed value | flagged: kept, worth knowing
    action: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)  # the offending row / context as JSON
    __table_args__ = (Index(None, "session", "table_name"),)


class CleanedPrices(Base):
    """Validated bars with raw and adjusted prices (SPEC §4).

    ``adj_factor`` is the cumulative product of per-event factors
    ``reference / prev_close`` over ex-dates up to and including ``session``;
    ``*_adj = raw / adj_factor``. That is the backward-adjusted series anchored at the start of
    history, so a row never changes when later corporate actions arrive (point-in-time); the
    backward adjustment "as of" a date A is ``*_adj * adj_factor(A)``.
    """

    __tablename__ = "cleaned_prices"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume_shares: Mapped[int] = mapped_column(BigInteger)
    turnover_twd: Mapped[float | None] = mapped_column(Float, nullable=True)
    trades: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    vwap: Mapped[float] = mapped_column(Float)  # turnover / volume, close when no turnover
    adj_factor: Mapped[float] = mapped_column(Float)
    open_adj: Mapped[float] = mapped_column(Float)
    high_adj: Mapped[float] = mapped_column(Float)
    low_adj: Mapped[float] = mapped_column(Float)
    close_adj: Mapped[float] = mapped_column(Float)
    vwap_adj: Mapped[float] = mapped_column(Float)
    prev_close: Mapped[float | None] = mapped_column(Float, nullable=True)  # last valid raw close
    is_ex_date: Mapped[bool] = mapped_column(Boolean)
    limit_up: Mapped[bool] = mapped_column(Boolean)  # closed at the up limit
    limit_down: Mapped[bool] = mapped_column(Boolean)
    sessions_since_listing: Mapped[int] = mapped_column(Integer)


class AlignedPanel(Base):
    """One row per (session, listed symbol): prices, flows, margin, as-of fundamentals, market
    indicators and US proxies, all known by the end of ``session`` (SPEC §4)."""

    __tablename__ = "aligned_panel"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    market: Mapped[str] = mapped_column(String(8))
    industry: Mapped[str] = mapped_column(String(64))
    # prices (carried forward at most N sessions when suspended / missing; see stale_sessions)
    close: Mapped[float | None] = mapped_column(Float, nullable=True)
    close_adj: Mapped[float | None] = mapped_column(Float, nullable=True)
    vwap_adj: Mapped[float | None] = mapped_column(Float, nullable=True)
    high_adj: Mapped[float | None] = mapped_column(Float, nullable=True)
    low_adj: Mapped[float | None] = mapped_column(Float, nullable=True)
    volume_shares: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    turnover_twd: Mapped[float | None] = mapped_column(Float, nullable=True)
    ret_1d: Mapped[float | None] = mapped_column(Float, nullable=True)  # close_adj / prev - 1
    has_bar: Mapped[bool] = mapped_column(Boolean)  # a validated bar exists for this session
    stale_sessions: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 0 = fresh bar
    limit_up: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    limit_down: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # institutional net buying, shares (null = no report, not zero)
    foreign_net: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    trust_net: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    dealer_net: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    inst_net: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # margin, shares
    margin_balance: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    short_balance: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    margin_buy: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    margin_sell: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    short_sell: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    short_cover: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # fundamentals as of the session: TTM flows over the last four quarters available, latest stocks
    fin_period_end: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    fin_available_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    revenue_ttm: Mapped[float | None] = mapped_column(Float, nullable=True)
    gross_profit_ttm: Mapped[float | None] = mapped_column(Float, nullable=True)
    operating_income_ttm: Mapped[float | None] = mapped_column(Float, nullable=True)
    pretax_income_ttm: Mapped[float | None] = mapped_column(Float, nullable=True)
    net_income_ttm: Mapped[float | None] = mapped_column(Float, nullable=True)
    interest_expense_ttm: Mapped[float | None] = mapped_column(Float, nullable=True)
    total_assets: Mapped[float | None] = mapped_column(Float, nullable=True)
    total_equity: Mapped[float | None] = mapped_column(Float, nullable=True)
    # market-wide
    taiex_close: Mapped[float | None] = mapped_column(Float, nullable=True)
    vixtwn: Mapped[float | None] = mapped_column(Float, nullable=True)
    put_call_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    tx_foreign_net_oi: Mapped[float | None] = mapped_column(Float, nullable=True)
    margin_total: Mapped[float | None] = mapped_column(Float, nullable=True)
    # US proxies: compounded close-to-close return over the NY sessions mapped to this session
    us_smh_ret: Mapped[float | None] = mapped_column(Float, nullable=True)
    us_soxx_ret: Mapped[float | None] = mapped_column(Float, nullable=True)
    us_qqq_ret: Mapped[float | None] = mapped_column(Float, nullable=True)
    us_tsm_ret: Mapped[float | None] = mapped_column(Float, nullable=True)
    us_spy_ret: Mapped[float | None] = mapped_column(Float, nullable=True)


# --------------------------------------------------------------------------------------------
# intraday layer (written by the sidecar at the close; SPEC §7.5)
# --------------------------------------------------------------------------------------------


class IntradayEod(Base):
    """End-of-day aggregates of the intraday engine per (session, symbol). The sidecar writes
    them after the close; the next daily run's chip factor reads them (null when absent)."""

    __tablename__ = "intraday_eod"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    rcnc_close: Mapped[float | None] = mapped_column(Float, nullable=True)  # RCNC at the close
    close: Mapped[float | None] = mapped_column(Float, nullable=True)  # last trade, raw TWD
    rcnc_vol: Mapped[float | None] = mapped_column(Float, nullable=True)  # std of RCNC / RCNC
    sweep_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)  # big / total volume
    liquidity_pressure: Mapped[float | None] = mapped_column(Float, nullable=True)  # spread / mid
    big_buy_volume: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    big_sell_volume: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tick_count: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class IntradaySignals(Base):
    """Intraday signals of the sidecar (SPEC §7.4), one per (session, symbol, kind, ts): ``ts`` is
    the exchange time of the tick (or proxy print) that raised it; ``value`` depends on the kind
    (RCNC slope in TWD, sweep lots, spread ticks, ±1 limit side, silent minutes, proxy move)."""

    __tablename__ = "intraday_signals"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    price: Mapped[float] = mapped_column(Float)
    rcnc: Mapped[float | None] = mapped_column(Float, nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str] = mapped_column(Text)


# --------------------------------------------------------------------------------------------
# factor layer (SPEC §5)
# --------------------------------------------------------------------------------------------


class MainForceFlows(Base):
    """Main-force net flow per (session, listed symbol): the day's top broker branches by
    absolute net volume, or institutional net buying when no branch report exists."""

    __tablename__ = "main_force_flows"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    mf_net: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # shares
    mf_source: Mapped[str | None] = mapped_column(String(16), nullable=True)  # broker|institutional
    mf_buy: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mf_sell: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    branches: Mapped[int] = mapped_column(Integer)
    broker_concentration: Mapped[float | None] = mapped_column(Float, nullable=True)
    tier_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)


class ChipFactors(Base):
    """F_C components per (session, symbol): LAC cost line and distance, flow persistence and
    concentration, and the sidecar's end-of-day slots (SPEC §5.1)."""

    __tablename__ = "chip_factors"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    mf_net: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mf_source: Mapped[str | None] = mapped_column(String(16), nullable=True)
    lac: Mapped[float | None] = mapped_column(Float, nullable=True)  # adjusted TWD
    lac_status: Mapped[str] = mapped_column(String(16))  # ok|warmup|immaterial|no_flow
    lac_dist: Mapped[float | None] = mapped_column(Float, nullable=True)
    consec_buy_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    net_ratio_20d: Mapped[float | None] = mapped_column(Float, nullable=True)
    broker_concentration_20d: Mapped[float | None] = mapped_column(Float, nullable=True)
    tier_ratio_20d: Mapped[float | None] = mapped_column(Float, nullable=True)
    rcnc_close_dev: Mapped[float | None] = mapped_column(Float, nullable=True)
    rcnc_vol: Mapped[float | None] = mapped_column(Float, nullable=True)
    sweep_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    liquidity_pressure: Mapped[float | None] = mapped_column(Float, nullable=True)
    warmup: Mapped[bool] = mapped_column(Boolean)


class SentimentFactors(Base):
    """F_S components per (session, symbol): the market fear & greed index (0 = extreme fear)
    and its confirmation, news tone, margin and short-sale crowding (SPEC §5.2)."""

    __tablename__ = "sentiment_factors"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    fear_greed: Mapped[float | None] = mapped_column(Float, nullable=True)
    market_abnormal: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    news_sentiment: Mapped[float | None] = mapped_column(Float, nullable=True)
    news_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    margin_crowding: Mapped[float | None] = mapped_column(Float, nullable=True)
    margin_change: Mapped[float | None] = mapped_column(Float, nullable=True)
    short_change: Mapped[float | None] = mapped_column(Float, nullable=True)
    short_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    abnormal_move: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    warmup: Mapped[bool] = mapped_column(Boolean)


class ValueFactors(Base):
    """F_D components per (session, symbol): three- and five-factor DuPont on TTM values
    available at the session, ROE and margin trends (SPEC §5.3)."""

    __tablename__ = "value_factors"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    net_margin: Mapped[float | None] = mapped_column(Float, nullable=True)
    asset_turnover: Mapped[float | None] = mapped_column(Float, nullable=True)
    equity_multiplier: Mapped[float | None] = mapped_column(Float, nullable=True)
    roe: Mapped[float | None] = mapped_column(Float, nullable=True)
    tax_burden: Mapped[float | None] = mapped_column(Float, nullable=True)
    interest_burden: Mapped[float | None] = mapped_column(Float, nullable=True)
    ebit_margin: Mapped[float | None] = mapped_column(Float, nullable=True)
    roe_5f: Mapped[float | None] = mapped_column(Float, nullable=True)
    roe_trend: Mapped[float | None] = mapped_column(Float, nullable=True)
    margin_trend: Mapped[float | None] = mapped_column(Float, nullable=True)
    negative_equity: Mapped[bool] = mapped_column(Boolean)
    has_fundamentals: Mapped[bool] = mapped_column(Boolean)


#: Component columns z-scored in zscored_factors (``z_<name>``), by family: the weighted
#: components of each composite (``COMPONENTS`` of the factor modules; a test keeps them equal).
Z_COMPONENTS: dict[str, tuple[str, ...]] = {
    "chip": ("net_ratio_20d", "consec_buy_days"),
    "sentiment": (
        "news_sentiment",
        "margin_crowding",
        "margin_change",
        "short_change",
        "short_ratio",
    ),
    "value": ("net_margin", "roe", "roe_trend", "margin_trend"),
}


class ZscoredFactors(Base):
    """Standardized components and the composites F_C, F_S, F_D per (session, symbol)
    (SPEC §5.4): per-day cross-sectional winsorized z-scores by default."""

    __tablename__ = "zscored_factors"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    industry: Mapped[str] = mapped_column(String(64))
    z_consec_buy_days: Mapped[float | None] = mapped_column(Float, nullable=True)
    z_net_ratio_20d: Mapped[float | None] = mapped_column(Float, nullable=True)
    z_news_sentiment: Mapped[float | None] = mapped_column(Float, nullable=True)
    z_margin_crowding: Mapped[float | None] = mapped_column(Float, nullable=True)
    z_margin_change: Mapped[float | None] = mapped_column(Float, nullable=True)
    z_short_change: Mapped[float | None] = mapped_column(Float, nullable=True)
    z_short_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    z_net_margin: Mapped[float | None] = mapped_column(Float, nullable=True)
    z_roe: Mapped[float | None] = mapped_column(Float, nullable=True)
    z_roe_trend: Mapped[float | None] = mapped_column(Float, nullable=True)
    z_margin_trend: Mapped[float | None] = mapped_column(Float, nullable=True)
    f_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    f_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    f_d: Mapped[float | None] = mapped_column(Float, nullable=True)
    noise_filtered: Mapped[int] = mapped_column(Integer)  # sentiment readings set to neutral
    warmup: Mapped[bool] = mapped_column(Boolean)  # a chip or sentiment window was not full


# --------------------------------------------------------------------------------------------
# prediction layer (SPEC §6)
# --------------------------------------------------------------------------------------------


class Predictions(Base):
    """Expected returns per (session, symbol) for the next 1, 5 and 10 sessions, made after the
    close of ``session`` from the champion parameter version recorded on the row."""

    __tablename__ = "predictions"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    f_c: Mapped[float | None] = mapped_column(Float, nullable=True)
    f_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    f_d: Mapped[float | None] = mapped_column(Float, nullable=True)
    score: Mapped[float] = mapped_column(Float)  # β·F with missing composites neutral (0)
    r_pred_1d: Mapped[float] = mapped_column(Float)
    r_pred_5d: Mapped[float] = mapped_column(Float)
    r_pred_10d: Mapped[float] = mapped_column(Float)
    us_move: Mapped[float | None] = mapped_column(Float, nullable=True)  # overnight proxy move
    us_adjust: Mapped[float] = mapped_column(Float)  # cross-market correction (per session)
    position_scale: Mapped[float] = mapped_column(Float)  # suggested weight multiplier
    warmup: Mapped[bool] = mapped_column(Boolean)
    param_version: Mapped[str] = mapped_column(String(64))


class Signals(Base):
    """P1 / P2 entry signals and risk-manager actions with their reasons (SPEC §6). Market-wide
    risk rows have no symbol."""

    __tablename__ = "signals"
    id: Mapped[int] = mapped_column(SurrogateKey, primary_key=True, autoincrement=True)
    session: Mapped[dt.date] = mapped_column(Date)
    symbol: Mapped[str | None] = mapped_column(String(16), nullable=True)
    signal: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))  # buy | exit | warn | reduce
    strength: Mapped[float] = mapped_column(Float)
    reasons: Mapped[str] = mapped_column(Text)  # JSON list of human-readable reasons
    param_version: Mapped[str] = mapped_column(String(64))
    __table_args__ = (Index(None, "session", "symbol"),)


# --------------------------------------------------------------------------------------------
# portfolio and backtest (SPEC §6)
# --------------------------------------------------------------------------------------------


class StrategyReturns(Base):
    """One row per session and strategy: what the book earned over ``session`` from the targets
    decided after the previous close (``domain.backtest``). Strategies: ``macro`` (the daily
    sleeve, on its capital W_Macro × NAV), ``combined`` (the whole book; the intraday sleeve is
    cash until the sidecar trades it) and, with the sidecar, ``intraday``. Money in TWD; returns,
    turnover and costs as fractions of ``capital``."""

    __tablename__ = "strategy_returns"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    strategy: Mapped[str] = mapped_column(String(16), primary_key=True)
    capital: Mapped[float] = mapped_column(Float)  # TWD at the start of the session
    pnl: Mapped[float] = mapped_column(Float)  # TWD, after costs
    nav: Mapped[float] = mapped_column(Float)  # TWD: the book's NAV after the close
    cash: Mapped[float] = mapped_column(Float)  # TWD: the book's cash (negative = borrowed)
    net_return: Mapped[float | None] = mapped_column(Float, nullable=True)
    gross_return: Mapped[float | None] = mapped_column(Float, nullable=True)  # before costs
    turnover: Mapped[float | None] = mapped_column(Float, nullable=True)  # traded / capital
    cost_drag: Mapped[float | None] = mapped_column(Float, nullable=True)  # costs / capital
    commission: Mapped[float] = mapped_column(Float)  # TWD
    tax: Mapped[float] = mapped_column(Float)  # TWD
    slippage: Mapped[float] = mapped_column(Float)  # TWD
    financing: Mapped[float] = mapped_column(Float)  # TWD on borrowed cash
    dividends: Mapped[float] = mapped_column(Float)  # TWD credited on ex-dates
    gross_exposure: Mapped[float] = mapped_column(Float)  # Σ |position| / capital base
    intended_exposure: Mapped[float] = mapped_column(Float)  # Σ target weights decided
    n_positions: Mapped[int] = mapped_column(Integer)
    blocked_orders: Mapped[int] = mapped_column(Integer)  # limit / no bar / participation
    stale_marks: Mapped[int] = mapped_column(Integer)  # held names marked at an old price
    delisted: Mapped[int] = mapped_column(Integer)  # held names sold as they left the panel
    no_predictions: Mapped[bool] = mapped_column(Boolean)  # the decision day had none
    rebalanced: Mapped[bool] = mapped_column(Boolean)  # the decision day re-ranked the book
    param_version: Mapped[str | None] = mapped_column(String(64), nullable=True)


class PortfolioPositions(Base):
    """The book per session, strategy and symbol after the close: every name held, traded, or
    targeted for the next session. ``target_weight`` was decided after the previous close and
    executed on ``session``; ``next_target_weight`` is decided after this close (tomorrow's
    orders). Shares are raw shares; ``shares`` × ``mark`` is the value."""

    __tablename__ = "portfolio_positions"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    strategy: Mapped[str] = mapped_column(String(16), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    shares: Mapped[float] = mapped_column(Float)  # raw shares held after the close
    mark: Mapped[float | None] = mapped_column(Float, nullable=True)  # raw close valued at
    factor: Mapped[float | None] = mapped_column(Float, nullable=True)  # close_adj / close
    value: Mapped[float] = mapped_column(Float)  # TWD
    weight: Mapped[float] = mapped_column(Float)  # value / the book's NAV
    target_weight: Mapped[float] = mapped_column(Float)  # of the book, decided at the last close
    next_target_weight: Mapped[float] = mapped_column(Float)  # decided after this close
    trade_shares: Mapped[float] = mapped_column(Float)  # + bought, − sold on this session
    trade_price: Mapped[float | None] = mapped_column(Float, nullable=True)  # raw VWAP
    commission: Mapped[float] = mapped_column(Float)  # TWD
    tax: Mapped[float] = mapped_column(Float)  # TWD
    slippage: Mapped[float] = mapped_column(Float)  # TWD
    dividend: Mapped[float] = mapped_column(Float)  # TWD credited on an ex-date (see backtest)
    blocked: Mapped[str | None] = mapped_column(String(16), nullable=True)  # why not filled
    param_version: Mapped[str | None] = mapped_column(String(64), nullable=True)


# --------------------------------------------------------------------------------------------
# attribution and performance (SPEC §8): written together by the ``attribution`` asset
# --------------------------------------------------------------------------------------------


class AttributionFactors(Base):
    """Per realization session, factor (f_c, f_s, f_d, r_pred) and horizon: what the factor of
    ``pred_session`` (= session − horizon) said about the return realized by ``session``
    (``domain.attribution``)."""

    __tablename__ = "attribution_factors"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    factor: Mapped[str] = mapped_column(String(16), primary_key=True)
    horizon: Mapped[int] = mapped_column(Integer, primary_key=True)
    pred_session: Mapped[dt.date] = mapped_column(Date)
    n: Mapped[int] = mapped_column(Integer)  # names in the cross-section
    ic: Mapped[float | None] = mapped_column(Float, nullable=True)
    rank_ic: Mapped[float | None] = mapped_column(Float, nullable=True)
    lag_rank_ic: Mapped[float | None] = mapped_column(Float, nullable=True)
    factor_return: Mapped[float | None] = mapped_column(Float, nullable=True)  # per unit z
    exposure: Mapped[float | None] = mapped_column(Float, nullable=True)  # Σ w·z (horizon 1)
    contribution: Mapped[float | None] = mapped_column(Float, nullable=True)  # of the book
    rolling_ic: Mapped[float | None] = mapped_column(Float, nullable=True)
    rolling_rank_ic: Mapped[float | None] = mapped_column(Float, nullable=True)
    rolling_lag_rank_ic: Mapped[float | None] = mapped_column(Float, nullable=True)
    param_version: Mapped[str | None] = mapped_column(String(160), nullable=True)


class AttributionDiagnosis(Base):
    """Per session and composite: which factor failed (residual vs factor-change correlation),
    the IC half-life and the factor-aging alert."""

    __tablename__ = "attribution_diagnosis"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    factor: Mapped[str] = mapped_column(String(16), primary_key=True)
    resid_corr: Mapped[float | None] = mapped_column(Float, nullable=True)
    decay_rate: Mapped[float | None] = mapped_column(Float, nullable=True)  # per session
    half_life: Mapped[float | None] = mapped_column(Float, nullable=True)  # sessions
    aging_alert: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    param_version: Mapped[str | None] = mapped_column(String(160), nullable=True)


class AttributionDaily(Base):
    """Per session and horizon: the cross-section's counts, regression intercept and R², the
    residual moments, the failed factor and the book's return split (horizon 1)."""

    __tablename__ = "attribution_daily"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    horizon: Mapped[int] = mapped_column(Integer, primary_key=True)
    pred_session: Mapped[dt.date] = mapped_column(Date)
    n_predicted: Mapped[int] = mapped_column(Integer)
    n_realized: Mapped[int] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(Integer)
    resid_mean: Mapped[float | None] = mapped_column(Float, nullable=True)
    resid_std: Mapped[float | None] = mapped_column(Float, nullable=True)
    intercept: Mapped[float | None] = mapped_column(Float, nullable=True)
    r2: Mapped[float | None] = mapped_column(Float, nullable=True)
    failed_factor: Mapped[str | None] = mapped_column(String(16), nullable=True)
    portfolio_return: Mapped[float | None] = mapped_column(Float, nullable=True)
    intercept_contribution: Mapped[float | None] = mapped_column(Float, nullable=True)
    specific_return: Mapped[float | None] = mapped_column(Float, nullable=True)
    weight_covered: Mapped[float | None] = mapped_column(Float, nullable=True)
    weight_uncovered: Mapped[float | None] = mapped_column(Float, nullable=True)
    param_version: Mapped[str | None] = mapped_column(String(160), nullable=True)


class AttributionResiduals(Base):
    """Per realization session and symbol: realized minus predicted return (horizon 1 in the
    warehouse: one row per symbol-day)."""

    __tablename__ = "attribution_residuals"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    horizon: Mapped[int] = mapped_column(Integer, primary_key=True)
    pred_session: Mapped[dt.date] = mapped_column(Date)
    r_actual: Mapped[float | None] = mapped_column(Float, nullable=True)
    r_pred: Mapped[float | None] = mapped_column(Float, nullable=True)
    residual: Mapped[float | None] = mapped_column(Float, nullable=True)
    param_version: Mapped[str | None] = mapped_column(String(160), nullable=True)


class StrategyPerformance(Base):
    """Per session, strategy and convention (``standard``: compounded, 252; ``qlib``: summed,
    238): the rolling Sharpe 7D / 30D, Sortino 30D and max drawdown 30D ending at the session
    (``domain.metrics``), with the market regime of the session."""

    __tablename__ = "strategy_performance"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    strategy: Mapped[str] = mapped_column(String(16), primary_key=True)
    convention: Mapped[str] = mapped_column(String(16), primary_key=True)
    sharpe_7d: Mapped[float | None] = mapped_column(Float, nullable=True)
    sharpe_30d: Mapped[float | None] = mapped_column(Float, nullable=True)
    sortino_30d: Mapped[float | None] = mapped_column(Float, nullable=True)
    mdd_30d: Mapped[float | None] = mapped_column(Float, nullable=True)  # fraction ≤ 0
    turnover_30d: Mapped[float | None] = mapped_column(Float, nullable=True)  # mean per session
    cost_drag_30d: Mapped[float | None] = mapped_column(Float, nullable=True)  # mean per session
    regime: Mapped[str | None] = mapped_column(String(8), nullable=True)
    param_version: Mapped[str | None] = mapped_column(String(64), nullable=True)


class MarketRegimes(Base):
    """The market regime per session (bull / chop / panic) and the readings it was read from
    (``domain.regime``)."""

    __tablename__ = "market_regimes"
    session: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    regime: Mapped[str | None] = mapped_column(String(8), nullable=True)
    regime_warmup: Mapped[bool] = mapped_column(Boolean)
    vix_level: Mapped[float | None] = mapped_column(Float, nullable=True)  # points
    vix_slope: Mapped[float | None] = mapped_column(Float, nullable=True)  # points / 5 sessions
    index_trend: Mapped[float | None] = mapped_column(Float, nullable=True)  # vs 20-day mean


#: The tables the ``attribution`` asset writes (one transaction).
ATTRIBUTION_TABLES: tuple[type[Base], ...] = (
    AttributionFactors,
    AttributionDiagnosis,
    AttributionDaily,
    AttributionResiduals,
    StrategyPerformance,
    MarketRegimes,
)


#: Factor and prediction tables, in the order the daily graph writes them.
DERIVED_TABLES: tuple[type[Base], ...] = (
    MainForceFlows,
    ChipFactors,
    SentimentFactors,
    ValueFactors,
    ZscoredFactors,
    Predictions,
    Signals,
    StrategyReturns,
    PortfolioPositions,
    *ATTRIBUTION_TABLES,
)

# Tables that a session partition owns, by asset-facing name.
RAW_PARTITIONED_TABLES: dict[str, type[Base | RowShapes]] = {
    "daily_prices": RawDailyPrices,
    "corporate_actions": RawCorporateActions,
    "institutional_flows": RawInstitutionalFlows,
    "broker_flows": RawBrokerFlows,
    "margin": RawMargin,
    "financials": RawFinancials,
    "market_indicators": RawMarketIndicators,
    "us_market": RawUsMarket,
    "news": RawNews,
}
RAW_TABLES: dict[str, type[Base | RowShapes]] = {
    "stock_info": RawStockInfo,
    **RAW_PARTITIONED_TABLES,
}

#: Row shape → the table that stores its rows packed per session (see ``RowShapes``).
PACKED_TABLES: dict[type[RowShapes], type[Base]] = {RawBrokerFlows: RawBrokerFlowsPacked}

#: Data columns of raw_margin (share counts).
MARGIN_COLUMNS: tuple[str, ...] = (
    "margin_balance",
    "short_balance",
    "margin_buy",
    "margin_sell",
    "short_sell",
    "short_cover",
)
#: Income-statement items of raw_financials: single-quarter flows, summed over four for TTM.
FINANCIAL_FLOW_ITEMS: tuple[str, ...] = (
    "revenue",
    "gross_profit",
    "operating_income",
    "pretax_income",
    "net_income",
    "interest_expense",
)
#: Balance-sheet items of raw_financials: period-end stocks.
FINANCIAL_STOCK_ITEMS: tuple[str, ...] = ("total_assets", "total_equity")

# The US proxy tickers the panel carries (columns us_<ticker>_ret above).
US_PROXIES: tuple[str, ...] = ("SMH", "SOXX", "QQQ", "TSM", "SPY")
