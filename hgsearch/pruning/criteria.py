"""Filter-scoring criteria: one small object per method, one interface, lower score goes first.

``score_method`` picks one; every criterion feeds the same selection, surgery and row:

- ``loss_increase`` (the paper, METHOD.md part 2): CE with the filter removed minus CE.
- ``l1_norm``: ||producer.weight[k]||_1, the filter's own kernels (Li et al., "Pruning Filters for
  Efficient ConvNets", ICLR 2017).
- ``bn_scale``: |gamma_k| of the BatchNorm after the filter (Liu et al., "Learning
  Efficient Convolutional Networks through Network Slimming", ICCV 2017).
- ``taylor``: first-order estimate of the loss change when the filter's output h_k is set to
  zero, mean over samples of |sum_{pixels} dCE/dh_k * h_k| (Molchanov et al., "Pruning
  Convolutional Neural Networks for Resource Efficient Inference", ICLR 2017, eq. 7; without
  their per-layer L2 normalization, so that a global ranking compares raw estimates as the
  other criteria do).
- ``random``: uniform on [0, 1), drawn from the trial's seeded generator (a floor any criterion
  must beat).

Every criterion returns one float64 CPU tensor per prunable unit (models/blocks: one per
BasicBlock, two per Bottleneck), of length the unit's width, and
runs in eval mode (BatchNorm running statistics), in float32 without TF32 or autocast
(``exact_math``): the deltas of near-dead filters are small differences that reduced precision
would drown.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import torch
import torch.nn.functional as F

from hgsearch.models import PrunableNet
from hgsearch.pruning.scoring import _eval_mode, score_filters


class Criterion(Protocol):
    """Scores every prunable filter of ``model``; the lowest scores are pruned first."""

    name: str

    def __call__(self, model: PrunableNet, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                 generator: torch.Generator) -> list[torch.Tensor]: ...


class LossIncrease:
    """delta_k = CE(S; filter k removed) - CE(S): METHOD.md part 2, the fast exact scorer."""

    name = "loss_increase"

    def __call__(self, model: PrunableNet, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                 generator: torch.Generator) -> list[torch.Tensor]:
        return score_filters(model, x, y, batch_size=batch_size)


class L1Norm:
    """Sum of |w| over filter k's kernels in the unit's producer conv (Li et al. 2017)."""

    name = "l1_norm"

    @torch.no_grad()
    def __call__(self, model: PrunableNet, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                 generator: torch.Generator) -> list[torch.Tensor]:
        return [u.producer.weight.detach().abs().sum((1, 2, 3)).double().cpu()
                for u in model.units()]


class BNScale:
    """|gamma_k| of the BatchNorm that follows filter k (Liu et al. 2017)."""

    name = "bn_scale"

    @torch.no_grad()
    def __call__(self, model: PrunableNet, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                 generator: torch.Generator) -> list[torch.Tensor]:
        return [u.bn.weight.detach().abs().double().cpu() for u in model.units()]


class Taylor:
    """mean_s |sum_{pixels} dCE_s/dh_k * h_k| on the sample (Molchanov et al. 2017, eq. 7)."""

    name = "taylor"

    def __call__(self, model: PrunableNet, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                 generator: torch.Generator) -> list[torch.Tensor]:
        param = next(model.parameters())
        sums = [torch.zeros(w, dtype=torch.float64) for w in _widths(model)]
        with _eval_mode(model), torch.enable_grad():
            for start in range(0, len(x), batch_size):
                xs = x[start:start + batch_size].to(device=param.device, dtype=param.dtype)
                ys = y[start:start + batch_size].to(param.device)
                feat, hs = model.stem(xs), []
                for block in model.blocks:
                    units, feat = block.activations(feat)     # each (n, width, H, W)
                    hs.extend(units)
                # Summed CE: in eval mode sample s's activations reach only CE_s, so each
                # sample's gradient is its own.
                ce = F.cross_entropy(model.head(feat), ys, reduction="sum")
                grads = torch.autograd.grad(ce, hs)
                for total, h, g in zip(sums, hs, grads):
                    total += (h.detach() * g).sum((2, 3)).abs().double().sum(0).cpu()
        return [s / len(x) for s in sums]


class Random:
    """Uniform scores from the trial's generator: seeded, every filter equally likely to go."""

    name = "random"

    def __call__(self, model: PrunableNet, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                 generator: torch.Generator) -> list[torch.Tensor]:
        return [torch.rand(w, generator=generator, dtype=torch.float64) for w in _widths(model)]


def _widths(model: PrunableNet) -> list[int]:
    return [u.producer.out_channels for u in model.units()]


CRITERIA: dict[str, Criterion] = {c.name: c for c in (LossIncrease(), L1Norm(), BNScale(),
                                                       Taylor(), Random())}
SCORE_METHODS = tuple(CRITERIA)


def get_criterion(name: str) -> Criterion:
    """The criterion called ``name``, or ValueError listing the allowed names."""
    try:
        return CRITERIA[name]
    except KeyError:
        raise ValueError(f"score_method={name!r}: allowed values are "
                         f"{', '.join(SCORE_METHODS)}") from None


# The TF32 switches are process-wide: trials scoring in threads of one process (the dense
# store's tests do) must not restore each other's "ieee". The first to enter saves and sets
# them, the last to leave restores them.
_EXACT_LOCK = threading.Lock()
_exact_depth = 0
_exact_saved: tuple[str, str] = ("", "")


@contextmanager
def exact_math() -> Iterator[None]:
    """Plain float32 inside: TF32 off for CUDA convolutions and matmuls, autocast off; the
    previous settings come back on exit, even on error (when the last of several threads
    inside leaves)."""
    global _exact_depth, _exact_saved
    with _EXACT_LOCK:
        if _exact_depth == 0:
            _exact_saved = (torch.backends.cuda.matmul.fp32_precision,
                            torch.backends.cudnn.conv.fp32_precision)
            torch.backends.cuda.matmul.fp32_precision = "ieee"
            torch.backends.cudnn.conv.fp32_precision = "ieee"
        _exact_depth += 1
    try:
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            yield
    finally:
        with _EXACT_LOCK:
            _exact_depth -= 1
            if _exact_depth == 0:
                matmul, conv = _exact_saved
                torch.backends.cuda.matmul.fp32_precision = matmul
                torch.backends.cudnn.conv.fp32_precision = conv
