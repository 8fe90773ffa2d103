"""Configuration and fixed parameters of the sample market (SPEC §3.1).

``SampleMarketConfig`` is what a user chooses; the module constants are the generative model's
calibration (regime dynamics, true factor loadings, Taiwan industry names, broker-branch pools).
They live here so the tests and the report can quote the same numbers the generator uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant_genesis_dagster.errors import QGError

#: Regime labels, in state-index order of the Markov chain.
REGIMES: tuple[str, ...] = ("bull", "chop", "panic")
BULL, CHOP, PANIC = 0, 1, 2

#: Expected stays (sessions) 60 / 30 / 15; rows: from-state, columns: to-state.
TRANSITION = np.array(
    [
        [1 - 1 / 60, 0.75 / 60, 0.25 / 60],
        [0.6 / 30, 1 - 1 / 30, 0.4 / 30],
        [0.5 / 15, 0.5 / 15, 1 - 1 / 15],
    ]
)
#: Market (TW-only part) daily drift and volatility by regime: the panic is one-sided.
MARKET_DRIFT = np.array([0.0010, 0.0001, -0.0040])
MARKET_VOL = np.array([0.007, 0.013, 0.016])
#: Share of the overnight US common move that passes into the next TW session's market return.
US_TO_TW_BETA = 0.35
US_DRIFT = np.array([0.0012, 0.0002, -0.0035])
US_VOL = np.array([0.008, 0.013, 0.02])
#: Idiosyncratic daily volatility by regime (times a per-symbol multiplier in [0.7, 1.4]).
IDIO_VOL = np.array([0.018, 0.023, 0.030])

#: True loadings λ_k(regime): expected next-session return per unit (cross-sectional sd) of
#: exposure. chip works in the bull and fails in chop; sentiment (contrarian) dominates the panic;
#: value is steady. Sized for a daily cross-sectional IC of roughly 0.03–0.10.
LOADINGS = {
    "chip": np.array([0.0017, -0.0002, 0.0003]),
    "sentiment": np.array([0.0003, 0.0008, 0.0030]),
    "value": np.array([0.0009, 0.0009, 0.0009]),
}
FACTORS: tuple[str, ...] = ("chip", "sentiment", "value")
#: AR(1) persistence per session of the true exposures (stationary variance 1).
EXPOSURE_PHI = {"chip": 0.95, "sentiment": 0.90, "value": 0.998}

#: Industries (TWSE classification) keyed by the first two digits of the stock code.
INDUSTRY_BY_PREFIX: dict[str, str] = {
    "11": "水泥工業",
    "12": "食品工業",
    "13": "塑膠工業",
    "14": "紡織纖維",
    "15": "電機機械",
    "16": "電器電纜",
    "17": "化學工業",
    "20": "鋼鐵工業",
    "22": "汽車工業",
    "23": "半導體業",
    "24": "電子零組件業",
    "25": "建材營造業",
    "26": "航運業",
    "27": "觀光餐旅",
    "28": "金融保險業",
    "29": "貿易百貨業",
    "30": "電子零組件業",
    "31": "電機機械",
    "32": "電腦及週邊設備業",
    "33": "半導體業",
    "34": "光電業",
    "35": "半導體業",
    "36": "光電業",
    "37": "通信網路業",
    "41": "生技醫療業",
    "44": "紡織纖維",
    "47": "化學工業",
    "49": "通信網路業",
    "52": "資訊服務業",
    "53": "半導體業",
    "54": "電子通路業",
    "55": "建材營造業",
    "57": "觀光餐旅",
    "59": "貿易百貨業",
    "61": "電子零組件業",
    "62": "電腦及週邊設備業",
    "64": "半導體業",
    "65": "生技醫療業",
    "66": "其他電子業",
    "80": "電子零組件業",
    "81": "半導體業",
    "82": "電腦及週邊設備業",
    "84": "其他業",
    "89": "其他業",
    "99": "其他業",
}
#: Code ranges the universe draws from (real TWSE/TPEx code blocks, each of 100 codes).
CODE_PREFIXES: tuple[str, ...] = tuple(sorted(INDUSTRY_BY_PREFIX))
#: Industries whose balance sheets are levered like banks and insurers.
FINANCIAL_INDUSTRIES = frozenset({"金融保險業"})

#: Broker-branch ids (分點代號). The noise pool has a prime size so that an affine walk
#: (offset + stride·j mod p) picks distinct branches per symbol-day without sorting.
NOISE_BRANCH_POOL = 83
MAIN_FORCE_BRANCHES: tuple[str, ...] = (
    "9268",
    "1160",
    "9A00",
    "5920",
    "8440",
    "9800",
    "1380",
    "6160",
    "9200",
    "1520",
    "585c",
    "779Z",
)
INSTITUTIONS: tuple[str, ...] = (
    "Foreign_Investor",
    "Foreign_Dealer_Self",
    "Investment_Trust",
    "Dealer_self",
    "Dealer_Hedging",
)
#: Every row-level fault kind is planted at least once in each block of this many sessions, so
#: any window of twice as many sessions holds a whole block.
FAULT_BLOCK_SESSIONS = 30
#: One dropped daily_prices session per this many sessions (a fixed period, so that any window
#: of this many sessions holds exactly one).
MISSING_SESSION_PERIOD = 60


@dataclass(frozen=True)
class SampleMarketConfig:
    """What to generate.

    * ``seed`` — every random draw derives from it; same config → identical bytes.
    * ``n_symbols`` — securities in ``stock_info`` over the whole history, including the ~20%
      that list during it (IPOs) and the ~8% that delist.
    * ``faults`` — plant the vendor faults of the cleaning contract (``truth().faults``).
    * ``fault_rate`` — per-row probability of each row-level fault kind, on top of the
      guaranteed one per kind in every block of ``FAULT_BLOCK_SESSIONS`` sessions.
    * ``signal_strength`` — multiplies the true loadings (0 gives a market without alpha).
    """

    seed: int = 7
    n_symbols: int = 300
    faults: bool = True
    fault_rate: float = 0.0005
    signal_strength: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise QGError(f"sample market seed={self.seed} must be an integer in [0, 2**63)")
        max_symbols = 4000
        if not isinstance(self.n_symbols, int) or not 10 <= self.n_symbols <= max_symbols:
            raise QGError(
                f"sample market n_symbols={self.n_symbols} must be between 10 and {max_symbols}"
            )
        if not 0.0 <= self.fault_rate <= 0.01:
            raise QGError(f"sample market fault_rate={self.fault_rate} must be in [0, 0.01]")
        if not 0.0 <= self.signal_strength <= 10.0:
            raise QGError(
                f"sample market signal_strength={self.signal_strength} must be in [0, 10]"
            )
