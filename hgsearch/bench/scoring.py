"""Benchmark ``scoring``: how much faster ``score_filters`` is than the one-forward-per-filter
reference.

The reference's cost is the same for every filter (one full forward of the sample), so by default
it is timed on a few filters spread over the blocks and scaled to all of them. The fast scorer's
cost is linear in the samples as long as every forward has the same number of rows (it stacks
``batch_size // samples`` removals into one forward), so on a slow machine it may be timed on
``fast_samples`` of them with the same ``batch_size`` and scaled. Both score a freshly
initialized network on random images; fast and reference alternate in ABBA order over
``rounds`` and the speed-up is the median of the rounds' paired ratios.
"""

from __future__ import annotations

import platform
import statistics
from typing import TYPE_CHECKING, Any

from hgsearch.bench.harness import Benchmark, Clock, Scale, Target, interleave, sync_for

if TYPE_CHECKING:
    from hgsearch.models import ResNet


def measure_scoring_speedup(arch: str = "resnet56", samples: int = 512, *, batch_size: int = 512,
                            num_classes: int = 10, input_size: tuple[int, int] = (32, 32),
                            reference_filters: int | None = 27, fast_samples: int | None = None,
                            rounds: int = 1, device: str = "cpu",
                            seed: int = 0) -> dict[str, Any]:
    """Seconds of both scorers on ``samples`` images, their ratio and the fast one's throughput.

    ``reference_filters``: how many filters the reference is timed on per round (None: all, which
    takes (filters + 1) full forwards). ``fast_samples``: how many of the samples the fast scorer
    is timed on (None: all). Times are wall seconds (``*_s``) and this process's CPU seconds
    (``*_cpu_s``, steadier when other jobs share the cores), medians over ``rounds``. Also reports
    the largest difference between the two scorers' deltas on the timed filters (on the fast
    scorer's samples), relative to the largest |delta|.

    Throughput: ``pairs_per_s`` (images x filters scored per second by the fast scorer) against
    ``inference_images_per_s`` (eval-mode forward of the sample, ``batch_size`` images per
    forward); ``filters_per_forward`` is their ratio: how many filters the fast scorer scores in
    the time of one plain forward of the sample (the reference scores fewer than 1).
    ``ideal_filters_per_forward`` is the same for a scorer that does no work but the forward of
    the blocks after the removed filter (by MACs), and ``efficiency`` the measured share of it.
    """
    import torch

    from hgsearch.models import build_model
    from hgsearch.pruning.scoring import loss_increase, mean_ce, score_filters

    if rounds < 1:
        raise ValueError(f"rounds={rounds}: must be at least 1")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(arch, num_classes).to(device).eval()
    x = torch.randn(samples, 3, *input_size, generator=gen).to(device)
    y = torch.randint(0, num_classes, (samples,), generator=gen).to(device)
    filters = [(b, c) for b, w in enumerate(model.widths) for c in range(w)]
    timed = filters
    if reference_filters is not None and reference_filters < len(filters):
        step = len(filters) / reference_filters
        timed = [filters[int(i * step)] for i in range(reference_filters)]
    n_fast = samples if fast_samples is None else max(1, min(fast_samples, samples))
    sync = sync_for(torch.device(device))
    clock = Clock(sync)
    fast: list = []
    ref_times, forwards, ref_deltas = [], [], []

    def run_fast() -> None:
        fast[:] = score_filters(model, x[:n_fast], y[:n_fast], batch_size=batch_size)

    def run_reference() -> None:
        clock.lap()
        base = mean_ce(model, x, y, batch_size=batch_size)
        base_s = clock.lap()
        per_filter = []
        ref_deltas[:] = []
        for b, c in timed:
            ref_deltas.append(loss_increase(model, x, y, block=b, channel=c, base=base,
                                            batch_size=batch_size))
            per_filter.append(clock.lap())
        # Every filter costs one full forward of the sample: scale the mean to all of them.
        ref_times.append(tuple(once + len(filters) * sum(each) / len(each)
                               for once, *each in zip(base_s, *per_filter)))
        forwards.extend(w for w, _ in (base_s, *per_filter))

    # the reference's own laps time it; the fast scorer's time is scaled to all samples
    times = interleave({"fast": run_fast, "ref": run_reference}, rounds=rounds, warmup=0,
                       sync=sync)
    fast_times = [tuple(v * samples / n_fast for v in t) for t in times["fast"]]
    if n_fast == samples:
        diffs = [abs(d - float(fast[b][c])) for (b, c), d in zip(timed, ref_deltas)]
    else:   # the fast scores are of the first n_fast samples: check the reference on those
        base = mean_ce(model, x[:n_fast], y[:n_fast], batch_size=batch_size)
        diffs = [abs(loss_increase(model, x[:n_fast], y[:n_fast], block=b, channel=c, base=base,
                                   batch_size=batch_size) - float(fast[b][c]))
                 for b, c in timed]
    scale = max(float(s.abs().max()) for s in fast)
    return _speedup_figures(model, fast_times, ref_times, forwards, diffs, scale, arch=arch,
                            samples=samples, batch_size=batch_size, device=device,
                            input_size=input_size, filters=len(filters), rounds=rounds,
                            timed=len(timed), n_fast=n_fast)


def _speedup_figures(model: ResNet, fast_times: list, ref_times: list, forwards: list[float],
                     diffs: list[float], scale: float, *, arch: str, samples: int,
                     batch_size: int, device: str, input_size: tuple[int, int], filters: int,
                     rounds: int, timed: int, n_fast: int) -> dict[str, Any]:
    """measure_scoring_speedup's record from its raw (wall, CPU) times and delta differences."""
    import torch

    med = statistics.median
    fast_s, ref_s = med(t[0] for t in fast_times), med(t[0] for t in ref_times)
    forward_s = med(forwards)
    ideal = filters / sum(w * share for w, share in zip(model.widths,
                                                        suffix_shares(model, input_size)))
    per_forward = filters * forward_s / fast_s
    return {
        "arch": arch, "samples": samples, "batch_size": batch_size, "device": str(device),
        "input_size": list(input_size), "filters": filters, "rounds": rounds,
        "fast_s": fast_s, "reference_s": ref_s,
        "speedup": med(r[0] / f[0] for f, r in zip(fast_times, ref_times)),
        "fast_cpu_s": med(t[1] for t in fast_times),
        "reference_cpu_s": med(t[1] for t in ref_times),
        "speedup_cpu": med(r[1] / f[1] for f, r in zip(fast_times, ref_times)),
        "reference_estimated": timed < filters, "reference_filters_timed": timed,
        "fast_estimated": n_fast < samples, "fast_samples_timed": n_fast,
        "max_diff_rel_to_max_delta": max(diffs) / scale if scale > 0 else max(diffs),
        "forward_s": forward_s, "inference_images_per_s": samples / forward_s,
        "pairs_per_s": samples * filters / fast_s,
        "filters_per_forward": per_forward, "ideal_filters_per_forward": ideal,
        "efficiency": per_forward / ideal,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }


def suffix_shares(model: ResNet, input_size: tuple[int, int]) -> list[float]:
    """Per block b, the share of a forward's MACs in blocks b+1.. and the head.

    The least a loss-increase scorer must recompute per filter of block b: everything before and
    in block b is unchanged or linear in the removed channel (see pruning/scoring.py).
    """
    import torch
    from torch import nn

    owner = {m: i for i, block in enumerate(model.blocks) for m in block.modules()}
    macs = [0] * (len(model.blocks) + 2)   # stem, blocks..., head

    def hook(module: Any, _inputs: tuple, out: Any) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            per = module.in_channels // module.groups * kh * kw
        else:
            per = module.in_features
        slot = owner[module] + 1 if module in owner else (0 if module in model.stem.modules()
                                                          else len(macs) - 1)
        macs[slot] += out[0].numel() * per

    kinds = (nn.Conv2d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    param = next(model.parameters())
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size, device=param.device, dtype=param.dtype))
    finally:
        for handle in handles:
            handle.remove()
    total = sum(macs)
    return [sum(macs[b + 2:]) / total for b in range(len(model.blocks))]


def bench_scoring(scale: Scale, runtime: Any) -> dict[str, Any]:
    """The ``scoring`` section: the fast scorer against the reference scorer."""
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
    return {"settings": settings, "figures": {k: r[k] for k in keys}}


def _detail(f: dict[str, float]) -> str:
    return f"reference {f['reference_s']:.3g} s / fast {f['fast_s']:.3g} s; " \
           f"{f['filters_per_forward']:.3g} filters per forward time"


BENCHMARK = Benchmark("scoring", Target("speedup", ">=", 2.0), bench_scoring, _detail, """
    seconds of score_filters_reference / of score_filters on the same samples (reference: one
    full forward per filter, timed on a few and scaled; fast: scaled from fast_samples_timed
    when estimated); pairs_per_s: images x filters scored per second; filters_per_forward:
    pairs_per_s / plain eval-forward images per second, i.e. filters scored in the time of one
    forward of the sample""")
