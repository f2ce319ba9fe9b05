"""Filter-scoring criteria: one small object per method, one interface, lower score goes first.

``score_method`` picks one; every criterion feeds the same selection, surgery and row:

- ``loss_increase`` (the paper, docs/method.md part 2): CE with the filter removed minus CE.
- ``l1_norm``: ||producer.weight[k]||_1, the filter's own kernels (Li et al., "Pruning Filters for
  Efficient ConvNets", ICLR 2017).
- ``bn_scale``: |gamma_k| of the BatchNorm after the filter (Liu et al., "Learning
  Efficient Convolutional Networks through Network Slimming", ICCV 2017).
- ``taylor``: first-order estimate of the loss change when the filter's output h_k is set to
  zero, as Molchanov et al. define it ("Pruning Convolutional Neural Networks for Resource
  Efficient Inference", ICLR 2017, eq. 7; "Importance Estimation for Neural Network Pruning",
  CVPR 2019): per sample s, Theta_s = |(1/M) sum_{pixels} dCE_s/dh_k * h_k| (M pixels of the
  feature map: the mean, then the absolute value), averaged over samples; then each block's
  scores divided by their L2 norm (ICLR 2017, section 2.2), so that a global ranking compares
  filters by their share of their own layer's importance, not by the layer's scale.
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
    """delta_k = CE(S; filter k removed) - CE(S): docs/method.md part 2, the fast exact scorer."""

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
    """Molchanov et al.'s Taylor criterion, L2-normalized per block (see the module docstring)."""

    name = "taylor"

    def __call__(self, model: PrunableNet, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                 generator: torch.Generator) -> list[torch.Tensor]:
        return [l2_normalized(s) for s in taylor_per_sample_mean(model, x, y,
                                                                 batch_size=batch_size)]


def taylor_per_sample_mean(model: PrunableNet, x: torch.Tensor, y: torch.Tensor, *,
                           batch_size: int) -> list[torch.Tensor]:
    """Per prunable width, mean over samples of |mean_{pixels} dCE_s/dh_k * h_k| (no
    normalization)."""
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
                # Mean over the M pixels before the absolute value: a stage's spatial size
                # must not scale its scores (Molchanov et al.'s 1/M).
                total += (h.detach() * g).mean((2, 3)).abs().double().sum(0).cpu()
    return [s / len(x) for s in sums]


def l2_normalized(scores: torch.Tensor) -> torch.Tensor:
    """``scores`` / ||scores||_2; a block scoring 0 throughout stays 0."""
    norm = torch.linalg.vector_norm(scores)
    return scores / norm if norm > 0 else scores


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
