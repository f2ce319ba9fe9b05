"""The scorers on the device with TF32 off, checked against the same scoring on the CPU in float64.

Speed: ``measure_scoring_speedup`` (bench/scoring.py: fast vs reference scorer, ABBA rounds) with
TF32 convolutions and matmuls off, as scoring should run: a delta is the difference of two
cross-entropies and TF32's 10-bit mantissa can drown a near-dead filter's (issue #12).

Accuracy: the fast scorer's deltas on the device (TF32 off, and again with TF32 on) against
``loss_increase`` on the CPU in float64 (one whole masked forward per filter: the slow, plain
definition) for ``cpu64_filters`` filters: half spread over all blocks, half those with the
smallest |delta| on the device (the ones pruning removes first). All ``score_samples`` samples.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 for cuDNN convolutions and CUDA matmuls on or off, restored after."""
    import torch

    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def checked_filters(deltas: list[Any], k: int) -> list[tuple[int, int]]:
    """k filters (block, channel): k - k // 2 spread evenly, then the smallest |delta| ones."""
    import torch

    filters = [(b, c) for b, d in enumerate(deltas) for c in range(len(d))]
    k = min(k, len(filters))
    spread = k - k // 2
    chosen = [filters[int(i * len(filters) / spread)] for i in range(spread)]
    flat = torch.cat([d.abs() for d in deltas])
    for i in torch.argsort(flat, stable=True).tolist():
        if len(chosen) == k:
            break
        if filters[i] not in chosen:
            chosen.append(filters[i])
    return chosen


def bench_scoring_cuda(scale: Any, runtime: Any, log: Any) -> dict[str, Any]:
    """Speed-up of the fast scorer and its deltas' distance from float64 CPU ones."""
    import torch

    from hgsearch.bench.scoring import measure_scoring_speedup
    from hgsearch.models import build_model
    from hgsearch.pruning.scoring import loss_increase, mean_ce, score_filters

    device = runtime.device
    with tf32(False):
        r = measure_scoring_speedup(scale.arch, scale.score_samples,
                                    batch_size=scale.score_batch,
                                    reference_filters=scale.score_reference_filters,
                                    rounds=scale.score_rounds, device=str(device))
    log(f"  fast vs reference: x{r['speedup']:.2f}")
    gen = torch.Generator().manual_seed(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = build_model(scale.arch, 10).eval()
    x = torch.randn(scale.score_samples, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (scale.score_samples,), generator=gen)
    on_device = model.to(device)
    deltas = {}
    for name, enabled in (("tf32_off", False), ("tf32_on", True)):
        with tf32(enabled):
            deltas[name] = score_filters(on_device, x.to(device), y.to(device),
                                         batch_size=scale.score_batch)
    chosen = checked_filters(deltas["tf32_off"], scale.cpu64_filters)
    cpu = on_device.to("cpu", torch.float64)
    x64 = x.double()
    base = mean_ce(cpu, x64, y, batch_size=scale.score_batch)
    exact = [loss_increase(cpu, x64, y, block=b, channel=c, base=base,
                           batch_size=scale.score_batch) for b, c in chosen]
    log(f"  {len(chosen)} filters scored on the CPU in float64")
    largest = max(float(d.abs().max()) for d in deltas["tf32_off"])
    low = chosen[len(chosen) - len(chosen) // 2:]   # the smallest-|delta| picks
    figures = {k: r[k] for k in ("speedup", "fast_s", "reference_s",
                                 "max_diff_rel_to_max_delta", "pairs_per_s",
                                 "filters_per_forward")}
    for name, d in deltas.items():
        diffs = [abs(float(d[b][c]) - e) for (b, c), e in zip(chosen, exact)]
        figures[f"{name}_max_abs_diff_vs_cpu64"] = max(diffs)
        figures[f"{name}_max_diff_rel_to_max_delta_vs_cpu64"] = max(diffs) / largest
        near = [abs(float(d[b][c]) - e) for (b, c), e in zip(chosen, exact) if (b, c) in low]
        figures[f"{name}_low_delta_max_abs_diff_vs_cpu64"] = max(near, default=0.0)
    figures["max_abs_delta"] = largest
    figures["low_delta_max_abs_cpu64"] = max((abs(e) for (b, c), e in zip(chosen, exact)
                                              if (b, c) in low), default=0.0)
    settings = {"arch": scale.arch, "samples": scale.score_samples,
                "batch_size": scale.score_batch, "rounds": scale.score_rounds,
                "filters": r["filters"], "reference_filters_timed": r["reference_filters_timed"],
                "reference_estimated": r["reference_estimated"],
                "speed_tf32": False, "cpu64_filters": chosen,
                "cpu64_low_delta_filters": low}
    return {"settings": settings, "figures": figures,
            "definition": "speedup: seconds of score_filters_reference / of score_filters on "
                          "the same samples, TF32 off (bench/scoring.py); max_diff_rel_to_max_"
                          "delta: fast vs reference on the device; *_vs_cpu64: the fast "
                          "scorer's deltas on the device (TF32 off / on) against loss_increase "
                          "in float64 on the CPU, on the same network and samples, for the "
                          "filters in settings.cpu64_filters; low_delta_max_abs_diff: the "
                          "largest |difference| among the smallest-delta ones "
                          "(settings.cpu64_low_delta_filters), whose float64 deltas are at most "
                          "low_delta_max_abs_cpu64 in size"}
