"""RESULTS/report/index.html: one self-contained page on a sweep's outcome, working offline.

Plotly figures (``plots.py``) with plotly.js inlined once, and a small inline script that sorts
the tables: nothing is fetched from elsewhere. The page shows the selected model, accuracy
against parameter and MAC ratios (front, baseline and selection marked), test against validation
accuracy, accuracy against latency when measured, the hypervolume after each finished trial,
parallel coordinates of the searched keys, parameter importance per objective, the front's
per-epoch curves, the selected model's channels, every trial (failed ones with their error) and
the front. The selected model is the one of RESULTS/selected/model_card.json when that exists
(``hgsearch select`` rewrites an existing report), else the knee rule's choice.
"""

from __future__ import annotations

import json
import warnings
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from hgsearch.analysis import plots
from hgsearch.analysis.controls import comparison_lines, controls_on_axes
from hgsearch.analysis.export import SELECTED
from hgsearch.analysis.front import (
    ObjectivesLike,
    default_reference,
    format_table,
    front_table,
    goodness,
    hypervolume_history,
    left_out,
    nondominated_mask,
    parse_objectives,
    usable,
)
from hgsearch.analysis.select_trial import TrialChoice, select_trial
from hgsearch.analysis.tables import (
    confirmation_html,
    controls_html,
    searched_keys,
    trials_table,
)
from hgsearch.config import FIELDS
from hgsearch.errors import UserError
from hgsearch.fileio import utc_now, write_text_atomic
from hgsearch.results import baseline_mask
from hgsearch.results_layout import ResultsFolder

AXES = (("params_ratio", "parameters (fraction of the dense network)"),
        ("macs_ratio", "MACs (multiply-accumulates, fraction of the dense network)"))
LATENCY = ("latency_final_b1_ms", "latency_final_bN_ms")
STYLE = """body{font-family:sans-serif;max-width:1180px;margin:1em auto;padding:0 1em;color:#222}
.plot{display:inline-block;margin:0 1em 1em 0;vertical-align:top}
figcaption{font-size:.85em;color:#555;max-width:560px}
table{border-collapse:collapse;font-size:.8em}td,th{padding:2px 6px;text-align:right}
th{border-bottom:1px solid #444;cursor:pointer;background:#fff;position:sticky;top:0}
tr:nth-child(even){background:#f4f4f4}tr.bad{background:#fde8e0}
td.error{text-align:left;max-width:420px;white-space:normal}
.scroll{max-height:520px;overflow:auto}.note{color:#555;font-size:.9em}"""
# Click a column's header to sort by it (numbers as numbers, "-" last); click again to reverse.
SORT_JS = """document.querySelectorAll('table.sortable th').forEach(function(th, i) {
  th.addEventListener('click', function() {
    var body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
    var up = th.dataset.dir !== 'up'; th.dataset.dir = up ? 'up' : 'down';
    function key(r) { var t = r.cells[i].textContent.trim(), n = parseFloat(t);
      return t === '-' || t === '' ? null : (isNaN(n) || !/^[-+0-9.e]+$/i.test(t) ? t : n); }
    rows.sort(function(a, b) { var x = key(a), y = key(b);
      if (x === null) return 1; if (y === null) return -1;
      var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0)
                                      : (typeof x < typeof y ? -1 : 1);
      return up ? c : -c; });
    rows.forEach(function(r) { body.appendChild(r); }); }); });"""


def report_selection(results_dir: str | Path, df: pd.DataFrame,
                     objectives: ObjectivesLike = None) -> tuple[TrialChoice | None, str]:
    """The model the report marks: the exported selection, else the knee; plus a note why."""
    card_path = ResultsFolder(results_dir).selected / "model_card.json"
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
            sel = TrialChoice(trial_id, hits.iloc[0], str(card.get("rule", "")),
                            str(card.get("reason", "")), dict(card.get("settings") or {}))
            when = f" at {card['selected_at']}" if card.get("selected_at") else ""
            return sel, f"exported by hgsearch select{when} to {SELECTED}/model_card.json"
        note = f"{SELECTED}/model_card.json names {trial_id}, which is not in the results; "
    else:
        note = ""
    try:
        chosen = select_trial(df, rule="knee", objectives=objectives)
        return chosen, note + "chosen by the knee rule"
    except UserError as err:
        return None, note + f"no model selected: {err}"


def _lists(row: pd.Series, key: str) -> list[float] | None:
    value = row.get(key)
    if isinstance(value, (list, tuple, np.ndarray)) and len(value):
        return [float(v) for v in value]
    return None


def _figure(name: str, fig, caption: str) -> str:
    import plotly.io as pio

    div = pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=f"plot-{name}",
                      config={"displaylogo": False})
    return (f'<figure class="plot" data-plot="{escape(name)}">{div}'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def importances(rows: pd.DataFrame, keys: list[str],
                objs: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """Optuna's PED-ANOVA importance of each searched key for each objective, from the rows.

    The rows become trials of an in-memory study (a key that does not apply to a trial is
    absent from its params, and Optuna then leaves it out: importance needs a key in every
    trial). Raises ValueError when there is too little to rank.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    dists = {}
    for key in keys:
        col = rows[key].dropna()
        kind = FIELDS[key].type if key in FIELDS else "str"
        if kind in ("int", "float") and col.nunique() > 1:
            lo, hi = float(col.min()), float(col.max())
            dists[key] = FloatDistribution(lo, hi, log=key == "lam" and lo > 0)
        elif col.nunique() > 1:
            dists[key] = CategoricalDistribution(sorted(col.astype(str).unique()))
    if not dists:
        raise ValueError("no searched key takes two values among the usable trials")
    trials = []
    for _, row in rows.iterrows():
        params = {k: (float(row[k]) if isinstance(d, FloatDistribution) else str(row[k]))
                  for k, d in dists.items() if pd.notna(row[k])}
        trials.append(optuna.trial.create_trial(
            params=params, distributions={k: dists[k] for k in params},
            values=[float(row[n]) for n, _ in objs]))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize" if d == "max" else "minimize"
                                            for _, d in objs])
    study.add_trials(trials)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # PED-ANOVA's note that it ranks for low targets
        for i, (name, direction) in enumerate(objs):
            sign = -1.0 if direction == "max" else 1.0     # PED-ANOVA ranks for low values

            def target(t, i=i, sign=sign):
                return sign * t.values[i]

            out[name] = dict(get_param_importances(
                study, target=target, evaluator=PedAnovaImportanceEvaluator()))
    return out


def _search_figures(rows: pd.DataFrame, objs: list[tuple[str, str]], keys: list[str],
                    searched: pd.DataFrame) -> list[str]:
    out = []
    if keys and len(searched) >= 2:
        out.append(_figure("parallel", plots.parallel(searched, keys, objs[0][0]),
                           f"One line per usable searched trial, coloured by {objs[0][0]}; drag "
                           "along an axis to filter. n/a: the key does not apply to the trial "
                           "(inapplicable.inapplicable_keys)."))
        try:
            scores = importances(searched, keys, objs)
            out.append(_figure("importance", plots.importance(scores),
                               "Optuna's get_param_importances with PED-ANOVA: how differently "
                               "each key is distributed among the best trials of an objective "
                               "than among all. Keys that do not apply to every trial are "
                               "left out."))
        except (ValueError, RuntimeError) as err:
            out.append(f'<p class="note">Parameter importance: not computed ({escape(str(err))}'
                       f").</p>")
    else:
        out.append('<p class="note">Parallel coordinates and parameter importance need at '
                   'least two usable trials differing in some key.</p>')
    return out


def _front_count(on_front: np.ndarray, baseline: np.ndarray) -> str:
    """How many trials the front holds, saying so when the unpruned baseline is one of them."""
    n, with_baseline = int(on_front.sum()), bool((on_front & baseline).any())
    return (f"{n} trial{'s' if n != 1 else ''} on the Pareto front"
            f"{', the baseline among them' if with_baseline else ''}.")


def _curve_figure(curves: pd.DataFrame | None, front_ids: list[str]) -> str:
    palette = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
               "#ff7f0e", "#7f7f7f", "#d62728"]
    if curves is None or curves.empty or not set(front_ids) & set(curves["trial_id"]):
        return '<p class="note">No per-epoch curves of the front\'s trials (curves/).</p>'
    ids = [t for t in front_ids if t in set(curves["trial_id"])][:10]
    colors = {t: palette[i % len(palette)] for i, t in enumerate(ids)}
    return _figure("curves", plots.curves(curves, colors),
                   f"Validation accuracy after each epoch of {len(ids)} front trial(s): HGSR "
                   "training (solid), then fine-tuning of the compact network (dotted).")


def _hypervolume_figure(df: pd.DataFrame, objs: list[tuple[str, str]]) -> str:
    order_by = "finished_at" if df["finished_at"].notna().any() else None
    hv = hypervolume_history(df, objs, order_by=order_by)
    ref = ", ".join(f"{n} {r:g}" for (n, _), r in zip(objs, default_reference(df, objs)))
    return _figure("hypervolume", plots.history(hv, [str(df.loc[i, "trial_id"])
                                                     for i in hv.index]),
                   f"Volume of objective space dominated by the trials finished so far "
                   f"(in {order_by or 'row'} order), bounded by the reference point "
                   f"({ref}); failed trials and trials no better than the reference "
                   f"(such as a baseline at ratio 1) leave it unchanged. Final value "
                   f"{hv.iloc[-1]:.4g}.")


def render_report(df: pd.DataFrame, *, objectives: ObjectivesLike = None,
                  selection: TrialChoice | None = None, note: str = "",
                  results_dir: str | Path = ".", curves: pd.DataFrame | None = None,
                  keys: list[str] | None = None) -> str:
    """The whole page as one HTML string; ``keys``: the searched keys (None: the trial keys
    that vary among the rows, ``tables.searched_keys``)."""
    from plotly.offline import get_plotlyjs

    from hgsearch.results import typed

    objs = parse_objectives(objectives)
    results_dir = Path(results_dir)
    df = typed(df)
    rows = usable(df, objs).reset_index(drop=True)
    on_front = nondominated_mask(goodness(rows, objs))
    baseline = baseline_mask(rows)
    picked = np.zeros(len(rows), dtype=bool)
    if selection is not None:
        picked = rows["trial_id"].astype(str).eq(selection.trial_id).to_numpy(dtype=bool)
    marks = {"other": ~on_front, "front": on_front, "baseline": baseline, "selected": picked}
    keys = searched_keys(df) if keys is None else [k for k in keys if k in df.columns]
    names = ", ".join(f"{n} ({d})" for n, d in objs)
    sweeps = sorted({str(s) for s in df["sweep"].dropna()})

    controls = controls_on_axes(df)
    beside = (" Controls (green, with the binomial standard error of their accuracy) are "
              "networks of a pruned trial's size trained from scratch, their size taken against "
              "that trial's dense network; never on the front." if len(controls) else "")
    figures = [_figure(key, plots.tradeoff(rows, marks, key, label, keys,
                                           step=[n for n, _ in objs] == ["acc_final", key],
                                           controls=controls),
                       f"Each marker is a usable trial (hover: its id and keys; trials at the "
                       f"same point share one larger marker); the front is that of {names}."
                       + beside)
               for key, label in AXES if np.isfinite(plots.numeric(rows, key)).any()]
    if np.isfinite(plots.numeric(rows, "test_acc_final")).any():
        figures.append(_figure("val_test", plots.val_test(rows, keys),
                               "Test accuracy is reported, never used for selection: points far "
                               "from the dashed line show how noisy the validation split is."))
    for key in LATENCY:
        if np.isfinite(plots.numeric(rows, key)).any():
            figures.append(_figure("latency", plots.latency(rows, marks, key, keys),
                                   f"{key}: median forward time of the compact network on the "
                                   "device the trial ran on (compare trials of one device)."))
            break
    figures += _latency_figures(rows)
    if np.isfinite(plots.numeric(rows, "acc_pruned")).any():
        figures.append(_figure("recovery", plots.recovery(rows),
                               "Validation accuracy of each usable trial after HGSR training "
                               "(dense), right after pruning (before any fine-tuning) and after "
                               "fine-tuning: the gap between the last two is what fine-tuning "
                               "recovered."))
    figures.append(_hypervolume_figure(df, objs))
    searched = rows[~baseline]
    search = _search_figures(rows, objs, keys, searched)
    cautions = _cautions_html(rows, searched)
    front_ids = [str(t) for t in rows.loc[on_front, "trial_id"]]
    if selection is not None and (kept := _lists(selection.row, "kept_channels")):
        figures.append(_figure("channels", plots.channels(
            selection.trial_id, kept, _lists(selection.row, "widths_dense")),
            f"Inner channels kept per residual block: {sum(kept):.0f} in all."))
    table = format_table(front_table(rows[on_front].sort_values(
        objs[0][0], ascending=objs[0][1] == "min", kind="stable"), objs, keys))
    stamp = utc_now("seconds")
    title = f"hgsearch report: {results_dir.resolve().name}"
    skipped = df.attrs.get("skipped") or []
    skipped_html = "".join(f'<p class="note">Skipped {escape(p)}: {escape(r)}.</p>'
                           for p, r in skipped)
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style>",
        f"<script>{get_plotlyjs()}</script></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>{len(df)} trial rows{' of sweep(s) ' + escape(', '.join(sweeps)) if sweeps else ''}"
        f": {escape(left_out(len(rows), rows.attrs.get('excluded', {})))} Objectives: "
        f"{escape(names)}. {_front_count(on_front, baseline)} Generated {stamp}."
        f"</p>{skipped_html}",
        "<p class=\"note\">Accuracy is top-1 in %; ratios are fractions of the dense network; "
        "MACs count one multiply-accumulate of a conv or linear layer as one.</p>",
        cautions,
        "<h2>Selected model</h2>", _selected_html(selection, note, results_dir, df),
        "<h2>Trade-offs</h2>", *figures,
        "<h2>The search</h2>", *search, _curve_figure(curves, front_ids),
        "<h2>Pareto front</h2>",
        table.to_html(index=False, border=0, escape=True, classes="sortable"),
        controls_html(df, front_ids),
        "<h2>All trials</h2>",
        "<p class=\"note\">Click a column to sort. Failed, diverged and stopped trials are "
        "shaded, with their error.</p>",
        f'<div class="scroll">{trials_table(df, objs, keys)}</div>',
        f"<script>{SORT_JS}</script>", "</body></html>", ""])


def _latency_figures(rows: pd.DataFrame) -> list[str]:
    """Dense against compact latency per trial with IQR bars, where both were timed together."""
    out = []
    for tag in ("b1", "bN"):
        both = rows[np.isfinite(plots.numeric(rows, f"latency_dense_{tag}_iqr_ms"))
                    & np.isfinite(plots.numeric(rows, f"latency_final_{tag}_iqr_ms"))]
        batch = "batch 1" if tag == "b1" else "batch latency_batch"
        if len(both):
            out.append(_figure(f"latency_pair_{tag}", plots.latency_pair(both, tag),
                               f"Median ms per forward ({batch}) of the dense and the compact "
                               "network, timed "
                               "interleaved in one process after fine-tuning; each bar is one "
                               "interquartile range long, centred on the median. Where the "
                               "medians differ by less than the larger IQR "
                               f"(latency_{tag}_significant false) no speed-up is shown."))
    return out


def _cautions_html(rows: pd.DataFrame, searched: pd.DataFrame) -> str:
    """The cautions of ``analysis.cautions`` as a list; nothing when there are none."""
    from hgsearch.analysis.cautions import front_caution, importance_caution, trial_cautions

    items = [c for c in (front_caution(len(searched)), importance_caution(searched)) if c]
    items += trial_cautions(rows)
    if not items:
        return ""
    lis = "".join(f"<li>{escape(c)}</li>" for c in items)
    return f'<h2>Warnings</h2><ul class="warnings">{lis}</ul>'


def _selected_html(selection: TrialChoice | None, note: str, results_dir: Path,
                   df: pd.DataFrame) -> str:
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
    if against := comparison_lines(df, row):
        html.append("<p>" + "<br>".join(escape(line.strip()) for line in against) + "</p>")
    html.append(confirmation_html(df, row))
    folder = ResultsFolder(results_dir).selected
    files = [f for f in ("model_card.json", "arch.json", "model.pt", "model.onnx")
             if (folder / f).is_file()]
    if files and note.startswith("exported"):
        links = ", ".join(f'<a href="../{SELECTED}/{f}">{f}</a>' for f in files)
        html.append(f"<p>Exported files: {links}.</p>")
    return "\n".join(html)


def write_report(results_dir: str | Path, df: pd.DataFrame, *,
                 objectives: ObjectivesLike = None, selection: TrialChoice | None = None,
                 curves: pd.DataFrame | None = None, keys: list[str] | None = None) -> Path:
    """Write RESULTS/report/index.html (atomically) and return its path.

    ``selection`` None: the exported selection if RESULTS/selected/model_card.json exists,
    else the knee rule's choice. ``curves`` None: read from RESULTS/curves/.
    """
    from hgsearch.results import load_curves

    results_dir = Path(results_dir)
    note = "given by the caller"
    if selection is None:
        selection, note = report_selection(results_dir, df, objectives)
    if curves is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # unreadable curve files: the report says nothing
            curves = load_curves(results_dir)
    page = render_report(df, objectives=objectives, selection=selection, note=note,
                         results_dir=results_dir, curves=curves, keys=keys)
    path = ResultsFolder(results_dir).report
    write_text_atomic(path, page)
    return path
