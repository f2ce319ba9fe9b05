"""Latency of a 50%-pruned network against the dense one, per batch size and ``round_to``.

The hot suite's pruning benchmark (bench/pruning.py) at more batch sizes and ``round_to`` values;
widths that are multiples of 8 or 16 are what tensor cores tile well.
"""

from __future__ import annotations

from typing import Any

from hgsearch.bench.pruning import latency_figures, pruned_nets


def bench_pruned_latency(scale: Any, runtime: Any, log: Any) -> dict[str, Any]:
    """Median latency of each network and the dense / pruned ratios, ABBA over rounds."""
    nets = pruned_nets(scale.arch, scale.latency_round_to)
    figures = latency_figures(nets, runtime, batches={f"b{b}": b for b in scale.latency_batches},
                              rounds=scale.latency_rounds, repeats=scale.latency_repeats,
                              batch1_factor=5, warmup=3, log=log)
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
