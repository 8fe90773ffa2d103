"""Dagster resources: the warehouse, the data source, the factor, backtest and calibration
settings and the MLflow parameter store. Thin wrappers over domain code; the
environment is read at run time (never at import), secrets only through ``EnvVar``."""

from functools import lru_cache
from typing import Any

import dagster as dg
from sqlalchemy.engine import Engine

from quant_genesis_dagster.defs.common import as_failure
from quant_genesis_dagster.domain.calibration.agents import TrainSettings
from quant_genesis_dagster.domain.calibration.calibrate import CalibrationSettings
from quant_genesis_dagster.domain.calibration.env import EnvSettings
from quant_genesis_dagster.domain.calibration.governance import GateSettings
from quant_genesis_dagster.domain.calibration.reward import RewardSettings
from quant_genesis_dagster.domain.costs import CostModel
from quant_genesis_dagster.domain.params import FactorSettings
from quant_genesis_dagster.domain.portfolio import PortfolioSettings
from quant_genesis_dagster.domain.registry import ParamStore
from quant_genesis_dagster.domain.sources.base import DataSource, make_source
from quant_genesis_dagster.domain.warehouse.db import open_warehouse
from quant_genesis_dagster.errors import QGError
from quant_genesis_dagster.settings import Settings


def _has_password(url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        return bool(make_url(url).password)
    except Exception:  # malformed: open_warehouse reports it with the setting's name
        return False


@lru_cache(maxsize=4)
def _engine(url: str | None, home: str) -> Engine:
    from pathlib import Path

    return open_warehouse(url, Path(home))


@lru_cache(maxsize=2)
def _source(name: str, options: tuple[tuple[str, Any], ...]) -> DataSource:
    # Cached per process: the sample market simulates its latent world once and every raw
    # table of the run is cut from it.
    return make_source(name, dict(options))


class WarehouseResource(dg.ConfigurableResource):
    """The SQL warehouse. Empty ``url`` → ``QG_DATABASE_URL``, else SQLite under ``QG_HOME``."""

    url: str = ""
    home: str = ""

    def settings(self) -> Settings:
        if self.url and _has_password(self.url):
            # run config is stored and shown by Dagster; credentials belong in the environment
            raise QGError(
                "warehouse resource: `url` carries a password; set QG_DATABASE_URL in the "
                "environment instead and leave `url` empty"
            )
        env = Settings.from_env()
        return Settings(
            home=Settings.from_env({"QG_HOME": self.home}).home if self.home else env.home,
            database_url=self.url or env.database_url,
        )

    def engine(self) -> Engine:
        try:
            s = self.settings()
            return _engine(s.database_url, str(s.home))
        except QGError as err:
            raise as_failure(err) from err

    def location(self) -> str:
        """Where the data lives, password hidden."""
        return self.engine().url.render_as_string(hide_password=True)


class DataSourceResource(dg.ConfigurableResource):
    """Which source feeds the raw layer (SPEC §3). ``sample`` needs no network and no keys."""

    name: str = "sample"
    seed: int = 7
    n_symbols: int = 300
    faults: bool = True

    def source(self) -> DataSource:
        options: dict[str, Any] = {}
        if self.name == "sample":
            options = {"seed": self.seed, "n_symbols": self.n_symbols, "faults": self.faults}
        return _source(self.name, tuple(sorted(options.items())))


class FactorSettingsResource(dg.ConfigurableResource):
    """The shape of the factor computations (``domain.params.FactorSettings``): windows and the
    standardization method. Definition-level settings, not calibrated parameters; the asset
    lineage declares the default lookback."""

    lac_window: int = FactorSettings.lac_window
    flow_window: int = FactorSettings.flow_window
    zscore_method: str = FactorSettings.zscore_method
    industry_neutral: bool = FactorSettings.industry_neutral
    winsor_pct: float = FactorSettings.winsor_pct

    def settings(self) -> FactorSettings:
        try:
            return FactorSettings(
                lac_window=self.lac_window,
                flow_window=self.flow_window,
                zscore_method=self.zscore_method,
                industry_neutral=self.industry_neutral,
                winsor_pct=self.winsor_pct,
            )
        except QGError as err:
            raise as_failure(err) from err


class BacktestResource(dg.ConfigurableResource):
    """How the book is built and what trading costs (``domain.portfolio.PortfolioSettings`` and
    ``domain.costs.CostModel``): capital, ranking horizon, caps, lots, rebalancing, broker
    discount, slippage. Definition-level settings, not calibrated parameters (those are the
    ``ParamSet`` versions in MLflow)."""

    capital: float = PortfolioSettings.capital
    horizon: int = PortfolioSettings.horizon
    max_names: int = PortfolioSettings.max_names
    max_weight: float = PortfolioSettings.max_weight
    odd_lots: bool = PortfolioSettings.odd_lots
    min_trade_weight: float = PortfolioSettings.min_trade_weight
    rebalance_every: int = PortfolioSettings.rebalance_every
    financing_rate: float = PortfolioSettings.financing_rate
    commission_discount: float = CostModel.commission_discount
    min_commission: float = CostModel.min_commission
    slippage_bps: float = CostModel.slippage_bps
    impact_coef: float = CostModel.impact_coef
    max_participation: float = CostModel.max_participation

    def portfolio(self) -> PortfolioSettings:
        try:
            return PortfolioSettings(
                capital=self.capital,
                horizon=self.horizon,
                max_names=self.max_names,
                max_weight=self.max_weight,
                odd_lots=self.odd_lots,
                min_trade_weight=self.min_trade_weight,
                rebalance_every=self.rebalance_every,
                financing_rate=self.financing_rate,
            )
        except QGError as err:
            raise as_failure(err) from err

    def costs(self) -> CostModel:
        try:
            return CostModel(
                commission_discount=self.commission_discount,
                min_commission=self.min_commission,
                slippage_bps=self.slippage_bps,
                impact_coef=self.impact_coef,
                max_participation=self.max_participation,
            )
        except QGError as err:
            raise as_failure(err) from err


class CalibrationResource(dg.ConfigurableResource):
    """How a calibration runs (``domain.calibration``): the walk-forward and training windows,
    the agents' budget and seed, the reward mix, the approval gate's bounds, and the thresholds
    at which the recalibration sensor trips. The defaults fit ``benchmarks.calibration``."""

    eval_sessions: int = 60
    train_sessions: int = 250
    total_steps: int = TrainSettings.total_steps
    hierarchical: bool = True
    seed: int = 0
    period: int = EnvSettings.period
    lam: float = RewardSettings.lam
    fast_weight: float = RewardSettings.fast_weight
    slow_weight: float = RewardSettings.slow_weight
    beta_rel_change: float = GateSettings.beta_rel_change
    position_weight_max: float = GateSettings.position_weight_max
    leverage_max: float = GateSettings.leverage_max
    #: the sensor: recalibrate when Sharpe 30D (standard convention) falls below this, or below
    #: its average over the attribution history seen so far, or MDD 30D is deeper than this
    sharpe_30d_min: float = 0.0
    mdd_30d_max: float = 0.10

    def settings(self) -> CalibrationSettings:
        try:
            return CalibrationSettings(
                eval_sessions=self.eval_sessions,
                train_sessions=self.train_sessions,
                train=TrainSettings(
                    total_steps=self.total_steps, hierarchical=self.hierarchical, seed=self.seed
                ),  # fmt: skip
                env=EnvSettings(period=self.period),
                rewards=RewardSettings(
                    lam=self.lam, fast_weight=self.fast_weight, slow_weight=self.slow_weight
                ),  # fmt: skip
            )
        except QGError as err:
            raise as_failure(err) from err

    def gate(self) -> GateSettings:
        try:
            return GateSettings(
                beta_rel_change=self.beta_rel_change,
                position_weight_max=self.position_weight_max,
                leverage_max=self.leverage_max,
            )
        except QGError as err:
            raise as_failure(err) from err


@lru_cache(maxsize=4)
def _param_store(tracking_uri: str, artifacts: str) -> ParamStore:
    # a local store keeps artifacts under QG_HOME; a tracking server keeps its own root
    local = not tracking_uri.startswith(("http://", "https://", "databricks"))
    return ParamStore(tracking_uri, artifact_location=artifacts if local else None)


class ParamStoreResource(dg.ConfigurableResource):
    """The versioned parameter sets in MLflow. Empty ``tracking_uri`` → ``MLFLOW_TRACKING_URI``,
    else a SQLite tracking store under ``QG_HOME/mlflow``."""

    tracking_uri: str = ""
    home: str = ""

    def store(self) -> ParamStore:
        if self.tracking_uri and _has_password(self.tracking_uri):
            raise as_failure(
                QGError(
                    "param_store resource: `tracking_uri` carries a password; set "
                    "MLFLOW_TRACKING_URI (and MLFLOW_TRACKING_PASSWORD) in the environment instead"
                )
            )
        # an explicit home (tests, a second laptop store) means that home's embedded store
        s = Settings.from_env({"QG_HOME": self.home}) if self.home else Settings.from_env()
        return _param_store(self.tracking_uri or s.mlflow_tracking_uri, str(s.mlflow_artifacts))
