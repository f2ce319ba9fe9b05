"""What HGSR costs per training step: the same SGD step timed with and without the penalty.

``hgsearch bench`` calls ``measure_overhead``; METHOD.md part 1 gives the penalty, and the budget
for it is 5% of a step (ResNet-56, batch 128).
"""

from __future__ import annotations

import itertools
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from hgsearch.models import build_model
from hgsearch.regularizers import GROUPINGS, LEVELS, OUTERS, hgsr_loss
from hgsearch.train import resolve_runtime

REFERENCE = {"reg": "group_l12", "levels": 2, "outer": "square", "grouping": "input",
             "lam": 1e-3, "mix": 0.5}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_overhead(arch: str = "resnet56", batch: int = 128, steps: int = 10, *,
                     warmup: int = 2, reg: str = "group_l12", levels: int = 2,
                     outer: str = "square", grouping: str = "input", lam: float = 1e-3,
                     mix: float = 0.5, device: str = "cpu", image_size: int = 32,
                     seed: int = 0) -> dict[str, Any]:
    """Seconds of an SGD step (forward, backward, update) without and with HGSR; their ratio.

    The two variants alternate in ABBA order on one model and ``ratio`` is the median of the
    ratios of neighbouring pairs, so drift in machine load hits both alike. On CPU the same is
    also measured in process CPU time (``cpu_ratio``), which other processes on a shared machine
    disturb far less than wall time. ``penalty_s`` times ``hgsr_loss`` forward + backward alone.
    Random images and labels: only the time is of interest. On CUDA the forward runs as in a
    trial: bf16 autocast, channels_last (``hgsearch.train.resolve_runtime``).
    """
    torch.manual_seed(seed)
    runtime = resolve_runtime(device)
    dev = runtime.device
    model = runtime.prepare(build_model(arch, 10)).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, image_size, image_size, device=dev)
    if runtime.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=dev)
    opts = dict(reg=reg, levels=levels, outer=outer, grouping=grouping, lam=lam, mix=mix)

    def timed(fn: Callable[[], None]) -> tuple[float, float]:
        _sync(dev)
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        _sync(dev)
        return time.perf_counter() - wall, time.process_time() - cpu

    def step(with_hgsr: bool) -> None:
        opt.zero_grad(set_to_none=True)
        with runtime.autocast():
            loss = F.cross_entropy(model(x).float(), y)
        if with_hgsr:
            loss = loss + hgsr_loss(model, **opts)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step(False)
        step(True)
    plain, hgsr = [], []
    for i in range(steps):
        for with_hgsr in ((False, True) if i % 2 == 0 else (True, False)):
            (hgsr if with_hgsr else plain).append(timed(lambda h=with_hgsr: step(h)))
    penalty = [timed(lambda: hgsr_loss(model, **opts).backward()) for _ in range(max(steps, 20))]
    med = statistics.median
    return {
        "arch": arch, "batch": batch, "steps": steps, "image_size": image_size, **opts,
        "device": str(dev), "torch_threads": torch.get_num_threads(),
        "precision": str(runtime.autocast_dtype or torch.float32).removeprefix("torch."),
        "channels_last": runtime.channels_last,
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "plain_step_s": med(t for t, _ in plain), "hgsr_step_s": med(t for t, _ in hgsr),
        "ratio": med(b[0] / a[0] for a, b in zip(plain, hgsr)),
        # on CUDA the host's CPU time is launch and wait, not the work
        "cpu_ratio": med(b[1] / a[1] for a, b in zip(plain, hgsr)) if dev.type == "cpu" else None,
        "penalty_s": med(t for t, _ in penalty),
        "penalty_share": med(t for t, _ in penalty) / med(t for t, _ in plain),
    }


def penalty_times(arch: str = "resnet56", *, repeats: int = 20,
                  device: str = "cpu") -> dict[str, float]:
    """Median seconds of ``hgsr_loss`` forward + backward for every variant, keyed reg-levels-...

    Shows which variant is the most expensive; mix=0.5 so both terms are computed.
    """
    dev = torch.device(device)
    model = build_model(arch, 10).to(dev)
    variants = [v for v in itertools.product(("l1", "group_lasso", "exclusive", "group_l12"),
                                             LEVELS, OUTERS, GROUPINGS)
                if not (v[1] == 1 and v[2] == "square")]   # outer is unused at level 1
    samples: dict[str, list[float]] = {}
    # round-robin over the variants, so that drift in machine load hits all alike
    for r in range(repeats + 2):
        for reg, levels, outer, grouping in variants:
            _sync(dev)
            t0 = time.perf_counter()
            hgsr_loss(model, reg=reg, levels=levels, outer=outer, grouping=grouping,
                      lam=1e-3, mix=0.5).backward()
            _sync(dev)
            if r >= 2:   # warm-up
                key = f"{reg}-{levels}-{outer}-{grouping}"
                samples.setdefault(key, []).append(time.perf_counter() - t0)
    return {key: statistics.median(ts) for key, ts in samples.items()}
