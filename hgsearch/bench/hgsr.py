"""Benchmark ``hgsr``: the same SGD step timed with and without the HGSR penalty.

docs/method.md part 1 gives the penalty; the budget for it is 5% of a step (ResNet-56, batch 128).
"""

from __future__ import annotations

import itertools
import math
import platform
import statistics
from typing import Any

from hgsearch.bench.harness import Benchmark, Scale, Target, interleave, sync_for


def measure_overhead(arch: str = "resnet56", batch: int = 128, steps: int = 10, *,
                     warmup: int = 2, reg: str = "group_l12", levels: int = 2,
                     outer: str = "square", grouping: str = "input", lam: float = 1e-3,
                     mix: float = 0.5, device: str = "cpu", image_size: int = 32,
                     seed: int = 0) -> dict[str, Any]:
    """Seconds of an SGD step (forward, backward, update) without and with HGSR; their ratio.

    The two variants alternate in ABBA order on one model and ``ratio`` is the median of the
    ratios of neighbouring pairs, so drift in machine load hits both alike. On CPU the same is
    also measured in process CPU time (``cpu_ratio``), which other processes on a shared machine
    disturb far less than wall time. ``penalty_s`` times the penalty's forward + backward alone
    (a ``Regularizer`` built once, as a trial's is).
    Random images and labels: only the time is of interest. On CUDA the forward runs as in a
    trial: bf16 autocast, channels_last (``hgsearch.runtime.resolve_runtime``).
    """
    import torch

    from hgsearch.bench.workload import plain_optimizer, sgd_step
    from hgsearch.models import build_model
    from hgsearch.regularizers import Regularizer
    from hgsearch.runtime import resolve_runtime

    torch.manual_seed(seed)
    runtime = resolve_runtime(device)
    dev = runtime.device
    model = runtime.prepare(build_model(arch, 10)).train()
    opt = plain_optimizer(model)
    x = torch.randn(batch, 3, image_size, image_size, device=dev)
    if runtime.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=dev)
    opts = dict(reg=reg, levels=levels, outer=outer, grouping=grouping, lam=lam, mix=mix)

    penalty = Regularizer(model, **opts).penalty

    sync = sync_for(dev)
    t = interleave({"plain": lambda: sgd_step(model, opt, x, y, runtime),
                    "hgsr": lambda: sgd_step(model, opt, x, y, runtime, penalty)},
                   rounds=steps, warmup=warmup, sync=sync)
    plain, hgsr = t["plain"], t["hgsr"]
    penalty_t = interleave({"penalty": lambda: penalty(model).backward()},
                           rounds=max(steps, 20), warmup=0, sync=sync)["penalty"]
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
        "penalty_s": med(w for w, _ in penalty_t),
        "penalty_share": med(w for w, _ in penalty_t) / med(w for w, _ in plain),
    }


def penalty_times(arch: str = "resnet56", *, repeats: int = 20,
                  device: str = "cpu") -> dict[str, float]:
    """Median seconds of the penalty's forward + backward for every variant (a ``Regularizer``
    built once per variant, as in a trial), keyed reg-levels-...

    Shows which variant is the most expensive; mix=0.5 so both terms are computed. The variants
    alternate (ABBA) after two warm-up rounds, so that drift in machine load hits all alike.
    """
    import torch

    from hgsearch.models import build_model
    from hgsearch.regularizers import GROUPINGS, LEVELS, OUTERS, Regularizer

    dev = torch.device(device)
    model = build_model(arch, 10).to(dev)
    variants = [v for v in itertools.product(("l1", "group_lasso", "exclusive", "group_l12"),
                                             LEVELS, OUTERS, GROUPINGS)
                if not (v[1] == 1 and v[2] == "square")]   # outer is unused at level 1
    penalties = {"-".join(map(str, v)): Regularizer(
        model, reg=v[0], levels=v[1], outer=v[2], grouping=v[3], lam=1e-3, mix=0.5).penalty
        for v in variants}
    calls = {key: (lambda f=f: f(model).backward()) for key, f in penalties.items()}
    times = interleave(calls, rounds=repeats, warmup=2, sync=sync_for(dev))
    return {key: statistics.median(w for w, _ in t) for key, t in times.items()}


def bench_hgsr(scale: Scale, runtime: Any) -> dict[str, Any]:
    """The ``hgsr`` section: HGSR overhead per SGD step."""
    r = measure_overhead(scale.arch, scale.batch, steps=scale.rounds, warmup=1,
                         device=str(runtime.device))
    figures = {k: r[k] for k in ("ratio", "cpu_ratio", "plain_step_s", "hgsr_step_s",
                                 "penalty_s", "penalty_share") if r[k] is not None}
    settings = {k: r[k] for k in ("arch", "batch", "reg", "levels", "outer", "grouping", "lam",
                                  "mix", "precision", "channels_last")}
    return {"settings": settings, "figures": figures}


def _detail(f: dict[str, float]) -> str:
    return f"step {f['plain_step_s']:.3g} s -> {f['hgsr_step_s']:.3g} s (cpu ratio " \
           f"{f.get('cpu_ratio', math.nan):.3f})"


BENCHMARK = Benchmark("hgsr", Target("ratio", "<=", 1.05), bench_hgsr, _detail, """
    seconds of an SGD step (forward, backward, update) with the HGSR penalty / without it;
    penalty_share: penalty forward + backward alone / plain step""")
