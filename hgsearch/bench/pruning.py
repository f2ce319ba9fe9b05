"""Benchmark ``pruning``: latency of the dense network against 50%-pruned ones.

The pruned networks are real compact ones (``prune_model``), 50% of the inner channels removed
by random scores with every block's width a multiple of ``round_to``. Measured as a trial
measures (``measure_latency``: eval mode, the trial's precision and memory format, a synchronize
after each forward), the networks alternating ABBA over rounds. The GPU suite's pruning part
(gpu/latency.py) runs the same code at more batch sizes and ``round_to`` values.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hgsearch.bench.harness import Benchmark, Scale, Target, abba, paired_ratio


def pruned_nets(arch: str, round_to: Sequence[int]) -> dict[str, Any]:
    """``dense`` and ``round<r>`` per r: 50% of the channels removed by random scores."""
    import torch

    from hgsearch.models import build_model
    from hgsearch.pruning import prune_model, select_filters

    dense = build_model(arch, 10).eval()
    gen = torch.Generator().manual_seed(0)
    scores = [torch.rand(w, generator=gen, dtype=torch.float64) for w in dense.widths]
    nets = {"dense": dense}
    for r in round_to:
        nets[f"round{r}"] = prune_model(dense, select_filters(scores, ratio=0.5, round_to=r).keep)
    return nets


def latency_figures(nets: dict[str, Any], runtime: Any, *, batches: Mapping[str, int],
                    rounds: int, repeats: int, batch1_factor: int, warmup: int,
                    log: Callable[[str], None] = lambda _line: None) -> dict[str, float]:
    """Size ratios of every pruned net, and per batch (``batches``: tag -> images) each net's
    median latency in ms and the dense / pruned paired ratio. Batch 1 is quick and noisy: it
    gets ``batch1_factor`` times the forwards."""
    from hgsearch.metrics import count_macs, count_params, measure_latency

    dense = nets["dense"]
    figures: dict[str, float] = {}
    for name, net in nets.items():
        if name != "dense":
            figures[f"params_ratio_{name}"] = count_params(net) / count_params(dense)
            figures[f"macs_ratio_{name}"] = (count_macs(net, (32, 32))
                                             / count_macs(dense, (32, 32)))
    for tag, batch in batches.items():
        lat: dict[str, list[float]] = {name: [] for name in nets}
        for name in abba(list(nets), rounds):
            lat[name].append(measure_latency(
                nets[name], input_size=(32, 32), batch_size=batch, device=runtime.device,
                repeats=repeats * (batch1_factor if batch == 1 else 1), warmup=warmup,
                channels_last=runtime.channels_last, dtype=runtime.autocast_dtype))
        for name in nets:
            figures[f"latency_{name}_{tag}_ms"] = 1000 * statistics.median(lat[name])
            if name != "dense":
                figures[f"speedup_{name}_{tag}"] = paired_ratio(lat["dense"], lat[name])
        log(f"  batch {batch}: " + ", ".join(
            f"{n} {figures[f'latency_{n}_{tag}_ms']:.3g} ms" for n in nets))
    return figures


def bench_pruning(scale: Scale, runtime: Any) -> dict[str, Any]:
    """Latency of 50%-pruned networks (round_to 1 and 8) against the dense one."""
    nets = pruned_nets(scale.arch, (1, 8))
    figures = latency_figures(nets, runtime, batches={"b1": 1, "bN": scale.latency_batch},
                              rounds=scale.rounds, repeats=scale.latency_repeats,
                              batch1_factor=10, warmup=2)
    return {"settings": {"arch": scale.arch, "ratio": 0.5, "target": "channels",
                         "round_to": [1, 8], "large_batch": scale.latency_batch,
                         "widths_round1": nets["round1"].widths,
                         "widths_round8": nets["round8"].widths},
            "figures": figures}


def _detail(f: dict[str, float]) -> str:
    return f"b1 x{f['speedup_round1_b1']:.2f} (round_to 8: x{f['speedup_round8_b1']:.2f}), " \
           f"bN round_to 8: x{f['speedup_round8_bN']:.2f}; MACs x{f['macs_ratio_round1']:.2f}"


PAYOFF = Target("speedup_round1_bN", ">=", None)   # reported, no target
BENCHMARK = Benchmark("pruning", PAYOFF, bench_pruning, _detail, """
    speedup: median eval-mode forward latency of the dense network / of the pruned one (random
    scores, 50% of the channels, round_to 1 or 8), at batch 1 (b1) and a large batch (bN)""")
