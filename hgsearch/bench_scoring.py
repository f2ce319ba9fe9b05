"""How much faster ``score_filters`` is than the one-forward-per-filter reference.

The reference's cost is the same for every filter (one full forward of the sample), so by default
it is timed on a few filters spread over the blocks and scaled to all of them; the fast scorer
always runs in full. Both score a freshly initialized network on random images.
"""

from __future__ import annotations

import platform
import time
from typing import Any

import torch

from hgsearch.models import build_model
from hgsearch.pruning.scoring import loss_increase, mean_ce, score_filters


def measure_scoring_speedup(arch: str = "resnet56", samples: int = 512, *, batch_size: int = 512,
                            num_classes: int = 10, input_size: tuple[int, int] = (32, 32),
                            reference_filters: int | None = 27, device: str = "cpu",
                            seed: int = 0) -> dict[str, Any]:
    """Seconds of both scorers on ``samples`` images and their ratio.

    ``reference_filters``: how many filters the reference is timed on (None: all, which takes
    (filters + 1) full forwards). Times are wall seconds (``*_s``) and this process's CPU
    seconds (``*_cpu_s``, steadier when other jobs share the cores). Also reports the largest
    difference between the two scorers' deltas on the timed filters, relative to the largest
    |delta|.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(arch, num_classes).to(device).eval()
    x = torch.randn(samples, 3, *input_size, generator=gen).to(device)
    y = torch.randint(0, num_classes, (samples,), generator=gen).to(device)
    widths = list(model.widths)
    filters = [(b, c) for b, w in enumerate(widths) for c in range(w)]
    timed = filters
    if reference_filters is not None and reference_filters < len(filters):
        step = len(filters) / reference_filters
        timed = [filters[int(i * step)] for i in range(reference_filters)]

    clock = _Clock()
    fast = score_filters(model, x, y, batch_size=batch_size)
    fast_s = clock.lap()

    base = mean_ce(model, x, y, batch_size=batch_size)
    base_s = clock.lap()
    per_filter, diffs = [], []
    for b, c in timed:
        delta = loss_increase(model, x, y, block=b, channel=c, base=base, batch_size=batch_size)
        per_filter.append(clock.lap())
        diffs.append(abs(delta - float(fast[b][c])))
    # Every filter costs one full forward of the sample: scale the mean to all of them.
    reference_s = tuple(once + len(filters) * sum(each) / len(each)
                        for once, *each in zip(base_s, *per_filter))
    scale = max(float(s.abs().max()) for s in fast)
    return {
        "arch": arch, "samples": samples, "batch_size": batch_size, "device": str(device),
        "input_size": list(input_size), "filters": len(filters),
        "fast_s": fast_s[0], "reference_s": reference_s[0], "speedup": reference_s[0] / fast_s[0],
        "fast_cpu_s": fast_s[1], "reference_cpu_s": reference_s[1],
        "speedup_cpu": reference_s[1] / fast_s[1],
        "reference_estimated": len(timed) < len(filters), "reference_filters_timed": len(timed),
        "max_diff_rel_to_max_delta": max(diffs) / scale if scale > 0 else max(diffs),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }


class _Clock:
    """Wall and process-CPU seconds since the last lap."""

    def __init__(self) -> None:
        self.last = (time.perf_counter(), time.process_time())

    def lap(self) -> tuple[float, float]:
        now = (time.perf_counter(), time.process_time())
        wall, cpu = now[0] - self.last[0], now[1] - self.last[1]
        self.last = now
        return wall, cpu
