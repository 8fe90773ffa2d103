"""The backtest pictures and the HTML report."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from quant_genesis_dagster.domain import calendar, report
from quant_genesis_dagster.errors import QGError

PNG = b"\x89PNG\r\n\x1a\n"
DAYS = calendar.sessions(dt.date(2024, 1, 2), dt.date(2024, 6, 28))


def _returns() -> pl.DataFrame:
    rng = np.random.default_rng(1)
    r = 0.0005 + 0.01 * rng.standard_normal(len(DAYS))
    rows = []
    for name, scale in (("combined", 0.7), ("macro", 1.0)):
        rows.append(pl.DataFrame({"session": DAYS, "strategy": name, "net_return": r * scale,
                                  "gross_return": r * scale + 0.0003}))  # fmt: skip
    return pl.concat(rows)


def test_the_pictures_are_pngs_and_the_report_embeds_them(tmp_path):
    eq = report.equity_curve_png(_returns())
    factors = pl.DataFrame({
        "session": DAYS * 2, "factor": ["f_c"] * len(DAYS) + ["f_s"] * len(DAYS),
        "horizon": 1, "rolling_rank_ic": np.linspace(-0.05, 0.1, 2 * len(DAYS)),
    })  # fmt: skip
    ic = report.rolling_ic_png(factors)
    regimes = pl.DataFrame({"session": DAYS,
                            "regime": (["bull"] * 40 + ["chop"] * 40 + ["panic"] * 200)[: len(DAYS)]})  # fmt: skip
    tl = report.regime_timeline_png(regimes, pl.DataFrame({"session": DAYS,
                                                           "taiex_close": np.linspace(1.7e4, 2.2e4, len(DAYS))}))  # fmt: skip
    for png in (eq, ic, tl):
        assert png.startswith(PNG) and len(png) > 5_000
    md = report.markdown_image(eq, "equity")
    assert md.startswith("![equity](data:image/png;base64,")
    table = pl.DataFrame({"convention": ["standard", "qlib"], "sharpe": [1.23456, 1.2]})
    assert "| standard | 1.235 |" in report.frame_markdown(table)
    text = report.report_html("Backtest", {"Headline": table}, {"Equity": eq}, ["a note <b>"])
    path = report.write_report(tmp_path / "r" / "report.html", text)
    body = path.read_text()
    assert "<td>standard</td>" in body and "data:image/png;base64," in body
    assert "a note &lt;b&gt;" in body  # escaped
    assert not (tmp_path / "r" / "report.html.tmp").exists()


def test_a_missing_column_is_named():
    with pytest.raises(QGError, match="net_return"):
        report.equity_curve_png(pl.DataFrame({"session": DAYS, "strategy": "macro"}))
