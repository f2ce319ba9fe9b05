"""``hgsearch bench --suite quality``: the scoring criteria side by side, at the same budget.

For each seed and regularizer setting (none, HGSR with subgradients, HGSR with the proximal
solver) one ResNet-20 is trained on the synthetic data. That one network is then scored by every
criterion; for each of the two ratios of parameters removed the compact network is built, its
validation accuracy measured before fine-tuning, after BatchNorm recalibration (on a copy) and
after fine-tuning. Every criterion of a (setting, seed) starts from the same trained network and
fine-tunes with the same batch order, so the differences are the criteria's. The report holds
every run and, per (setting, criterion, ratio), the mean and spread over seeds. It is rewritten
after each (seed, setting), so a run cut short keeps what it finished.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hgsearch.fileio import utc_now, versions, write_json_atomic

FORMAT = "hgsearch-bench-quality-v1"
CRITERIA = ("loss_increase", "l1_norm", "bn_scale", "taylor", "random")

# HGSR as the reference trains it (METHOD.md part 1: group_l12, level 2, square, input groups,
# mix 0.5). lam 1e-3 stopped ResNet-20 at chance here; at 1e-4 it learns (proximal, seed 0,
# 8 epochs: 93.8% validation, 1.8% of the prunable filters exactly zero).
_HGSR = {"reg": "group_l12", "reg_levels": 2, "reg_outer": "square", "reg_grouping": "input",
         "mix": 0.5, "lam": 1e-4}
SETTINGS = {"none": {"reg": "none", "lam": 0.0},
            "hgsr_subgradient": {**_HGSR, "reg_solver": "subgradient"},
            "hgsr_proximal": {**_HGSR, "reg_solver": "proximal"}}


@dataclass(frozen=True)
class QualityScale:
    base: dict[str, Any]                     # trial keys shared by every run
    seeds: tuple[int, ...] = (0, 1, 2)
    ratios: tuple[float, ...] = (0.5, 0.7)   # of the network's parameters
    criteria: tuple[str, ...] = CRITERIA
    settings: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(SETTINGS))
    recalibrate: int = 1024                  # training images for BatchNorm recalibration


# 4500 training images x 8 epochs: ResNet-20 above 85% validation accuracy (synthetic.py:
# 82% after 5 epochs, 97% after 20); 1 fine-tuning epoch at a tenth of the peak rate. Small
# enough for a shared 2-core machine (hours); a GPU runs it in minutes.
FULL = QualityScale(base={
    "dataset": "synthetic", "synthetic_train_size": 5000, "synthetic_test_size": 1000,
    "arch": "resnet20", "epochs": 8, "batch_size": 128, "lr": 0.1, "finetune_epochs": 1,
    "finetune_lr": 0.01, "score_samples": 256, "eval_batch_size": 500,
    "prune_target": "params", "prune_scope": "global"})
# Every code path in seconds (the test suite's setting): one seed, tiny data, one epoch each.
TINY = QualityScale(base={**FULL.base, "synthetic_train_size": 300, "synthetic_test_size": 100,
                          "epochs": 1, "batch_size": 50, "finetune_epochs": 1,
                          "score_samples": 32, "eval_batch_size": 200},
                    seeds=(0,), recalibrate=64)


def run_quality(scale: QualityScale, *, device: str = "cpu", out: str | Path | None = None,
                log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Run the grid of ``scale``; return the report (and keep ``out`` up to date when given)."""
    import torch

    from hgsearch.bench.harness import load_average, machine_info
    from hgsearch.config import make_config
    from hgsearch.data import load_dataset
    from hgsearch.runtime import resolve_runtime

    log = log or (lambda _line: None)
    runtime = resolve_runtime(device)
    t0 = time.perf_counter()
    report: dict[str, Any] = {"format": FORMAT, "started_at": utc_now("seconds"), "device": str(
        runtime.device), "scale": asdict(scale), "machine": machine_info(runtime.device),
        "versions": versions(), "dense": [], "runs": [], "complete": False}
    data = None
    for seed in scale.seeds:
        for name, keys in scale.settings.items():
            cfg = make_config({**scale.base, **keys, "seed": seed, "device": device})
            if data is None:                           # the data do not depend on the seed
                data = load_dataset(cfg)
            splits = _splits(data, runtime)
            gen = torch.Generator().manual_seed(seed)   # batches, then the scoring samples
            model, dense = _train_dense(cfg, splits, data.num_classes, runtime, gen)
            dense = {"setting": name, "seed": seed, **dense}
            report["dense"].append(dense)
            log(f"[{name} seed {seed}] dense val {100 * dense['val_acc']:.1f}%, "
                f"{100 * dense['zero_filter_fraction']:.1f}% of filters exactly zero, "
                f"{dense['train_s']:.0f} s")
            for run in _pruned_runs(cfg, model, splits, scale, data.image_size, runtime, gen):
                report["runs"].append({"setting": name, "seed": seed, **run})
                log(f"  {run['criterion']:13s} {run['ratio']:.0%} params: val "
                    f"{100 * run['acc_pruned']:.1f}% -> recal {100 * run['acc_recalibrated']:.1f}%"
                    f" -> fine-tuned {100 * run['acc_final']:.1f}%")
            report["summary"] = summarize(report)
            report["seconds"] = time.perf_counter() - t0
            report["machine"]["load_average_end"] = load_average()
            if out is not None:
                write_json_atomic(out, report, indent=1)
    report["complete"] = True
    report["finished_at"] = utc_now("seconds")
    if out is not None:
        write_json_atomic(out, report, indent=1)
    return report


def _splits(data: Any, runtime: Any) -> dict[str, Any]:
    from hgsearch.data import DeviceData

    return {s: DeviceData(getattr(data, f"{s}_x"), getattr(data, f"{s}_y"), mean=data.mean,
                          std=data.std, device=runtime.device,
                          channels_last=runtime.channels_last)
            for s in ("train", "val", "test")}


def _accuracy(net: Any, split: Any, cfg: Any, runtime: Any) -> float:
    from hgsearch.train import evaluate

    return evaluate(net, split.eval_batches(cfg.eval_batch_size), runtime)[1]


def _train_dense(cfg: Any, splits: dict[str, Any], num_classes: int, runtime: Any,
                 gen: Any) -> tuple[Any, dict[str, Any]]:
    """The network of one (setting, seed), trained as a trial trains it, and its record."""
    import torch

    from hgsearch.metrics import zero_filter_fraction
    from hgsearch.models import build_model
    from hgsearch.train import sgd_settings, train
    from hgsearch.trial import hgsr_hooks

    torch.manual_seed(cfg.seed)
    model = runtime.prepare(build_model(cfg.arch, num_classes))
    penalty, prox = hgsr_hooks(cfg, model)
    t1 = time.perf_counter()
    train(model, splits["train"], settings=sgd_settings(cfg, cfg.epochs, cfg.lr),
          runtime=runtime, generator=gen, penalty=penalty, after_step=prox, log=None)
    return model, {"val_acc": _accuracy(model, splits["val"], cfg, runtime),
                   "test_acc": _accuracy(model, splits["test"], cfg, runtime),
                   "zero_filter_fraction": zero_filter_fraction(model),
                   "train_s": time.perf_counter() - t1}


def _pruned_runs(cfg: Any, model: Any, splits: dict[str, Any], scale: QualityScale,
                 image_size: int, runtime: Any, gen: Any) -> Iterator[dict[str, Any]]:
    """Per criterion and ratio: the compact network's accuracy before fine-tuning, after
    BatchNorm recalibration (on a copy) and after fine-tuning. ``gen``: the dense training's
    generator, which draws the scoring samples next."""
    import torch

    from hgsearch.metrics import count_params, inner_channel_costs
    from hgsearch.pruning import exact_math, get_criterion, prune_model, select_filters
    from hgsearch.train import recalibrate_bn, sgd_settings, train

    seed = cfg.seed
    costs = [c.params for c in inner_channel_costs(model, (image_size, image_size))]
    total = count_params(model)
    x, y = splits["train"].sample(cfg.score_samples, generator=gen)
    for crit in scale.criteria:
        with exact_math():
            scores = get_criterion(crit)(model, x, y, batch_size=cfg.eval_batch_size,
                                         generator=torch.Generator().manual_seed(seed))
        for ratio in scale.ratios:
            keep = select_filters(scores, ratio=ratio, target="params",
                                  cost_per_channel=costs, total_cost=total).keep
            compact = runtime.prepare(prune_model(model, keep))
            run = {"criterion": crit, "ratio": ratio,
                   "params_ratio": count_params(compact) / total,
                   "acc_pruned": _accuracy(compact, splits["val"], cfg, runtime)}
            recal = copy.deepcopy(compact)
            xr, _ = splits["train"].sample(scale.recalibrate,
                                           generator=torch.Generator().manual_seed(seed))
            recalibrate_bn(recal, xr, batch_size=cfg.batch_size, runtime=runtime)
            run["acc_recalibrated"] = _accuracy(recal, splits["val"], cfg, runtime)
            # Same batch order for every criterion: a paired comparison.
            train(compact, splits["train"],
                  settings=sgd_settings(cfg, cfg.finetune_epochs, cfg.finetune_lr),
                  runtime=runtime, generator=torch.Generator().manual_seed(seed + 1), log=None)
            run.update(acc_final=_accuracy(compact, splits["val"], cfg, runtime),
                       test_acc_final=_accuracy(compact, splits["test"], cfg, runtime))
            yield run


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """Mean and spread (sample std; 0 for one seed) per (setting, criterion, ratio), and the
    winner per ratio: the highest mean validation accuracy after fine-tuning."""
    groups: dict[tuple, list[dict]] = {}
    for run in report["runs"]:
        groups.setdefault((run["setting"], run["criterion"], run["ratio"]), []).append(run)
    rows = []
    for (setting, crit, ratio), runs in groups.items():
        row = {"setting": setting, "criterion": crit, "ratio": ratio, "seeds": len(runs)}
        for key in ("acc_pruned", "acc_recalibrated", "acc_final", "test_acc_final",
                    "params_ratio"):
            values = [r[key] for r in runs]
            row[key] = statistics.fmean(values)
            row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    dense: dict[str, list[float]] = {}
    for d in report["dense"]:
        dense.setdefault(d["setting"], []).append(d["val_acc"])
    winners = {}
    for ratio in sorted({r["ratio"] for r in rows}):
        best = max((r for r in rows if r["ratio"] == ratio), key=lambda r: r["acc_final"])
        winners[str(ratio)] = {"setting": best["setting"], "criterion": best["criterion"],
                               "acc_final": best["acc_final"]}
    return {"rows": rows, "winners": winners,
            "dense_val_acc": {k: statistics.fmean(v) for k, v in dense.items()}}


def format_quality(report: dict[str, Any]) -> list[str]:
    """The summary as a Markdown table (percent, mean +- std over seeds)."""
    lines = ["| setting | criterion | params removed | val before FT | after BN recal. | "
             "val after FT | test after FT | seeds |", "|---|---|---|---|---|---|---|---|"]

    def pct(row: dict, key: str) -> str:
        return f"{100 * row[key]:.1f} ± {100 * row[key + '_std']:.1f}"

    for r in report.get("summary", {}).get("rows", []):
        lines.append(f"| {r['setting']} | {r['criterion']} | {1 - r['params_ratio']:.0%} | "
                     f"{pct(r, 'acc_pruned')} | {pct(r, 'acc_recalibrated')} | "
                     f"{pct(r, 'acc_final')} | {pct(r, 'test_acc_final')} | {r['seeds']} |")
    return lines
