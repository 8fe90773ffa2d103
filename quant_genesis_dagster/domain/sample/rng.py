"""Keyed random streams of the sample market.

Every generator is an SFC64 seeded by a SeedSequence of ``(seed, stream, kind, index)``, so
streams are independent and fast. World-level draws (the latent simulation over the whole
calendar) use one generator per stream (``kind`` 0); row-level draws for an observable table use
one generator per ``(stream, session index)`` (``kind`` 1), so a session's rows never depend on
which range was requested.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    UNIVERSE = 1
    REGIME = 2
    US = 3
    MARKET = 4
    EXPOSURES = 5
    RETURNS = 6
    BARS = 7
    SUSPENSIONS = 8
    DIVIDENDS = 9
    FAULTS = 10
    MARGIN = 11
    INDICATORS = 12
    FINANCIALS = 13
    INSTITUTIONS = 20
    BROKERS = 21
    MARGIN_ROWS = 22
    NEWS = 23
    TICKS = 24


def world_rng(seed: int, stream: Stream, sub: int = 0) -> np.random.Generator:
    """The generator of a world-level stream (``sub`` distinguishes draws within a stream)."""
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence([seed, stream, 0, sub])))


def session_rng(seed: int, stream: Stream, session_idx: int) -> np.random.Generator:
    """The generator of one session's row-level draws of ``stream``."""
    return np.random.Generator(
        np.random.SFC64(np.random.SeedSequence([seed, stream, 1, int(session_idx)]))
    )
