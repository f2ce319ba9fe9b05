"""RESULTS/report/index.html: one self-contained page on a sweep's outcome.

Inline SVG only (no script, no stylesheet or image from elsewhere), so the file opens from disk.
It shows accuracy against parameter and MAC ratios with the front, the baseline and the selected
model marked, the hypervolume after each finished trial, the selected model's kept channels per
block against the dense widths, and the front as a table. The selected model is the one of
RESULTS/selected/model_card.json when that exists, else the knee rule's choice.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from hgsearch.analysis import svg
from hgsearch.analysis.export import SELECTED
from hgsearch.analysis.front import (
    ObjectivesLike,
    default_reference,
    format_table,
    front_table,
    goodness,
    hypervolume_history,
    nondominated_mask,
    parse_objectives,
    usable,
)
from hgsearch.analysis.select import Selection, select
from hgsearch.errors import UserError

ACC_LABEL = "validation accuracy (%)"
AXES = (("params_ratio", "parameters (fraction of the dense network)"),
        ("macs_ratio", "MACs (multiply-accumulates, fraction of the dense network)"))
STYLE = """body{font-family:sans-serif;max-width:1180px;margin:1em auto;padding:0 1em;color:#222}
figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}
figcaption{font-size:.85em;color:#555;max-width:560px}
table{border-collapse:collapse;font-size:.85em}td,th{padding:2px 8px;text-align:right}
tr:nth-child(even){background:#f4f4f4}th{border-bottom:1px solid #444}
.note{color:#555;font-size:.9em}"""
FRONT, BASE, PICK, OTHER = "#1f77b4", "#000000", "#d62728", "#bbbbbb"


def report_selection(results_dir: str | Path, df: pd.DataFrame,
                     objectives: ObjectivesLike = None) -> tuple[Selection | None, str]:
    """The model the report marks: the exported selection, else the knee; plus a note why."""
    card_path = Path(results_dir) / SELECTED / "model_card.json"
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text())
            trial_id = str(card["trial_id"])
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{card_path}: not a model card written by `hgsearch select`; "
                            "delete it or run `hgsearch select` again") from None
        ids = df["trial_id"].astype(str) if "trial_id" in df.columns else pd.Series(dtype=str)
        hits = df[ids.eq(trial_id).to_numpy()]
        if len(hits):
            sel = Selection(trial_id, hits.iloc[0], str(card.get("rule", "")),
                            str(card.get("reason", "")), dict(card.get("settings") or {}))
            return sel, f"exported by hgsearch select to {SELECTED}/model_card.json"
        note = f"{SELECTED}/model_card.json names {trial_id}, which is not in the results; "
    else:
        note = ""
    try:
        return select(df, rule="knee", objectives=objectives), note + "chosen by the knee rule"
    except UserError as err:
        return None, note + f"no model selected: {err}"


def _lists(row: pd.Series, key: str) -> list[float] | None:
    value = row.get(key)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, (list, tuple, np.ndarray)) and len(value):
        return [float(v) for v in value]
    return None


def _tooltip(row: pd.Series) -> str:
    parts = [str(row.get("trial_id", row.name))]
    for key, fmt in (("acc_final", "acc {:.2%}"), ("test_acc_final", "test {:.2%}"),
                     ("params_ratio", "params {:.3f}"), ("macs_ratio", "MACs {:.3f}"),
                     ("lam", "lam {:.3g}")):
        v = pd.to_numeric(pd.Series([row.get(key)]), errors="coerce").iloc[0]
        if pd.notna(v):
            parts.append(fmt.format(float(v)))
    if "reg" in row.index:
        parts.append(f"reg {row['reg']}")
    return ", ".join(parts)


def _numeric(rows: pd.DataFrame, key: str) -> np.ndarray:
    if key not in rows.columns:
        return np.full(len(rows), np.nan)
    return pd.to_numeric(rows[key], errors="coerce").to_numpy(dtype=float)


def _scatter(rows: pd.DataFrame, marks: dict[str, np.ndarray], objs: list[tuple[str, str]],
             x_key: str, x_label: str) -> str:
    acc, xs = _numeric(rows, "acc_final") * 100.0, _numeric(rows, x_key)
    shown = np.isfinite(acc) & np.isfinite(xs)
    x_lo, x_hi = svg.padded(xs[shown], include=(0.0, 1.0), pad=0.03)
    chart = svg.Chart(f"validation accuracy vs {x_key}", x_label, ACC_LABEL,
                      (x_lo, x_hi), svg.padded(acc[shown]))
    tips = [_tooltip(r) for _, r in rows.iterrows()]
    layers = (("other", OTHER, "circle", True, "trial"),
              ("front", FRONT, "circle", True, "Pareto front"),
              ("baseline", BASE, "diamond", True, "baseline"),
              ("selected", PICK, "ring", False, "selected"))
    for key, color, shape, fill, label in layers:
        m = marks[key] & shown
        if key == "front" and [n for n, _ in objs] == ["acc_final", x_key]:
            order = np.argsort(xs[m])
            chart.step_line(xs[m][order], acc[m][order], color=FRONT, label="")
        chart.points(xs[m], acc[m], titles=[t for t, k in zip(tips, m) if k], shape=shape,
                     color=color, fill=fill, label=label if m.any() else "")
    return chart.render()


def _history(df: pd.DataFrame, objs: list[tuple[str, str]]) -> tuple[str, str]:
    order_by = "finished_at" if "finished_at" in df.columns else None
    history = hypervolume_history(df, objs, order_by=order_by)
    ref = default_reference(df, objs)
    steps = np.arange(1, len(history) + 1, dtype=float)
    x_label = "trials finished, in finished_at order" if order_by else "trials, in row order"
    chart = svg.Chart("hypervolume over trials", x_label,
                      "hypervolume (product of objective units)",
                      svg.padded(steps, include=(0.0,), pad=0.02),
                      svg.padded(history.to_numpy(), include=(0.0,)))
    chart.step_line(steps, history.to_numpy(), color=FRONT)
    chart.points(steps, history.to_numpy(), titles=[f"after trial {i:.0f}: {h:.4g}" for i, h in
                                                     zip(steps, history)], color=FRONT, size=2)
    ref_text = ", ".join(f"{n} {d} {r:g}" for (n, d), r in zip(objs, ref))
    caption = (f"Volume of objective space dominated by the trials finished so far, bounded by "
               f"the reference point ({ref_text}); failed trials, and trials no better than "
               f"the reference in some objective (such as a baseline at ratio 1), leave it "
               f"unchanged. "
               f"Final value {history.iloc[-1]:.4g}.")
    return chart.render(), caption


def _channels(selection: Selection) -> tuple[str, str]:
    kept, dense = _lists(selection.row, "kept_channels"), _lists(selection.row, "widths_dense")
    if kept is None:
        return "", f"The row of {selection.trial_id} records no kept_channels."
    groups = [str(i) for i in range(len(kept))]
    series = [("kept", FRONT, kept)]
    if dense is not None and len(dense) == len(kept):
        series.insert(0, ("dense", OTHER, dense))
    top = max(max(s[2]) for s in series)
    chart = svg.Chart(f"kept channels per block: {selection.trial_id}", "residual block (index)",
                      "channels (inner width of the block)", (0.0, 1.0), (0.0, top * 1.08))
    chart.bars(groups, series)
    total = f"{sum(kept):.0f}" + (f" of {sum(dense):.0f}" if len(series) == 2 else "")
    return chart.render(x_ticks=False), f"Inner channels kept per residual block: {total}."


def _selected_html(selection: Selection | None, note: str, results_dir: Path) -> str:
    if selection is None:
        return f'<p class="note">{escape(note)}</p>'
    row = selection.row
    facts = []
    for key, text in (("acc_final", "validation accuracy {:.2%}"),
                      ("test_acc_final", "test accuracy {:.2%}"),
                      ("params_ratio", "parameters {:.3f} of dense"),
                      ("macs_ratio", "MACs {:.3f} of dense")):
        v = pd.to_numeric(pd.Series([row.get(key)]), errors="coerce").iloc[0]
        if pd.notna(v):
            facts.append(text.format(float(v)))
    html = [f"<p><b>{escape(selection.trial_id)}</b> ({escape(note)}; rule "
            f"{escape(selection.rule)}): {escape(', '.join(facts))}.</p>",
            f"<p>{escape(selection.reason)}</p>"]
    folder = results_dir / SELECTED
    files = [f for f in ("model_card.json", "arch.json", "model.pt", "model.onnx")
             if (folder / f).is_file()]
    if files and note.startswith("exported"):
        links = ", ".join(f'<a href="../{SELECTED}/{f}">{f}</a>' for f in files)
        html.append(f"<p>Exported files: {links}.</p>")
    return "\n".join(html)


def render_report(df: pd.DataFrame, *, objectives: ObjectivesLike = None,
                  selection: Selection | None = None, note: str = "",
                  results_dir: str | Path = ".") -> str:
    """The whole page as one HTML string."""
    objs = parse_objectives(objectives)
    results_dir = Path(results_dir)
    rows = usable(df, objs).reset_index(drop=True)
    on_front = nondominated_mask(goodness(rows, objs))
    baseline = rows["is_baseline"].eq(True).fillna(False).to_numpy(dtype=bool) \
        if "is_baseline" in rows.columns else np.zeros(len(rows), dtype=bool)
    picked = np.zeros(len(rows), dtype=bool)
    if selection is not None and "trial_id" in rows.columns:
        picked = rows["trial_id"].astype(str).eq(selection.trial_id).to_numpy(dtype=bool)
    marks = {"other": ~on_front, "front": on_front, "baseline": baseline, "selected": picked}
    excluded = rows.attrs.get("excluded", {})
    left = ", ".join(f"{v} {k}" for k, v in excluded.items()) or "none"
    names = ", ".join(f"{n} ({d})" for n, d in objs)
    sweeps = sorted({str(s) for s in df["sweep"].dropna()}) if "sweep" in df.columns else []

    figures = [_figure(_scatter(rows, marks, objs, key, label),
                       f"Each dot is a usable trial (hover for its keys); the Pareto front is "
                       f"that of the objectives {names}. Accuracy on the validation split; "
                       f"{label}.") for key, label in AXES if key in rows.columns]
    hv_svg, hv_caption = _history(df, objs)
    figures.append(_figure(hv_svg, hv_caption))
    if selection is not None:
        ch_svg, ch_caption = _channels(selection)
        figures.append(_figure(ch_svg, ch_caption) if ch_svg else
                       f'<p class="note">{escape(ch_caption)}</p>')
    table = format_table(front_table(rows[on_front].sort_values(
        objs[0][0], ascending=objs[0][1] == "min", kind="stable"), objs))
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    title = f"hgsearch report: {results_dir.resolve().name}"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>{len(df)} trial rows{' of sweep(s) ' + escape(', '.join(sweeps)) if sweeps else ''}"
        f": {len(rows)} usable, left out: {escape(left)}. Objectives: {escape(names)}. "
        f"{int(on_front.sum())} trials on the Pareto front. Generated {stamp}.</p>",
        "<p class=\"note\">Accuracy is top-1 in %; ratios are fractions of the dense network; "
        "MACs count one multiply-accumulate of a conv or linear layer as one.</p>",
        "<h2>Selected model</h2>", _selected_html(selection, note, results_dir),
        "<h2>Trade-offs</h2>", *figures,
        "<h2>Pareto front</h2>",
        table.to_html(index=False, border=0, escape=True),
        "</body></html>", ""])


def _figure(svg_text: str, caption: str) -> str:
    return f"<figure>{svg_text}<figcaption>{escape(caption)}</figcaption></figure>"


def write_report(results_dir: str | Path, df: pd.DataFrame, *,
                 objectives: ObjectivesLike = None, selection: Selection | None = None) -> Path:
    """Write RESULTS/report/index.html (atomically) and return its path.

    ``selection`` None: the exported selection if RESULTS/selected/model_card.json exists,
    else the knee rule's choice.
    """
    results_dir = Path(results_dir)
    note = "given by the caller"
    if selection is None:
        selection, note = report_selection(results_dir, df, objectives)
    page = render_report(df, objectives=objectives, selection=selection, note=note,
                         results_dir=results_dir)
    path = results_dir / "report" / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
