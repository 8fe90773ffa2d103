"""The embedded sample market: a seeded, vectorized synthetic Taiwan market (SPEC §3.1).

```python
from quant_genesis_dagster.domain.sample import SampleMarket, SampleMarketConfig
m = SampleMarket(SampleMarketConfig(seed=7, n_symbols=300, faults=True))
m.stock_info()                      # RAW_SCHEMAS["stock_info"]
m.tables(start, end)                # {name: frame} for every raw partitioned table
m.iter_tables(start, end, 250)      # the same rows in session blocks
m.ticks(session, symbols=None)      # one session's intraday ticks
m.truth(start, end)                 # GroundTruth: regimes, loadings, exposures, returns, faults
```

Modules: ``config`` (settings and calibration), ``universe`` (security master), ``latent`` (the
world simulated over the whole calendar), ``faults`` (planted vendor faults), ``observables``
and ``fundamentals`` and ``news`` (raw tables), ``ticks``, ``market`` (the public class).
"""

from quant_genesis_dagster.domain.sample.config import SampleMarketConfig
from quant_genesis_dagster.domain.sample.market import GroundTruth, SampleMarket

__all__ = ["GroundTruth", "SampleMarket", "SampleMarketConfig"]
