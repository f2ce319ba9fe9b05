"""The peer users know: Torch-Pruning's global group-magnitude pruning at a parameter budget.

Torch-Pruning (Fang et al., CVPR 2023, "DepGraph") groups every pair of coupled channels - the
residual stages' widths included, which hgsearch leaves whole - scores each group by the L2
norm of its weights, and removes the lowest-scoring groups over the whole network
(``global_pruning=True``). Its knob is a share of channels, not of parameters, so the share is
found by bisection: the smallest whose pruned network has at most the budget's parameters. The
package is optional (``pip install torch-pruning``); without it the benchmark says so and goes
on.
"""

from __future__ import annotations

import copy
import importlib.util
from typing import Any

NAME = "torch_pruning"


def available() -> bool:
    return importlib.util.find_spec("torch_pruning") is not None


def version() -> str | None:
    if not available():
        return None
    import torch_pruning

    return str(getattr(torch_pruning, "__version__", "unknown"))


def group_magnitude_pruned(model: Any, removed: float, image_size: int, *,
                           steps: int = 10) -> Any:
    """A copy of ``model`` with at least ``removed`` of its parameters taken away by
    Torch-Pruning's global group-magnitude pruning (the classifier's outputs kept)."""
    import torch
    import torch_pruning as tp

    from hgsearch.metrics import count_params

    target = (1.0 - removed) * count_params(model)
    device = next(model.parameters()).device
    example = torch.randn(1, 3, image_size, image_size, device=device)

    def pruned(share: float) -> Any:
        net = copy.deepcopy(model).eval()
        pruner = tp.pruner.MetaPruner(
            net, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=share, global_pruning=True, ignored_layers=[net.fc])
        pruner.step()
        return net

    lo, hi, best = 0.0, 1.0, None     # 1.0 meets any budget: one channel left per group
    for _ in range(steps):             # the share to 1/1024: parameters to a few hundredths
        mid = (lo + hi) / 2
        net = pruned(mid)
        if count_params(net) <= target:
            hi, best = mid, net
        else:
            lo = mid
    return best if best is not None else pruned(hi)
