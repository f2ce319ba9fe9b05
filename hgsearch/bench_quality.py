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
import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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
                log=print) -> dict[str, Any]:
    """Run the grid of ``scale``; return the report (and keep ``out`` up to date when given)."""
    import torch

    from hgsearch.bench import machine_info, versions
    from hgsearch.config import make_config
    from hgsearch.data import DeviceData, load_dataset
    from hgsearch.metrics import count_params, inner_channel_costs, zero_filter_fraction
    from hgsearch.models import build_model
    from hgsearch.pruning import exact_math, get_criterion, prune_model, select
    from hgsearch.train import evaluate, recalibrate_bn, resolve_runtime, train
    from hgsearch.trial import _sgd, hgsr_hooks

    log = log or (lambda _line: None)
    runtime = resolve_runtime(device)
    started, t0 = _now(), time.perf_counter()
    report: dict[str, Any] = {"format": FORMAT, "started_at": started, "device": str(
        runtime.device), "scale": asdict(scale), "machine": machine_info(runtime.device),
        "versions": versions(), "dense": [], "runs": [], "complete": False}
    data = None
    for seed in scale.seeds:
        for name, keys in scale.settings.items():
            cfg = make_config({**scale.base, **keys, "seed": seed, "device": device})
            if data is None:                           # the data do not depend on the seed
                data = load_dataset(cfg)
            splits = {s: DeviceData(getattr(data, f"{s}_x"), getattr(data, f"{s}_y"),
                                    mean=data.mean, std=data.std, device=runtime.device,
                                    channels_last=runtime.channels_last)
                      for s in ("train", "val", "test")}

            def acc(net, split: str, splits=splits, batch=cfg.eval_batch_size) -> float:
                return evaluate(net, splits[split].eval_batches(batch), runtime)[1]

            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            model = runtime.prepare(build_model(cfg.arch, data.num_classes))
            penalty, prox = hgsr_hooks(cfg, model)
            t1 = time.perf_counter()
            train(model, splits["train"], settings=_sgd(cfg, cfg.epochs, cfg.lr),
                  runtime=runtime, generator=gen, penalty=penalty, after_step=prox, log=None)
            dense = {"setting": name, "seed": seed, "val_acc": acc(model, "val"),
                     "test_acc": acc(model, "test"),
                     "zero_filter_fraction": zero_filter_fraction(model),
                     "train_s": time.perf_counter() - t1}
            report["dense"].append(dense)
            log(f"[{name} seed {seed}] dense val {100 * dense['val_acc']:.1f}%, "
                f"{100 * dense['zero_filter_fraction']:.1f}% of filters exactly zero, "
                f"{dense['train_s']:.0f} s")
            size = (data.image_size, data.image_size)
            costs = [c.params for c in inner_channel_costs(model, size)]
            total = count_params(model)
            x, y = splits["train"].sample(cfg.score_samples, generator=gen)
            for crit in scale.criteria:
                with exact_math():
                    scores = get_criterion(crit)(model, x, y, batch_size=cfg.eval_batch_size,
                                                 generator=torch.Generator().manual_seed(seed))
                for ratio in scale.ratios:
                    keep = select(scores, ratio=ratio, target="params", cost_per_channel=costs,
                                  total_cost=total).keep
                    compact = runtime.prepare(prune_model(model, keep))
                    run = {"setting": name, "seed": seed, "criterion": crit, "ratio": ratio,
                           "params_ratio": count_params(compact) / total,
                           "acc_pruned": acc(compact, "val")}
                    recal = copy.deepcopy(compact)
                    xr, _ = splits["train"].sample(scale.recalibrate,
                                                   generator=torch.Generator().manual_seed(seed))
                    recalibrate_bn(recal, xr, batch_size=cfg.batch_size, runtime=runtime)
                    run["acc_recalibrated"] = acc(recal, "val")
                    # Same batch order for every criterion: a paired comparison.
                    train(compact, splits["train"],
                          settings=_sgd(cfg, cfg.finetune_epochs, cfg.finetune_lr),
                          runtime=runtime, generator=torch.Generator().manual_seed(seed + 1),
                          log=None)
                    run.update(acc_final=acc(compact, "val"),
                               test_acc_final=acc(compact, "test"))
                    report["runs"].append(run)
                    log(f"  {crit:13s} {ratio:.0%} params: val {100 * run['acc_pruned']:.1f}% "
                        f"-> recal {100 * run['acc_recalibrated']:.1f}% -> fine-tuned "
                        f"{100 * run['acc_final']:.1f}%")
            report["summary"] = summarize(report)
            report["seconds"] = time.perf_counter() - t0
            report["machine"]["load_average_end"] = _load()
            if out is not None:
                write_json(report, out)
    report["complete"] = True
    report["finished_at"] = _now()
    if out is not None:
        write_json(report, out)
    return report


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


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    """Strict JSON (NaN -> null), written under a temporary name and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_finite(report), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def quality_command(*, device: str, quick: bool, out: str | Path,
                    threads: int | None) -> int:
    """``hgsearch bench --suite quality``: run, print the table, write the JSON report."""
    import torch

    torch.set_num_threads(threads or 1)   # one thread: fastest on a shared, loaded CPU
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = Path(out) / f"quality-{'tiny-' if quick else ''}{stamp}.json"
    report = run_quality(TINY if quick else FULL, device=device, out=path)
    for line in format_quality(report):
        print(line)
    print(f"{report['seconds']:.0f} s; written to {path}")
    return 0
