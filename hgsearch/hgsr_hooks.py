"""The regularizer as a training runs it: the penalty added to the loss and the proximal step
after each SGD step, built once per trial from its keys (docs/method.md part 1)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hgsearch.config import TrialConfig
from hgsearch.models import PrunableNet
from hgsearch.proximal import exact, proximal_step
from hgsearch.regularizers import hgsr_loss


def hgsr_hooks(cfg: TrialConfig, model: PrunableNet) -> tuple[Callable | None, Callable | None]:
    """(penalty added to the loss, step after each SGD step) for ``train``; None where unused.

    ``model`` is the freshly initialized network (lam_scale=init divides by its penalty). An exact
    proximal operator replaces the penalty's gradient; a thresholding comes on top of it.
    """
    if cfg.reg == "none" or cfg.lam == 0:
        return None, None
    lam = _lam(cfg, model)
    opts = {"reg": cfg.reg, "levels": cfg.reg_levels, "outer": cfg.reg_outer,
            "grouping": cfg.reg_grouping, "lam": lam, "mix": cfg.mix}

    def penalty(m: torch.nn.Module) -> torch.Tensor:
        return hgsr_loss(m, **opts)

    def prox(m: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        proximal_step(m, optimizer, lr=optimizer.param_groups[0]["lr"], **opts)

    if cfg.reg_solver != "proximal":
        return penalty, None
    return (None if exact(cfg.reg, cfg.reg_levels) else penalty), prox


def _lam(cfg: TrialConfig, model: PrunableNet) -> float:
    """The penalty weight in use: lam, or under lam_scale=init lam / (penalty at init)."""
    if cfg.lam_scale != "init" or cfg.reg == "none" or cfg.lam == 0:
        return cfg.lam
    with torch.no_grad():
        at_init = float(hgsr_loss(model, reg=cfg.reg, levels=cfg.reg_levels,
                                  outer=cfg.reg_outer, grouping=cfg.reg_grouping, lam=1.0,
                                  mix=cfg.mix))
    return cfg.lam / at_init if at_init > 0 else cfg.lam
