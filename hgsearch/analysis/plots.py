"""The report's figures, drawn with plotly (one function per figure, each returns a Figure).

Plotly because the report must be explored, not only looked at: every point names its trial on
hover, overlapping trials are merged into one larger marker that lists them all, axes zoom, the
parallel coordinates can be brushed, and plotly.js inlined once makes the page work offline. The
price is the ~4.8 MB of plotly.js in every report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

FRONT, BASE, PICK, OTHER, BAD = "#1f77b4", "#000000", "#d62728", "#9a9a9a", "#ff7f0e"
CONTROL = "#2ca02c"
PHASE_DASH = {"train": "solid", "finetune": "dot"}
LAYOUT = dict(template="plotly_white", height=420, width=560, hovermode="closest",
              margin=dict(l=70, r=20, t=50, b=60), legend=dict(orientation="h", y=-0.2))


def numeric(rows: pd.DataFrame, key: str) -> np.ndarray:
    if key not in rows.columns:
        return np.full(len(rows), np.nan)
    return pd.to_numeric(rows[key], errors="coerce").to_numpy(dtype=float)


def label(row: pd.Series, keys: Sequence[str] = ()) -> str:
    """Hover text of one trial: its id, figures and the given keys."""
    parts = [f"<b>{row.get('trial_id', row.name)}</b>"]
    for key, fmt in (("acc_final", "val {:.2%}"), ("test_acc_final", "test {:.2%}"),
                     ("params_ratio", "params {:.3f}"), ("macs_ratio", "MACs {:.3f}"),
                     ("latency_final_b1_ms", "latency {:.3g} ms")):
        v = pd.to_numeric(pd.Series([row.get(key)]), errors="coerce").iloc[0]
        if pd.notna(v):
            parts.append(fmt.format(float(v)))
    for key in keys:
        v = row.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)) and v is not pd.NA:
            parts.append(f"{key} {v:.3g}" if isinstance(v, float) else f"{key} {v}")
    return "<br>".join(parts)


def _merged(xs: np.ndarray, ys: np.ndarray, texts: list[str]) -> tuple[list, list, list, list]:
    """Trials at the same point become one marker listing all of them, sized by their count."""
    groups: dict[tuple[float, float], list[str]] = {}
    for x, y, t in zip(xs, ys, texts):
        groups.setdefault((round(float(x), 9), round(float(y), 9)), []).append(t)
    gx, gy, gt, size = [], [], [], []
    for (x, y), items in groups.items():
        gx.append(x)
        gy.append(y)
        head = f"{len(items)} trials here<br>" if len(items) > 1 else ""
        gt.append(head + "<br>".join(items))
        size.append(9 + 4 * math.sqrt(len(items) - 1))
    return gx, gy, gt, size


def tradeoff(rows: pd.DataFrame, marks: dict[str, np.ndarray], x_key: str, x_label: str,
             keys: Sequence[str], step: bool, controls: pd.DataFrame | None = None) -> go.Figure:
    """Validation accuracy against ``x_key``: trials, the front (a staircase when it is the
    front of exactly these two objectives), the baseline, the selected model and the
    ``controls`` (``analysis.controls.controls_on_axes``, with their standard errors)."""
    acc, xs = numeric(rows, "acc_final") * 100.0, numeric(rows, x_key)
    shown = np.isfinite(acc) & np.isfinite(xs)
    texts = [label(r, keys) for _, r in rows.iterrows()]
    fig = go.Figure()
    if step and (marks["front"] & shown).any():
        m = marks["front"] & shown
        order = np.argsort(xs[m])
        fig.add_trace(go.Scatter(x=xs[m][order], y=acc[m][order], mode="lines",
                                 line=dict(color=FRONT, shape="hv", width=1), hoverinfo="skip",
                                 showlegend=False))
    layers = (("other", "trial", dict(color=OTHER, symbol="circle")),
              ("front", "Pareto front", dict(color=FRONT, symbol="circle")),
              ("baseline", "baseline", dict(color=BASE, symbol="diamond")),
              # an open symbol is drawn in marker.color: a red ring around the trial's marker
              ("selected", "selected", dict(color=PICK, symbol="circle-open",
                                            line=dict(width=3))))
    for key, name, style in layers:
        m = marks[key] & shown
        if not m.any():
            continue
        gx, gy, gt, size = _merged(xs[m], acc[m], [t for t, k in zip(texts, m) if k])
        if key == "selected":
            size = [s + 8 for s in size]
        fig.add_trace(go.Scatter(x=gx, y=gy, mode="markers", name=name, hovertext=gt,
                                 hoverinfo="text", marker=dict(size=size, opacity=0.8,
                                                               **style)))
    for kind, symbol in (("scratch", "x"), ("uniform", "triangle-up")):
        mine = controls[controls["control"] == kind] if controls is not None else None
        if mine is None or mine.empty:
            continue
        fig.add_trace(go.Scatter(
            x=mine[x_key], y=mine["acc_final"] * 100.0, mode="markers",
            name=f"control: {kind}", marker=dict(size=10, color=CONTROL, symbol=symbol),
            error_y=dict(type="data", array=mine["acc_se"] * 100.0, visible=True),
            hovertext=[f"<b>{r.trial_id}</b><br>{kind} control of {r.control_of}<br>val "
                       f"{r.acc_final:.2%} +- {100 * r.acc_se:.2f}" for r in mine.itertuples()],
            hoverinfo="text"))
    fig.update_layout(title=f"validation accuracy vs {x_key}", xaxis_title=x_label,
                      yaxis_title="validation accuracy (%)", **LAYOUT)
    return fig


def history(values: pd.Series, ids: Sequence[str]) -> go.Figure:
    """Hypervolume after each finished trial (``ids``: the trials in that order)."""
    steps = np.arange(1, len(values) + 1)
    fig = go.Figure(go.Scatter(x=steps, y=values.to_numpy(), mode="lines+markers",
                               line=dict(color=FRONT, shape="hv"),
                               hovertext=[f"after trial {i} ({tid}): {v:.4g}" for i, tid, v in
                                          zip(steps, ids, values)],
                               hoverinfo="text"))
    fig.update_layout(title="hypervolume over trials", xaxis_title="trials finished",
                      yaxis_title="hypervolume", yaxis=dict(rangemode="tozero", nticks=8,
                                                            tickformat=".3g"), **LAYOUT)
    return fig


def curves(frame: pd.DataFrame, colors: dict[str, str]) -> go.Figure:
    """Per-epoch validation accuracy of the given trials; fine-tuning continues the epochs."""
    fig = go.Figure()
    last = 0
    for trial_id, color in colors.items():
        mine = frame[frame["trial_id"] == trial_id]
        offset, joint = 0, None
        for phase in ("train", "finetune"):
            part = mine[mine["phase"] == phase].sort_values("epoch")
            if part.empty:
                continue
            epochs = part["epoch"].to_numpy(dtype=float) + offset
            acc = pd.to_numeric(part["val_acc"], errors="coerce").to_numpy(dtype=float) * 100
            texts = [f"{trial_id} {phase} epoch {int(e - offset)}: {a:.2f}%"
                     for e, a in zip(epochs, acc)]
            if joint is not None:   # fine-tuning's line starts where training's ended
                epochs, acc = np.r_[joint[0], epochs], np.r_[joint[1], acc]
                texts = [joint[2], *texts]
            fig.add_trace(go.Scatter(
                x=epochs, y=acc, mode="lines+markers", name=f"{trial_id} {phase}",
                legendgroup=trial_id, line=dict(color=color, dash=PHASE_DASH[phase]),
                hovertext=texts, hoverinfo="text"))
            joint = (epochs[-1], acc[-1], texts[-1])
            offset = int(np.nanmax(epochs))
            last = max(last, offset)
    fig.update_layout(title="per-epoch validation accuracy of the front's trials",
                      xaxis_title="epoch (HGSR training, then fine-tuning: dotted)",
                      xaxis=dict(dtick=1) if last <= 20 else {},   # whole epochs
                      yaxis_title="validation accuracy (%)", **{**LAYOUT, "width": 1140})
    return fig


def parallel(rows: pd.DataFrame, keys: Sequence[str], color_key: str) -> go.Figure:
    """Parallel coordinates of the searched keys, lines coloured by ``color_key``.

    Numeric keys are axes of their values (``lam`` as log10); text and yes/no keys are
    categories. A key that does not apply to a trial (null) sits at "n/a", below the values.
    """
    dims = []
    for key in keys:
        col = rows[key]
        values = pd.to_numeric(col, errors="coerce") if not pd.api.types.is_bool_dtype(col) \
            else pd.Series(np.nan, index=col.index)
        if values.notna().sum() == 0 or values.notna().sum() < col.notna().sum():
            text = col.astype(object).where(col.notna(), "n/a").astype(str)
            cats = sorted(set(text) - {"n/a"}) + (["n/a"] if "n/a" in set(text) else [])
            dims.append(dict(label=key, values=[cats.index(t) for t in text],
                             tickvals=list(range(len(cats))), ticktext=cats))
            continue
        name = key
        if key == "lam" and (values > 0).all():
            values, name = np.log10(values.astype(float)), "log10 lam"
        v = values.to_numpy(dtype=float)
        lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
        ticks = list(np.linspace(lo, hi, 5)) if hi > lo else [lo]
        labels = [f"{t:.3g}" for t in ticks]
        if np.isnan(v).any():
            na = lo - 0.15 * ((hi - lo) or 1.0)
            v = np.where(np.isnan(v), na, v)
            ticks, labels = ticks + [na], labels + ["n/a"]
        dims.append(dict(label=name, values=v, tickvals=ticks, ticktext=labels))
    color = numeric(rows, color_key) * (100.0 if color_key.startswith(("acc", "test_acc")) else 1)
    fig = go.Figure(go.Parcoords(dimensions=dims, line=dict(
        color=color, colorscale="Viridis", showscale=True, colorbar=dict(title=color_key))))
    fig.update_layout(title=f"searched keys, coloured by {color_key}",
                      **{**LAYOUT, "width": 1140, "margin": dict(l=60, r=60, t=80, b=40)})
    return fig


def importance(scores: dict[str, dict[str, float]]) -> go.Figure:
    """Horizontal bars: each key's importance for each objective."""
    fig = go.Figure()
    for objective, values in scores.items():
        keys = list(values)
        fig.add_trace(go.Bar(y=keys, x=[values[k] for k in keys], name=objective,
                             orientation="h", hovertext=[f"{k}: {values[k]:.3f} for {objective}"
                                                         for k in keys], hoverinfo="text"))
    fig.update_layout(title="parameter importance per objective", barmode="group",
                      xaxis_title="importance (share, sums to 1 per objective)", **LAYOUT)
    return fig


def val_test(rows: pd.DataFrame, keys: Sequence[str]) -> go.Figure:
    """Test against validation accuracy, with the line test = validation."""
    val, test = numeric(rows, "acc_final") * 100, numeric(rows, "test_acc_final") * 100
    m = np.isfinite(val) & np.isfinite(test)
    texts = [label(r, keys) for (_, r), k in zip(rows.iterrows(), m) if k]
    gx, gy, gt, size = _merged(val[m], test[m], texts)
    lo, hi = float(np.min([val[m].min(), test[m].min()])), float(np.max([val[m].max(),
                                                                        test[m].max()]))
    fig = go.Figure([go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="test = validation",
                                line=dict(color=OTHER, dash="dash"), hoverinfo="skip"),
                     go.Scatter(x=gx, y=gy, mode="markers", name="trial", hovertext=gt,
                                hoverinfo="text", marker=dict(size=size, color=FRONT,
                                                              opacity=0.8))])
    fig.update_layout(title="test vs validation accuracy", xaxis_title="validation accuracy (%)",
                      yaxis_title="test accuracy (%)", **LAYOUT)
    return fig


def latency(rows: pd.DataFrame, marks: dict[str, np.ndarray], key: str,
            keys: Sequence[str]) -> go.Figure:
    """Validation accuracy against measured latency of the compact network."""
    fig = tradeoff(rows, marks, key, f"{key} (ms, median forward on the trial's device)", keys,
                   step=False)
    fig.update_layout(title=f"validation accuracy vs latency ({key})")
    return fig


def channels(trial_id: str, kept: list[float], dense: list[float] | None) -> go.Figure:
    """Kept inner channels per block of the selected model against the dense widths."""
    blocks = [str(i) for i in range(len(kept))]
    fig = go.Figure()
    if dense is not None and len(dense) == len(kept):
        fig.add_trace(go.Bar(x=blocks, y=dense, name="dense", marker_color=OTHER))
    fig.add_trace(go.Bar(x=blocks, y=kept, name=f"kept ({trial_id})", marker_color=FRONT))
    fig.update_layout(title=f"inner channels per residual block: {trial_id}", barmode="overlay",
                      xaxis_title="residual block", yaxis_title="channels", **LAYOUT)
    return fig


def recovery(rows: pd.DataFrame) -> go.Figure:
    """Per trial, validation accuracy after HGSR training (dense), right after pruning and after
    fine-tuning, joined by a line: how much pruning cost and fine-tuning recovered."""
    order = rows.assign(_final=numeric(rows, "acc_final")).sort_values(
        "_final", ascending=False, kind="stable")
    ids = [str(t) for t in order["trial_id"]]
    fig = go.Figure()
    for key, name, color, symbol in (("acc_dense", "dense (after HGSR)", OTHER, "square"),
                                     ("acc_pruned", "right after pruning", BAD, "x"),
                                     ("acc_final", "after fine-tuning", FRONT, "circle")):
        values = numeric(order, key) * 100.0
        fig.add_trace(go.Scatter(x=ids, y=values, mode="markers", name=name,
                                 marker=dict(color=color, symbol=symbol, size=9),
                                 hovertext=[f"{t}: {name} {v:.2f}%" for t, v in zip(ids, values)],
                                 hoverinfo="text"))
    lx: list = []
    ly: list = []
    accs = np.stack([numeric(order, k) * 100.0 for k in ("acc_dense", "acc_pruned",
                                                          "acc_final")], axis=1)
    for t, ys in zip(ids, accs):     # one thin line per trial through its three, None between
        lx += [t, t, t, None]
        ly += [*(float(v) if np.isfinite(v) else None for v in ys), None]
    fig.add_trace(go.Scatter(x=lx, y=ly, mode="lines", line=dict(color="#cccccc", width=1),
                             hoverinfo="skip", showlegend=False, connectgaps=False))
    fig.update_layout(title="accuracy before pruning, after pruning, after fine-tuning",
                      xaxis_title="trial (by final validation accuracy)",
                      yaxis_title="validation accuracy (%)",
                      **{**LAYOUT, "width": 1140})
    return fig


def latency_pair(rows: pd.DataFrame, tag: str) -> go.Figure:
    """Per trial, the dense and the compact network's median latency (timed interleaved), each
    with a bar one interquartile range long centred on the median."""
    ids = [str(t) for t in rows["trial_id"]]
    flag = rows.get(f"latency_{tag}_significant")
    fig = go.Figure()
    for name, label_, color in (("dense", "dense", OTHER), ("final", "compact", FRONT)):
        median = numeric(rows, f"latency_{name}_{tag}_ms")
        half = numeric(rows, f"latency_{name}_{tag}_iqr_ms") / 2
        texts = []
        for i, (t, m, h) in enumerate(zip(ids, median, half)):
            clear = None if flag is None or pd.isna(flag.iloc[i]) else bool(flag.iloc[i])
            verdict = {True: "difference beyond the spread", False: "difference within the "
                       "spread: not shown to differ", None: "spread not measured"}[clear]
            texts.append(f"{t} {label_}: {m:.3g} ms, IQR {2 * h:.2g} ms; {verdict}")
        fig.add_trace(go.Scatter(x=ids, y=median, mode="markers", name=label_,
                                 marker=dict(color=color, size=9),
                                 error_y=dict(type="data", array=np.nan_to_num(half),
                                              visible=True, color=color),
                                 hovertext=texts, hoverinfo="text"))
    fig.update_layout(title=f"latency, dense and compact timed together ({tag})",
                      xaxis_title="trial", yaxis_title="ms per forward (median; bar: IQR)",
                      **{**LAYOUT, "width": 1140})
    return fig
