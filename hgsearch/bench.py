"""``hgsearch bench``: how fast the hot paths are, each as a ratio against a reference.

Every figure is a ratio of two things timed in the same run, alternating (ABBA: A B, then B A,
...) after a warm-up of each, as the median of the rounds' paired ratios; so a figure means the
same on a machine that other jobs slow down unevenly. On CPU the ratio of process CPU time is
given beside the wall-time one. The run writes ``<out>/<host>-<UTC time>.json`` (atomically):
the machine, the versions, every setting and figure.

Benchmarks (``BENCHMARKS``) and their targets (issue #7):

- ``hgsr``: SGD step with the regularizer / without it (bench_hgsr.py). <= 1.05.
- ``scoring``: reference scorer time / fast scorer time, same deltas (bench_scoring.py). >= 2.
- ``data``: seconds per batch of ``DeviceData.train_batches`` / seconds of one training step.
  <= 0.05. Beside it, a torchvision Dataset + DataLoader pipeline doing the same augmentation.
- ``trial``: one epoch of ``hgsearch.train.train`` with a trial's settings / the same steps in a
  minimal hand-written loop over ready-made batches. <= 1.10.
- ``pruning``: latency of the dense network / of a 50%-pruned one (random scores), at batch 1
  and a large batch, with round_to 1 and 8.
- ``sweep``: a sweep of N equal trials / (N x one trial run alone / concurrency), and the fixed
  cost per trial that this leaves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from hgsearch.errors import UserError

FORMAT = "hgsearch-bench-v1"
BENCHMARKS = ("hgsr", "scoring", "data", "trial", "pruning", "sweep", "sweep_scale")
# (headline figure, comparison, target); None: reported without a target
TARGETS: dict[str, tuple[str, str, float | None]] = {
    "hgsr": ("ratio", "<=", 1.05),
    "scoring": ("speedup", ">=", 2.0),
    "data": ("data_share_of_step", "<=", 0.05),
    "trial": ("ratio", "<=", 1.10),
    "pruning": ("speedup_round1_bN", ">=", None),
    "sweep": ("ratio", "<=", None),
    "sweep_scale": ("cpu_per_trial_ratio", "<=", 1.5),    # bench_sweep_scale.py
}
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)   # CIFAR-10's, roughly: any will do
Times = list[tuple[float, float]]   # (wall seconds, process CPU seconds) per timed call


@dataclass(frozen=True)
class Scale:
    """How big each benchmark is. ``rounds``: paired rounds per figure, after one warm-up."""

    arch: str = "resnet56"           # the network of every figure but the sweep's
    batch: int = 128                 # images per SGD step
    rounds: int = 8
    score_rounds: int = 3            # the scorers take minutes a round on CPU
    score_samples: int = 512
    score_batch: int = 512           # images per forward of the scorers
    score_reference_filters: int = 3    # per round; the rest is scaled (bench_scoring.py)
    score_fast_samples: int | None = None   # None: the fast scorer scores every sample
    data_batches: int = 8            # batches per timed block of the data path
    epoch_steps: int = 2             # SGD steps in the trial-overhead epoch
    latency_batch: int = 128         # the large batch of the pruning pay-off
    latency_repeats: int = 3         # forwards per latency figure (median); x10 at batch 1
    sweep_trials: int = 4
    sweep_concurrency: int = 2
    sweep_trial: dict = field(default_factory=lambda: {
        "dataset": "synthetic", "synthetic_train_size": 1000, "synthetic_test_size": 200,
        "arch": "resnet20", "epochs": 1, "finetune_epochs": 1, "batch_size": 64,
        "eval_batch_size": 256, "score_samples": 32, "latency_batch": 16,
        "latency_repeats": 3})


FULL = Scale()
QUICK = Scale(arch="resnet20", batch=32, rounds=4, score_rounds=2, score_samples=64,
              score_batch=64, score_reference_filters=3, score_fast_samples=16, data_batches=4,
              epoch_steps=4, latency_batch=32, latency_repeats=3, sweep_trials=2, sweep_trial={
                  "dataset": "synthetic", "synthetic_train_size": 300, "synthetic_test_size": 50,
                  "arch": "resnet20", "epochs": 1, "finetune_epochs": 0, "batch_size": 50,
                  "eval_batch_size": 256, "score_samples": 8, "latency_batch": 4,
                  "latency_repeats": 2})
# For the test suite only: every code path, in seconds.
TINY = replace(QUICK, batch=8, rounds=2, score_samples=8, score_batch=64,
               score_reference_filters=2, score_fast_samples=None, data_batches=2, epoch_steps=2,
               latency_batch=4, latency_repeats=1,
               sweep_trial={**QUICK.sweep_trial, "synthetic_train_size": 100,
                            "synthetic_test_size": 20, "latency_batch": 2, "latency_repeats": 1,
                            "score_samples": 4})


def scale_for(*, quick: bool, tiny: bool = False, device: str = "cpu") -> Scale:
    """The sizes of a run. On CPU the full run times the fast scorer on 16 of its 512 samples
    (an hour otherwise on two cores; its cost is linear in the samples, bench_scoring.py)."""
    if tiny:
        return TINY
    if quick:
        return QUICK
    return replace(FULL, score_fast_samples=16) if device == "cpu" else FULL


# --------------------------------------------------------------------------- timing helpers

def interleave(calls: dict[str, Callable[[], object]], *, rounds: int, warmup: int = 1,
               sync: Callable[[], None] = lambda: None) -> dict[str, Times]:
    """Time each call once per round, in the given order in even rounds and reversed in odd
    ones (ABBA), after ``warmup`` untimed calls of each; (wall, CPU) seconds per call."""
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    out: dict[str, Times] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            sync()
            wall, cpu = time.perf_counter(), time.process_time()
            calls[name]()
            sync()
            out[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return out


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of numerator[i] / denominator[i]."""
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError("paired_ratio: two non-empty sequences of equal length")
    return statistics.median(n / d for n, d in zip(numerator, denominator))


def compare(subject: Times, reference: Times, *, prefix: str = "") -> dict[str, float]:
    """Medians of both sides' wall seconds and the paired ratios subject / reference (wall, and
    process CPU time, which other processes on a shared machine disturb far less)."""
    walls = [w for w, _ in subject], [w for w, _ in reference]
    return {f"{prefix}subject_s": statistics.median(walls[0]),
            f"{prefix}reference_s": statistics.median(walls[1]),
            f"{prefix}ratio": paired_ratio(*walls),
            f"{prefix}cpu_ratio": paired_ratio([c for _, c in subject], [c for _, c in reference])}


def _sync_for(device: Any) -> Callable[[], None]:
    import torch

    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


# --------------------------------------------------------------------------- benchmarks

def bench_hgsr(scale: Scale, runtime: Any) -> dict[str, Any]:
    """HGSR overhead per SGD step (bench_hgsr.py)."""
    from hgsearch.bench_hgsr import measure_overhead

    r = measure_overhead(scale.arch, scale.batch, steps=scale.rounds, warmup=1,
                         device=str(runtime.device))
    figures = {k: r[k] for k in ("ratio", "cpu_ratio", "plain_step_s", "hgsr_step_s",
                                 "penalty_s", "penalty_share") if r[k] is not None}
    settings = {k: r[k] for k in ("arch", "batch", "reg", "levels", "outer", "grouping", "lam",
                                  "mix", "precision", "channels_last")}
    return {"settings": settings, "figures": figures,
            "definition": "seconds of an SGD step (forward, backward, update) with the HGSR "
                          "penalty / without it; penalty_share: penalty forward + backward "
                          "alone / plain step"}


def bench_scoring(scale: Scale, runtime: Any) -> dict[str, Any]:
    """Fast scorer against the reference scorer (bench_scoring.py)."""
    from hgsearch.bench_scoring import measure_scoring_speedup

    r = measure_scoring_speedup(scale.arch, scale.score_samples, batch_size=scale.score_batch,
                                reference_filters=scale.score_reference_filters,
                                fast_samples=scale.score_fast_samples, rounds=scale.score_rounds,
                                device=str(runtime.device))
    keys = ("speedup", "speedup_cpu", "fast_s", "reference_s", "max_diff_rel_to_max_delta",
            "forward_s", "inference_images_per_s", "pairs_per_s", "filters_per_forward",
            "ideal_filters_per_forward", "efficiency")
    settings = {k: r[k] for k in ("arch", "samples", "batch_size", "filters", "rounds",
                                  "reference_filters_timed", "reference_estimated",
                                  "fast_samples_timed", "fast_estimated")}
    return {"settings": settings, "figures": {k: r[k] for k in keys},
            "definition": "seconds of score_filters_reference / of score_filters on the same "
                          "samples (reference: one full forward per filter, timed on a few and "
                          "scaled; fast: scaled from fast_samples_timed when estimated); "
                          "pairs_per_s: images x filters scored per second; "
                          "filters_per_forward: pairs_per_s / plain eval-forward images per "
                          "second, i.e. filters scored in the time of one forward of the sample"}


def _random_data(n: int, runtime: Any, *, seed: int = 0) -> Any:
    """A DeviceData split of n random 32x32 uint8 images, 10 classes, on the runtime's device."""
    import torch

    from hgsearch.data import DeviceData

    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=gen)
    return DeviceData(x, y, mean=MEAN, std=STD, device=runtime.device,
                      channels_last=runtime.channels_last)


def _sgd_step(model: Any, optimizer: Any, x: Any, y: Any, runtime: Any,
              penalty: Callable[[Any], Any] | None = None) -> None:
    """One plain SGD step as a trial takes it: autocast forward, fp32 loss, backward, update."""
    import torch.nn.functional as F

    optimizer.zero_grad(set_to_none=True)
    with runtime.autocast():
        loss = F.cross_entropy(model(x).float(), y)
    if penalty is not None:
        loss = loss + penalty(model)
    loss.backward()
    optimizer.step()


def bench_data(scale: Scale, runtime: Any) -> dict[str, Any]:
    """Seconds per batch of DeviceData and of a torchvision DataLoader, against a step."""
    import torch
    from torch.utils.data import DataLoader

    from hgsearch.models import build_model

    data = _random_data(scale.data_batches * scale.batch, runtime)
    gen = torch.Generator().manual_seed(0)
    loader = DataLoader(_PilDataset(data), batch_size=scale.batch, shuffle=True, drop_last=True,
                        num_workers=0, pin_memory=runtime.device.type == "cuda", generator=gen)
    memory = torch.channels_last if runtime.channels_last else torch.contiguous_format
    model = runtime.prepare(build_model(scale.arch, 10)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x, y = next(data.train_batches(scale.batch, generator=gen))

    def device_epoch() -> None:
        for _ in data.train_batches(scale.batch, generator=gen):
            pass

    def loader_epoch() -> None:
        for xb, yb in loader:
            xb.to(runtime.device, non_blocking=True, memory_format=memory)
            yb.to(runtime.device, non_blocking=True)

    t = interleave({"device": device_epoch, "step": lambda: _sgd_step(model, optimizer, x, y,
                                                                       runtime),
                    "loader": loader_epoch}, rounds=scale.rounds, sync=_sync_for(runtime.device))
    k = scale.data_batches
    per_batch = {name: [(w / k, c / k) for w, c in t[name]] for name in ("device", "loader")}
    step = [w for w, _ in t["step"]]
    figures = {
        "data_share_of_step": paired_ratio([w for w, _ in per_batch["device"]], step),
        "loader_share_of_step": paired_ratio([w for w, _ in per_batch["loader"]], step),
        "device_batch_s": statistics.median(w for w, _ in per_batch["device"]),
        "loader_batch_s": statistics.median(w for w, _ in per_batch["loader"]),
        "step_s": statistics.median(step),
        "speedup": paired_ratio([w for w, _ in per_batch["loader"]],
                                [w for w, _ in per_batch["device"]]),
        "speedup_cpu": paired_ratio([c for _, c in per_batch["loader"]],
                                    [c for _, c in per_batch["device"]]),
    }
    settings = {"arch": scale.arch, "batch": scale.batch, "batches_per_round": k,
                "loader": "torchvision RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, "
                          "Normalize on PIL images; DataLoader num_workers=0 (the in-process "
                          "cost of a batch), then .to(device)"}
    return {"settings": settings, "figures": figures,
            "definition": "data_share_of_step: seconds per augmented, normalized batch from "
                          "DeviceData.train_batches / seconds of one plain SGD step of the "
                          "network on such a batch; speedup: loader seconds per batch / "
                          "DeviceData seconds per batch"}


class _PilDataset:
    """What torchvision's CIFAR10 does per sample: a PIL image through the classic transforms."""

    def __init__(self, data: Any) -> None:
        from torchvision import transforms as T

        self.images = data.x.permute(0, 2, 3, 1).cpu().numpy()   # (N, H, W, 3)
        self.labels = data.y.cpu().tolist()
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                                    T.ToTensor(), T.Normalize(MEAN, STD)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def bench_trial(scale: Scale, runtime: Any) -> dict[str, Any]:
    """An epoch of ``hgsearch.train.train`` against a minimal loop doing the same steps."""
    import torch

    from hgsearch.config import TrialConfig
    from hgsearch.models import build_model
    from hgsearch.regularizers import hgsr_loss
    from hgsearch.train import SGDSettings, train

    cfg = TrialConfig()   # a trial's defaults: SGD recipe and HGSR setting
    settings = SGDSettings(epochs=1, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                           batch_size=scale.batch)

    def penalty(m: Any) -> Any:
        return hgsr_loss(m, reg=cfg.reg, levels=cfg.reg_levels, outer=cfg.reg_outer,
                         grouping=cfg.reg_grouping, lam=cfg.lam, mix=cfg.mix)

    data = _random_data(scale.epoch_steps * scale.batch, runtime)
    gen = torch.Generator().manual_seed(0)
    model = runtime.prepare(build_model(scale.arch, 10)).train()
    # the minimal loop's batches: ready-made, no augmentation, nothing but the step left
    batches = [(data.normalize(data.x[i:i + scale.batch]), data.y[i:i + scale.batch])
               for i in range(0, len(data), scale.batch)]

    def minimal() -> None:
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
        for x, y in batches:
            _sgd_step(model, optimizer, x, y, runtime, penalty)

    def in_trial() -> None:
        train(model, data, settings=settings, runtime=runtime, generator=gen, penalty=penalty,
              log=None)

    t = interleave({"minimal": minimal, "train": in_trial}, rounds=scale.rounds,
                   sync=_sync_for(runtime.device))
    figures = compare(t["train"], t["minimal"])
    figures["steps_per_epoch"] = len(batches)
    settings_out = {"arch": scale.arch, "batch": scale.batch, "steps": len(batches),
                    "reg": cfg.reg, "lam": cfg.lam, "lr": cfg.lr, "schedule": cfg.schedule}
    return {"settings": settings_out, "figures": figures,
            "definition": "seconds of one epoch of hgsearch.train.train (DeviceData batches, "
                          "lr schedule, loss and accuracy sums, divergence checks; HGSR penalty "
                          "on) / the same SGD steps with the penalty in a minimal loop over "
                          "ready-made batches"}


def bench_pruning(scale: Scale, runtime: Any) -> dict[str, Any]:
    """Latency of 50%-pruned networks (round_to 1 and 8) against the dense one."""
    import torch

    from hgsearch.metrics import count_macs, count_params, measure_latency
    from hgsearch.models import build_model
    from hgsearch.pruning import prune_model, select

    dense = build_model(scale.arch, 10).eval()
    gen = torch.Generator().manual_seed(0)
    scores = [torch.rand(w, generator=gen, dtype=torch.float64) for w in dense.widths]
    nets = {"dense": dense}
    for r in (1, 8):
        nets[f"round{r}"] = prune_model(dense, select(scores, ratio=0.5, round_to=r).keep)
    figures: dict[str, float] = {}
    for name, net in nets.items():
        if name != "dense":
            figures[f"params_ratio_{name}"] = count_params(net) / count_params(dense)
            figures[f"macs_ratio_{name}"] = count_macs(net, (32, 32)) / count_macs(dense,
                                                                                    (32, 32))
    for tag, batch in (("b1", 1), ("bN", scale.latency_batch)):
        repeats = scale.latency_repeats * (10 if batch == 1 else 1)   # batch 1: quick, noisy
        lat: dict[str, list[float]] = {name: [] for name in nets}
        for r in range(scale.rounds):
            for name in list(nets) if r % 2 == 0 else reversed(list(nets)):
                lat[name].append(measure_latency(
                    nets[name], input_size=(32, 32), batch_size=batch, device=runtime.device,
                    repeats=repeats, warmup=2, channels_last=runtime.channels_last,
                    dtype=runtime.autocast_dtype))
        for name in nets:
            figures[f"latency_{name}_{tag}_ms"] = 1000 * statistics.median(lat[name])
            if name != "dense":
                figures[f"speedup_{name}_{tag}"] = paired_ratio(lat["dense"], lat[name])
    return {"settings": {"arch": scale.arch, "ratio": 0.5, "target": "channels",
                         "round_to": [1, 8], "large_batch": scale.latency_batch,
                         "widths_round1": nets["round1"].widths,
                         "widths_round8": nets["round8"].widths},
            "figures": figures,
            "definition": "speedup: median eval-mode forward latency of the dense network / of "
                          "the pruned one (random scores, 50% of the channels, round_to 1 or 8), "
                          "at batch 1 (b1) and a large batch (bN)"}


def bench_sweep(scale: Scale, runtime: Any) -> dict[str, Any]:
    """A sweep of N equal trials against N trials run alone, divided by the concurrency."""
    try:
        from hgsearch.sweep import run_sweep
    except ImportError as err:
        return {"status": f"skipped: hgsearch.sweep cannot be imported ({err})"}
    import torch
    import yaml

    from hgsearch.trial import run_trial

    n, c = scale.sweep_trials, scale.sweep_concurrency
    gpu = runtime.device.type == "cuda"
    fixed = {**scale.sweep_trial, "device": runtime.device.type}
    space = {"fixed": fixed, "search": {"seed": {"choice": [0]}},   # N equal trials
             "objectives": {"acc_final": "max"}, "sampler": {"name": "random", "seed": 0},
             "num_samples": n, "max_concurrent": c, "retries": 0, "baseline": False,
             "resources": {"cpu": 1, "gpu": 1 / c if gpu else 0}}
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="hgsearch-bench-") as tmp:
        path = Path(tmp) / "space.yaml"
        path.write_text(yaml.safe_dump(space))

        def alone(tag: str) -> float:
            # as in a sweep worker: one thread per CPU asked for (sweep.py, _trainable)
            torch.set_num_threads(1)
            try:
                row = run_trial({**fixed, "seed": 0, "trial_id": f"alone-{tag}",
                                 "out_dir": str(Path(tmp) / "alone")}, log=None)
            finally:
                torch.set_num_threads(threads)
            return row["seconds_total"]

        before = alone("before")
        stamps: list[float] = []
        start = time.perf_counter()
        result = run_sweep(path, name="bench", results=Path(tmp) / "results", num_cpus=c,
                           log=lambda _line: stamps.append(time.perf_counter()))
        end = time.perf_counter()
        after = alone("after")
    rows = result.rows
    if not result.complete or len(rows) != n or set(rows["status"]) != {"ok"}:
        return {"status": f"failed: the sweep ended incomplete ({list(rows['status'])})"}
    trial_s = (before + after) / 2    # the sweep ran between the two
    in_sweep = float(rows["seconds_total"].median())
    ideal = n * trial_s / c
    wall = end - start
    figures = {
        "ratio": wall / ideal, "sweep_s": wall, "ideal_s": ideal, "trial_alone_s": trial_s,
        "fixed_cost_per_trial_s": (wall - ideal) * c / n,
        # where it goes: Ray's start and stop, concurrent trials slowing each other down, and
        # the rest of Tune's run outside run_trial (workers, imports, bookkeeping)
        "ray_start_s": stamps[0] - start, "ray_stop_s": end - stamps[-1],
        "trial_in_sweep_s": in_sweep, "contention_ratio": in_sweep / trial_s,
        "outside_trial_per_trial_s": ((stamps[-1] - stamps[0]) * c - n * in_sweep) / n,
    }
    return {"settings": {"trials": n, "concurrency": c, "trial": fixed},
            "figures": figures,
            "definition": "ratio: wall seconds of run_sweep (Ray start to shutdown) / (trials x "
                          "seconds of the same trial run alone in this process, 1 thread, "
                          "before and after the sweep / concurrency); fixed_cost_per_trial_s: "
                          "(sweep_s - ideal_s) x concurrency / trials; contention_ratio: "
                          "seconds of run_trial in the sweep (median) / alone; "
                          "outside_trial_per_trial_s: worker-seconds per trial of Tune's run "
                          "(first to last progress line) not spent in run_trial"}


def _bench_sweep_scale(scale: Scale, runtime: Any) -> dict[str, Any]:
    from hgsearch.bench_sweep_scale import bench_sweep_scale  # issue #10

    return bench_sweep_scale(scale, runtime)


_FUNCTIONS: dict[str, Callable[[Scale, Any], dict[str, Any]]] = {
    "hgsr": bench_hgsr, "scoring": bench_scoring, "data": bench_data, "trial": bench_trial,
    "pruning": bench_pruning, "sweep": bench_sweep, "sweep_scale": _bench_sweep_scale}


# --------------------------------------------------------------------------- the run

def run_benchmarks(*, device: str = "cpu", quick: bool = False, only: Sequence[str] = BENCHMARKS,
                   threads: int | None = None, tiny: bool = False,
                   log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Run the benchmarks named in ``only`` (in BENCHMARKS order) and return the report.

    A benchmark that raises is recorded as ``failed: ...`` and the others still run.
    ``threads``: torch's intra-op threads for the run (None: ``auto_threads()``), restored
    after.
    ``tiny`` shrinks everything below ``quick`` (the test suite's setting).
    """
    import torch

    from hgsearch.train import resolve_runtime

    unknown = [name for name in only if name not in BENCHMARKS]
    if unknown:
        raise UserError(f"--only {','.join(unknown)}: allowed values are {', '.join(BENCHMARKS)}")
    runtime = resolve_runtime(device)   # UserError when CUDA is asked for and absent
    scale = scale_for(quick=quick, tiny=tiny, device=runtime.device.type)
    log = log or (lambda _line: None)
    started, t0 = _now(), time.perf_counter()
    report: dict[str, Any] = {
        "format": FORMAT, "quick": quick or tiny, "tiny": tiny, "device": str(runtime.device),
        "precision": str(runtime.autocast_dtype or torch.float32).removeprefix("torch."),
        "channels_last": runtime.channels_last, "started_at": started,
        "scale": asdict(scale), "targets": {k: list(v) for k, v in TARGETS.items()}}
    with _threads(threads):
        report["machine"] = machine_info(runtime.device)
        report["versions"] = versions()
        report["benchmarks"] = {}
        for name in BENCHMARKS:
            if name not in only:
                report["benchmarks"][name] = {"status": "skipped: not in --only"}
                continue
            log(f"bench {name} ...")
            b0 = time.perf_counter()
            try:
                section = _FUNCTIONS[name](scale, runtime)
            except UserError:
                raise
            except Exception as err:   # one broken benchmark must not lose the others
                section = {"status": f"failed: {err.__class__.__name__}: {err}"[:500]}
            section.setdefault("status", "ok")
            section["seconds"] = time.perf_counter() - b0
            log(f"bench {name}: {section['status']} ({section['seconds']:.0f} s)")
            report["benchmarks"][name] = _judge(name, section)
    report["machine"]["load_average_end"] = _load_average()
    report["finished_at"] = _now()
    report["seconds"] = time.perf_counter() - t0
    return report


def _judge(name: str, section: dict[str, Any]) -> dict[str, Any]:
    """Add headline, target and whether it is met (None without a target or a figure)."""
    figure, op, value = TARGETS[name]
    got = section.get("figures", {}).get(figure)
    met = None
    if value is not None and got is not None and math.isfinite(got):
        met = bool(got <= value if op == "<=" else got >= value)
    return {"status": section["status"], "headline": figure,
            "target": None if value is None else f"{op} {value:g}", "met": met,
            **{k: v for k, v in section.items() if k != "status"}}


def auto_threads() -> int:
    """torch's default thread count, less the cores other processes keep busy (1-minute load
    average), at least 1. More threads than free cores make every parallel region wait for a
    descheduled thread: ResNet-20 at batch 1 measured 111 ms with 2 threads against 2.7 ms with
    1, on 2 cores at load 5.4."""
    import torch

    try:
        busy = round(os.getloadavg()[0])
    except (AttributeError, OSError):
        busy = 0
    return max(1, min(torch.get_num_threads(), _usable_cores() - busy))


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    if n is not None and n < 1:
        raise UserError(f"--threads {n}: expected an integer >= 1")
    torch.set_num_threads(n or auto_threads())
    try:
        yield
    finally:
        torch.set_num_threads(old)


def machine_info(device: Any) -> dict[str, Any]:
    """CPU model, cores, torch threads, GPU name (if any), load average, host, OS."""
    import torch

    gpu = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(device if device.type == "cuda" else 0)
    return {"host": socket.gethostname(), "cpu_model": _cpu_model(), "cores": os.cpu_count(),
            "cores_usable": _usable_cores(), "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(), "gpu": gpu,
            "platform": platform.platform(), "load_average_start": _load_average()}


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("hgsearch", "torch", "torchvision", "numpy", "ray", "optuna", "pandas",
                 "pyarrow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_report(report: dict[str, Any], folder: str | Path) -> Path:
    """Write ``folder/<host>-<UTC time>.json`` atomically (a temp file, then a rename)."""
    folder = Path(folder)
    host = re.sub(r"[^A-Za-z0-9._-]", "_", report["machine"]["host"]) or "host"
    stamp = datetime.fromisoformat(report["started_at"]).strftime("%Y%m%d-%H%M%S")
    path = folder / f"{host}-{stamp}.json"
    text = json.dumps(_finite_or_none(report), indent=1, allow_nan=False) + "\n"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        raise UserError(f"--out {folder}: cannot write the report there ({err.strerror})") \
            from None
    return path


def _finite_or_none(value: Any) -> Any:
    """Strict JSON: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def format_table(report: dict[str, Any]) -> list[str]:
    """One line per benchmark: headline figure, target, met, and what it compares."""
    rows = [("benchmark", "figure", "value", "target", "met", "detail")]
    for name, b in report["benchmarks"].items():
        if b["status"] != "ok":
            rows.append((name, "", "", "", "", b["status"]))
            continue
        f = b["figures"]
        value = f[b["headline"]]
        met = "" if b["met"] is None else ("yes" if b["met"] else "NO")
        rows.append((name, b["headline"], f"{value:.4g}", b["target"] or "-", met,
                     _detail(name, f)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[5] for r in rows]


def _detail(name: str, f: dict[str, float]) -> str:
    if name == "hgsr":
        return f"step {f['plain_step_s']:.3g} s -> {f['hgsr_step_s']:.3g} s (cpu ratio " \
               f"{f.get('cpu_ratio', math.nan):.3f})"
    if name == "scoring":
        return f"reference {f['reference_s']:.3g} s / fast {f['fast_s']:.3g} s; " \
               f"{f['filters_per_forward']:.3g} filters per forward time"
    if name == "data":
        return f"{1e3 * f['device_batch_s']:.3g} ms/batch vs step {f['step_s']:.3g} s; " \
               f"DataLoader {1e3 * f['loader_batch_s']:.3g} ms/batch " \
               f"({f['loader_share_of_step']:.2%} of a step)"
    if name == "trial":
        return f"epoch {f['subject_s']:.3g} s vs minimal loop {f['reference_s']:.3g} s"
    if name == "pruning":
        return f"b1 x{f['speedup_round1_b1']:.2f} (round_to 8: x{f['speedup_round8_b1']:.2f}), " \
               f"bN round_to 8: x{f['speedup_round8_bN']:.2f}; MACs x" \
               f"{f['macs_ratio_round1']:.2f}"
    if name == "sweep_scale":
        return f"driver CPU {f['small_cpu_per_trial_s']:.3g} s/trial small vs " \
               f"{f['large_cpu_per_trial_s']:.3g} s/trial large sweep"
    return f"sweep {f['sweep_s']:.3g} s vs ideal {f['ideal_s']:.3g} s; fixed cost " \
           f"{f['fixed_cost_per_trial_s']:.3g} s/trial (Ray start {f['ray_start_s']:.3g} s, " \
           f"trials x{f['contention_ratio']:.2f} slower side by side, " \
           f"{f['outside_trial_per_trial_s']:.3g} s/trial outside run_trial)"


# --------------------------------------------------------------------------- command line

def register_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="time the hot paths against their references; "
                                            "writes results/bench/<host>-<time>.json")
    p.add_argument("--device", choices=("cpu", "cuda"),
                   help="where to run (default: cuda when present, else cpu)")
    p.add_argument("--quick", action="store_true",
                   help="smaller networks and fewer repeats: 1-2 minutes on two CPU cores")
    p.add_argument("--out", metavar="DIR", default="results/bench",
                   help="folder of the JSON report (default results/bench)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch intra-op threads (default: one per core that the load "
                        "average leaves free, at least 1)")
    p.add_argument("--only", metavar="NAME[,NAME]",
                   help="run only these benchmarks: " + ", ".join(BENCHMARKS))
    # --suite: which measurements. gpu: hgsearch/bench_gpu/ (cluster/gpu_check.sh calls it);
    # quality: hgsearch/bench_quality.py (accuracy, not time; it takes long).
    p.add_argument("--suite", choices=("hot", "gpu", "quality"), default="hot",
                   help="hot: the hot paths against their references (default); gpu: "
                        "throughput per precision and compile, trials sharing a GPU, scoring "
                        "against float64, pruned latency, a real sweep (--only: their parts); "
                        "quality: criteria x regularizers, accuracy after pruning (takes long)")
    p.set_defaults(func=bench_command)


def bench_command(args: argparse.Namespace) -> int:
    """Run, print the table, write the report; exit 1 when a benchmark failed."""
    if getattr(args, "suite", "hot") == "gpu":
        from hgsearch.bench_gpu import gpu_command

        return gpu_command(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    only = BENCHMARKS if not args.only else tuple(s.strip() for s in args.only.split(","))
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if getattr(args, "suite", "hot") == "quality":
        from hgsearch.bench_quality import quality_command

        return quality_command(device=device, quick=args.quick, out=out, threads=args.threads)
    report = run_benchmarks(device=device, quick=args.quick, only=only, threads=args.threads)
    for line in format_table(report):
        print(line)
    path = write_report(report, out)
    load = report["machine"]["load_average_start"]
    threads = report["machine"]["torch_threads"]
    print(f"{report['seconds']:.0f} s on {report['machine']['cpu_model']} ({threads} torch "
          f"thread{'s' if threads != 1 else ''}, load average {load}); written to {path}")
    failed = [n for n, b in report["benchmarks"].items() if b["status"].startswith("failed")]
    return 1 if failed else 0
