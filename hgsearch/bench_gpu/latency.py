"""Latency of a 50%-pruned network against the dense one, per batch size and ``round_to``.

The pruned networks are real compact ones (``prune_model``), 50% of the inner channels removed
by random scores with every block's width a multiple of ``round_to``; widths that are multiples
of 8 or 16 are what tensor cores tile well. Measured as a trial measures (``measure_latency``:
eval mode, the trial's precision and memory format, a synchronize after each forward).
"""

from __future__ import annotations

import statistics
from typing import Any


def bench_pruned_latency(scale: Any, runtime: Any, log: Any) -> dict[str, Any]:
    """Median latency of each network and the dense / pruned ratios, ABBA over rounds."""
    import torch

    from hgsearch import bench
    from hgsearch.metrics import count_macs, count_params, measure_latency
    from hgsearch.models import build_model
    from hgsearch.pruning import prune_model, select

    dense = build_model(scale.arch, 10).eval()
    gen = torch.Generator().manual_seed(0)
    scores = [torch.rand(w, generator=gen, dtype=torch.float64) for w in dense.widths]
    nets = {"dense": dense}
    for r in scale.latency_round_to:
        nets[f"round{r}"] = prune_model(dense, select(scores, ratio=0.5, round_to=r).keep)
    figures: dict[str, float] = {}
    for name, net in nets.items():
        if name != "dense":
            figures[f"params_ratio_{name}"] = count_params(net) / count_params(dense)
            figures[f"macs_ratio_{name}"] = (count_macs(net, (32, 32))
                                             / count_macs(dense, (32, 32)))
    for batch in scale.latency_batches:
        repeats = scale.latency_repeats * (5 if batch == 1 else 1)   # batch 1: quick, noisy
        lat: dict[str, list[float]] = {name: [] for name in nets}
        for r in range(scale.latency_rounds):
            for name in list(nets) if r % 2 == 0 else reversed(list(nets)):
                lat[name].append(measure_latency(
                    nets[name], input_size=(32, 32), batch_size=batch, device=runtime.device,
                    repeats=repeats, warmup=3, channels_last=runtime.channels_last,
                    dtype=runtime.autocast_dtype))
        for name in nets:
            figures[f"latency_{name}_b{batch}_ms"] = 1000 * statistics.median(lat[name])
            if name != "dense":
                figures[f"speedup_{name}_b{batch}"] = bench.paired_ratio(lat["dense"], lat[name])
        log(f"  batch {batch}: " + ", ".join(
            f"{n} {figures[f'latency_{n}_b{batch}_ms']:.3g} ms" for n in nets))
    settings = {"arch": scale.arch, "ratio": 0.5, "target": "channels", "scores": "random",
                "round_to": list(scale.latency_round_to), "batches": list(scale.latency_batches),
                "rounds": scale.latency_rounds, "repeats": scale.latency_repeats,
                "precision": str(runtime.autocast_dtype or "float32").removeprefix("torch."),
                "channels_last": runtime.channels_last,
                **{f"widths_{n}": net.widths for n, net in nets.items() if n != "dense"}}
    return {"settings": settings, "figures": figures,
            "definition": "latency: median eval-mode forward of one batch (measure_latency, the "
                          "trial's precision and memory format); speedup: paired ratio dense / "
                          "pruned over rounds in ABBA order"}
