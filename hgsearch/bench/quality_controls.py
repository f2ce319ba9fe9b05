"""The quality benchmark's controls: was the best pruned network worth pruning?

After the criteria grid (hgsearch/bench/quality.py), for each ratio of parameters removed the
best pruned network - the (setting, criterion) with the highest mean validation accuracy after
fine-tuning - is read, seed by seed, against networks of its size that were not pruned:

- ``scratch``: its widths from random initialization, trained for the dense and fine-tuning
  epochs together at the dense recipe (Liu et al., ICLR 2019: Scratch-E);
- ``uniform``: every inner width of the arch times one factor, to its parameter count within
  1% (``hgsearch.search.controls.uniform_widths``, as a sweep's controls), trained the same way;
- ``torch_pruning``, when that optional package is installed: its global group-magnitude
  pruning of the same seed's unregularized network to the same budget, fine-tuned as the
  pruned networks are (hgsearch/bench/torch_pruning_peer.py; run inside the grid, where that
  network is).

Each control of a seed is paired with that seed's pruned network: the table gives the mean and
spread (sample std) of the difference, and in how many seeds the pruned network is ahead.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

SCRATCH, UNIFORM = "scratch", "uniform"
KINDS = (SCRATCH, UNIFORM, "torch_pruning")


def control_tasks(report: dict[str, Any], kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    """One task per (ratio, seed, kind) for the trained controls (scratch, uniform), each with
    the widths or parameter count of that seed's best pruned network."""
    tasks = []
    for ratio, best in report["summary"]["winners"].items():
        for run in _best_runs(report, float(ratio), best):
            for kind in (k for k in kinds if k in (SCRATCH, UNIFORM)):
                tasks.append({"kind": kind, "ratio": run["ratio"], "seed": run["seed"],
                              "of_setting": run["setting"], "of_criterion": run["criterion"],
                              "widths": run["widths"], "params": run["params"]})
    return tasks


def control_order(record: dict[str, Any]) -> tuple:
    """The order of ``control_tasks`` (ratio, seed, kind), whatever order they finish in."""
    return record["ratio"], record["seed"], KINDS.index(record["kind"])


def _best_runs(report: dict[str, Any], ratio: float, best: dict[str, Any]) -> list[dict]:
    return [r for r in report["runs"] if r["ratio"] == ratio and
            (r["setting"], r["criterion"]) == (best["setting"], best["criterion"])]


def run_control(base: dict[str, Any], task: dict[str, Any], device: str) -> dict[str, Any]:
    """Train one control of ``task`` from random initialization; its record."""
    import torch

    from hgsearch.bench.runs import accuracy, device_splits
    from hgsearch.config import make_config
    from hgsearch.data import load_dataset
    from hgsearch.metrics import count_params
    from hgsearch.models import build_model
    from hgsearch.runtime import resolve_runtime
    from hgsearch.search.controls import uniform_widths
    from hgsearch.train import Diverged, sgd_settings, train
    from hgsearch.widths import widths_text

    runtime = resolve_runtime(device)
    seed = task["seed"]
    cfg = make_config({**base, "reg": "none", "lam": 0.0, "seed": seed, "device": device})
    data = load_dataset(cfg)
    splits = device_splits(data, runtime)
    widths = list(task["widths"])
    if task["kind"] == UNIFORM:
        widths, _ = uniform_widths(cfg.arch, data.num_classes, task["params"])
    torch.manual_seed(seed)
    model = runtime.prepare(build_model(cfg.arch, data.num_classes, widths))
    with torch.device("meta"):
        full = count_params(build_model(cfg.arch, data.num_classes))
    record = {k: task[k] for k in ("kind", "ratio", "seed", "of_setting", "of_criterion")}
    record.update(widths=widths_text(widths), params=count_params(model),
                  params_ratio=count_params(model) / full)
    epochs = cfg.epochs + cfg.finetune_epochs          # Scratch-E: the pruned run's epochs
    t0 = time.perf_counter()
    try:
        train(model, splits["train"], settings=sgd_settings(cfg, epochs, cfg.lr, dense=True),
              runtime=runtime, generator=torch.Generator().manual_seed(seed), log=None)
    except Diverged as err:
        return {**record, "diverged": True, "error": str(err)}
    return {**record, "diverged": False, "train_s": time.perf_counter() - t0,
            "val_acc": accuracy(model, splits["val"], cfg, runtime),
            "test_acc": accuracy(model, splits["test"], cfg, runtime)}


def summarize_controls(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per ratio: the best pruned network and each control (val and test, mean and spread over
    seeds), with the paired difference pruned minus control."""
    rows = []
    controls = [*report.get("controls", []), *(
        {"kind": "torch_pruning", "ratio": p["ratio"], "seed": p["seed"],
         "params_ratio": p["params_ratio"], "val_acc": p["acc_final"],
         "test_acc": p["test_acc_final"], "diverged": False} for p in report.get("peers", []))]
    for ratio, best in report.get("summary", {}).get("winners", {}).items():
        pruned = {r["seed"]: {"val_acc": r["acc_final"], "test_acc": r["test_acc_final"],
                              "params_ratio": r["params_ratio"]}
                  for r in _best_runs(report, float(ratio), best)}
        name = f"pruned: {best['setting']} + {best['criterion']}"
        rows.append(_row(float(ratio), name, pruned, None))
        for kind in KINDS:
            mine = {c["seed"]: c for c in controls if c["kind"] == kind and
                    c["ratio"] == float(ratio) and not c.get("diverged")}
            if mine:
                rows.append(_row(float(ratio), kind, mine, pruned))
    return rows


def _row(ratio: float, network: str, by_seed: dict[int, dict], pruned: dict[int, dict] | None
         ) -> dict[str, Any]:
    row: dict[str, Any] = {"ratio": ratio, "network": network, "seeds": len(by_seed)}
    for key in ("params_ratio", "val_acc", "test_acc"):
        row[key], row[f"{key}_std"] = _mean_std([r[key] for r in by_seed.values()])
    if pruned is not None:
        paired = sorted(set(by_seed) & set(pruned))
        for key in ("val_acc", "test_acc"):
            gaps = [pruned[s][key] - by_seed[s][key] for s in paired]
            row[f"pruned_minus_{key}"], row[f"pruned_minus_{key}_std"] = _mean_std(gaps)
            row[f"pruned_ahead_{key}"] = sum(g > 0 for g in gaps)
        row["paired_seeds"] = len(paired)
    return row


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_controls(report: dict[str, Any]) -> list[str]:
    """The controls as a Markdown table (percent, mean +- std over seeds)."""
    lines = ["| params removed | network | params kept | val | test | pruned − it, val | "
             "pruned − it, test | pruned ahead (test) | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]

    def pct(row: dict, key: str) -> str:
        return f"{100 * row[key]:.1f} ± {100 * row[key + '_std']:.1f}"

    for r in report.get("control_summary", []):
        gap_val = pct(r, "pruned_minus_val_acc") if "paired_seeds" in r else ""
        gap_test = pct(r, "pruned_minus_test_acc") if "paired_seeds" in r else ""
        ahead = (f"{r['pruned_ahead_test_acc']} of {r['paired_seeds']}"
                 if "paired_seeds" in r else "")
        lines.append(f"| {r['ratio']:.0%} | {r['network']} | {r['params_ratio']:.3f} | "
                     f"{pct(r, 'val_acc')} | {pct(r, 'test_acc')} | {gap_val} | {gap_test} | "
                     f"{ahead} | {r['seeds']} |")
    return lines
