"""Pictures and the HTML report of a backtest (SPEC §8): the equity curve with its drawdown, the
rolling IC per factor, the regime timeline, and the headline table in both conventions.

Pure: frames in, PNG bytes / HTML text out (matplotlib's non-interactive Agg backend; no
display, no network). ``write_report`` is the one function that touches the file system.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from pathlib import Path

import numpy as np
import polars as pl

from quant_genesis_dagster.errors import QGError

#: Regime colours of the timeline (bull, chop, panic; unknown = warm-up).
REGIME_COLOURS = {"bull": "#2e7d32", "chop": "#f9a825", "panic": "#c62828"}
FACTOR_LABELS = {"f_c": "F_C chip", "f_s": "F_S sentiment", "f_d": "F_D value", "r_pred": "R_pred"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def _dates(s: pl.Series) -> np.ndarray:
    return s.cast(pl.Date).to_numpy().astype("datetime64[D]")


def equity_curve_png(returns: pl.DataFrame, strategies: tuple[str, ...] = ("combined", "macro")
                     ) -> bytes:  # fmt: skip
    """Compounded NAV (start = 1) per strategy and the drawdown of the first, from
    ``strategy_returns`` rows (session, strategy, net_return, gross_return)."""
    need = {"session", "strategy", "net_return", "gross_return"}
    if missing := need - set(returns.columns):
        raise QGError(f"equity curve: missing column(s) {', '.join(sorted(missing))}")
    plt = _pyplot()
    fig, (ax, dd_ax) = plt.subplots(2, 1, figsize=(9, 5.2), sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1.2]})  # fmt: skip
    first = None
    for name in strategies:
        r = returns.filter(pl.col("strategy") == name).sort("session")
        if r.is_empty():
            continue
        x = _dates(r["session"])
        nav = np.cumprod(1 + r["net_return"].fill_null(0.0).to_numpy())
        ax.plot(x, nav, label=f"{name} (net)")
        if name == strategies[0]:
            gross = np.cumprod(1 + r["gross_return"].fill_null(0.0).to_numpy())
            ax.plot(x, gross, linestyle="--", linewidth=0.9, label=f"{name} (before costs)")
            first = (x, nav)
    ax.axhline(1.0, color="grey", linewidth=0.6)
    ax.set_ylabel("NAV (start = 1)")
    ax.set_title("Equity curve")
    ax.legend(loc="upper left", fontsize=8)
    if first is not None:
        x, nav = first
        peak = np.maximum.accumulate(np.r_[1.0, nav])[1:]
        dd_ax.fill_between(x, nav / peak - 1, 0, color="#c62828", alpha=0.4, linewidth=0)
    dd_ax.set_ylabel("drawdown")
    dd_ax.yaxis.set_major_formatter(_pct())
    fig.autofmt_xdate()
    return _png(fig)


def _pct():
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(1.0, decimals=0)


def rolling_ic_png(factors: pl.DataFrame, horizon: int = 1, column: str = "rolling_rank_ic"
                   ) -> bytes:  # fmt: skip
    """The rolling rank IC per factor at one horizon, from attribution factor rows (session,
    factor, horizon, ``column``)."""
    need = {"session", "factor", "horizon", column}
    if missing := need - set(factors.columns):
        raise QGError(f"rolling IC: missing column(s) {', '.join(sorted(missing))}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    f = factors.filter(pl.col("horizon") == horizon)
    for name in sorted(f["factor"].unique().to_list()):
        r = f.filter(pl.col("factor") == name).sort("session")
        ax.plot(_dates(r["session"]), r[column].to_numpy().astype(float),
                label=FACTOR_LABELS.get(name, name))  # fmt: skip
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.set_title(f"Rolling rank IC ({horizon}-session horizon)")
    ax.legend(loc="upper left", fontsize=8, ncol=4)
    fig.autofmt_xdate()
    return _png(fig)


def regime_timeline_png(regimes: pl.DataFrame, index: pl.DataFrame | None = None) -> bytes:
    """The regime label per session as coloured bands (``regimes``: session, regime), over the
    TAIEX close when ``index`` (session, taiex_close) is given."""
    if missing := {"session", "regime"} - set(regimes.columns):
        raise QGError(f"regime timeline: missing column(s) {', '.join(sorted(missing))}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 2.8))
    r = regimes.sort("session")
    x = _dates(r["session"])
    labels = r["regime"].to_list()
    for name, colour in REGIME_COLOURS.items():
        on = np.array([lab == name for lab in labels])
        if on.any():
            ax.fill_between(x, 0, 1, where=on, color=colour, alpha=0.35, step="mid",
                            transform=ax.get_xaxis_transform(), label=name, linewidth=0)  # fmt: skip
    if index is not None and index.height:
        i = index.sort("session")
        ax.plot(_dates(i["session"]), i["taiex_close"].to_numpy().astype(float), color="black",
                linewidth=0.8, label="TAIEX")  # fmt: skip
        ax.set_ylabel("TAIEX")
    else:
        ax.set_yticks([])
    ax.set_title("Market regime")
    ax.legend(loc="upper left", fontsize=8, ncol=4)
    fig.autofmt_xdate()
    return _png(fig)


def candidates_equity_png(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> bytes:
    """Compounded NAV (start = 1) per candidate: name → (sessions as datetime64[D], daily net
    returns) — the walk-forward comparison of a calibration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for name, (days, r) in curves.items():
        nav = np.cumprod(1 + np.nan_to_num(np.asarray(r, dtype=float)))
        ax.plot(days, nav, label=name, linewidth=2.0 if name == "rl" else 1.1)
    ax.axhline(1.0, color="grey", linewidth=0.6)
    ax.set_ylabel("NAV (start = 1)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    return _png(fig)


def parameter_history_png(days: np.ndarray, history: dict[str, np.ndarray], title: str) -> bytes:
    """Step lines of parameters per calibration period (``days``: each period's first session;
    β's on the left axis, the others on the right, each as given)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.2))
    right = ax.twinx()
    for name, values in history.items():
        target = ax if name.startswith("beta") else right
        style = "-" if name.startswith("beta") else "--"
        target.step(days, values, where="post", linestyle=style, label=name)
    ax.set_ylabel("β (sum 1)")
    right.set_ylabel("leverage / position weight / W_Macro")
    ax.set_title(title)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    return _png(fig)


def markdown_image(png: bytes, alt: str) -> str:
    """A markdown image with the PNG inline (the Dagster UI renders it in asset metadata)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def frame_markdown(df: pl.DataFrame, digits: int = 4) -> str:
    """A small frame as a markdown table (floats rounded)."""
    cols = df.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.iter_rows():
        cells = [f"{v:.{digits}g}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _frame_html(df: pl.DataFrame, digits: int = 4) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    body = []
    for row in df.iter_rows():
        cells = [f"{v:.{digits}g}" if isinstance(v, float) else html.escape(str(v)) for v in row]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def report_html(title: str, tables: dict[str, pl.DataFrame], pictures: dict[str, bytes],
                notes: list[str] | None = None) -> str:  # fmt: skip
    """A self-contained HTML page: the tables, then the pictures (inline PNG)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1000px}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#f4f4f4}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Written {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}.</p>",
    ]
    for note in notes or []:
        parts.append(f"<p>{html.escape(note)}</p>")
    for name, df in tables.items():
        parts.append(f"<h2>{html.escape(name)}</h2>{_frame_html(df)}")
    for name, png in pictures.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' "
                     f"src='data:image/png;base64,{data}'>")  # fmt: skip
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: Path, text: str) -> Path:
    """Write the report atomically (a temporary file renamed over the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
