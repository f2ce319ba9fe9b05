"""The regularizer as a training runs it: the penalty added to the loss and the proximal step
after each SGD step, built once per trial from its keys (docs/method.md part 1)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hgsearch.config import TrialConfig
from hgsearch.models import PrunableNet
from hgsearch.proximal import ProximalStep
from hgsearch.regularizers import Regularizer


def hgsr_hooks(cfg: TrialConfig, model: PrunableNet, *, trained: PrunableNet | None = None
               ) -> tuple[Callable | None, Callable | None]:
    """(penalty added to the loss, step after each SGD step) for ``train``; None where unused.

    ``model`` is the freshly initialized network (lam_scale=init divides by its penalty). The
    hooks act on ``trained`` (default: ``model``; on resume, the network rebuilt from the
    checkpoint) and refuse any other network: which weights, convs and BatchNorms they act on is
    found once, here (``Regularizer``, ``ProximalStep``). An exact proximal operator replaces
    the penalty's gradient; a thresholding comes on top of it.
    """
    if not cfg.regularized:
        return None, None
    regularizer = Regularizer.from_config(cfg, model)
    if trained is not None and trained is not model:
        regularizer = regularizer.on(trained)
    penalty = regularizer.penalty
    if cfg.reg_solver != "proximal":
        return penalty, None
    step = ProximalStep(regularizer)

    def prox(m: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        step.step(m, optimizer, lr=optimizer.param_groups[0]["lr"])

    return (None if step.exact else penalty), prox
