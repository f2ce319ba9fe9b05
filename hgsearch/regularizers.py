"""Hierarchical group sparse regularization (HGSR) of conv weights: docs/method.md part 1.

A conv weight W has shape (out, in, kh, kw); w_ij is the kh*kw kernel from input channel j to
output channel i. An outer group g is an input channel j (grouping ``input``: all kernels that
read j) or an output filter i (grouping ``output``). Every family of docs/method.md part 1 is

    level 1:  sum_g phi( sum_{m in g} b(w_m) )
    level 2:  sum_g outer( sum_{m in g} phi(b(w_m)) )

with b the squared L2 norm (group_lasso) or the L1 norm (exclusive, group_l12) of a kernel, phi
the square root (group_lasso, group_l12) or the square (exclusive), and outer sqrt or square.
b is additive over kernels, so level 1's phi(sum b) is phi of the whole group's norm.

Square roots go through ``_sqrt``: the value of ``torch.sqrt``, with slope 0 instead of infinity
at an exactly zero argument, so a zero kernel or group leaves the loss and its gradient finite.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from hgsearch.config import FIELDS, TrialConfig, check, type_name
from hgsearch.errors import UserError

# The options' allowed values are their trial keys' (config.TrialConfig), declared there once.
LEVELS = FIELDS["reg_levels"].metadata["choices"]
OUTERS = FIELDS["reg_outer"].metadata["choices"]
GROUPINGS = FIELDS["reg_grouping"].metadata["choices"]


class _SafeSqrt(torch.autograd.Function):
    """sqrt(x) for x >= 0 whose gradient at x = 0 is 0 rather than infinite."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = torch.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        # At 0 the slope is +inf; 0 is the minimum-norm subgradient of ||w||_2 there and keeps a
        # zero group at rest under the penalty alone. The clamp only keeps the unselected lane
        # finite (y > 0 implies y >= sqrt(smallest subnormal) >> tiny), so double backward works.
        tiny = torch.finfo(y.dtype).tiny
        return torch.where(y > 0, grad / (2 * y.clamp_min(tiny)), torch.zeros_like(grad))


def _sqrt(x: Tensor) -> Tensor:
    return _SafeSqrt.apply(x)


def check_options(*, reg: str, levels: int, outer: str, grouping: str) -> None:
    """Raise UserError naming the first option outside its trial key's declared values."""
    for key, value in (("reg", reg), ("reg_levels", levels), ("reg_outer", outer),
                       ("reg_grouping", grouping)):
        _check_key(key, value)


def _check_key(key: str, value: object) -> None:
    """UserError unless ``value`` is allowed for trial key ``key`` (config.check, the key's one
    declaration). A bool is an int in Python: True must not pass as reg_levels=1."""
    problem = check(key, value) if not isinstance(value, bool) else \
        f"{key}={value!r}: expected {type_name(key)}"
    if problem:
        raise UserError(problem)


def _check_weight(lam: float) -> None:
    """The weight in use: the key lam, or lam / R(W0) under lam_scale=init (``Regularizer``), so
    the key's upper bound does not apply to it; only a finite weight >= 0 makes a penalty."""
    if isinstance(lam, bool) or not (math.isfinite(lam) and lam >= 0):
        raise UserError(f"lam={lam!r}: must be a finite number >= 0")


def _stack_terms(w: Tensor, *, reg: str, levels: int, outer: str,
                 grouping: str) -> tuple[Tensor, Tensor]:
    """(sum of R(W), sum of ||W||_1) over a stack of same-shape conv weights (L, out, in, kh, kw).

    exclusive and group_l12 start from the kernels' L1 norms, so ||W||_1 is almost free there.
    """
    kernel_l1 = w.abs().sum((-2, -1))                                  # (L, out, in): ||w_ij||_1
    l1 = kernel_l1.sum()
    if reg == "none":
        return l1 * 0, l1     # 0, still in the graph: backward gives a zero gradient
    if reg == "l1":
        return l1, l1
    b = (w * w).sum((-2, -1)) if reg == "group_lasso" else kernel_l1   # b(w_ij), see above
    phi: Callable[[Tensor], Tensor] = torch.square if reg == "exclusive" else _sqrt
    # Kernels of one input group j share index j and differ in i (axis 1), and vice versa.
    within = 1 if grouping == "input" else 2
    if levels == 1:
        return phi(b.sum(within)).sum(), l1                             # method.md part 1, col 1
    s = phi(b).sum(within)                                              # (L, groups)
    return (_sqrt(s) if outer == "sqrt" else s.square()).sum(), l1     # method.md part 1, cols 2-3


def penalty(weight: Tensor, *, reg: str, levels: int, outer: str, grouping: str) -> Tensor:
    """R(W) of one conv weight (out, in, kh, kw) without lam: a differentiable 0-dim tensor.

    docs/method.md part 1, table; ``reg="l1"`` gives ||W||_1 and ``reg="none"`` 0. ``outer`` is
    ignored at level 1, and ``levels``, ``outer`` and ``grouping`` for l1 and none.
    """
    check_options(reg=reg, levels=levels, outer=outer, grouping=grouping)
    if weight.dim() != 4:
        raise ValueError(f"penalty: expected a conv weight (out, in, kh, kw), got {weight.shape}")
    r, _ = _stack_terms(weight.unsqueeze(0), reg=reg, levels=levels, outer=outer,
                        grouping=grouping)
    return r


def group_values(weight: Tensor, *, reg: str, levels: int, outer: str,
                 grouping: str) -> Tensor:
    """R's term of each outer group of one conv weight, shape (in,) or (out,): their sum is
    ``penalty(weight, ...)`` (docs/method.md part 1, table; l1: each group's ||W_g||_1)."""
    check_options(reg=reg, levels=levels, outer=outer, grouping=grouping)
    return _group_values(weight, reg=reg, levels=levels, outer=outer, grouping=grouping)


def _group_values(weight: Tensor, *, reg: str, levels: int, outer: str,
                  grouping: str) -> Tensor:
    within = 0 if grouping == "input" else 1
    kernel_l1 = weight.abs().sum((-2, -1))                             # (out, in)
    if reg in ("l1", "none"):
        values = kernel_l1.sum(within)
        return values * 0 if reg == "none" else values
    b = (weight * weight).sum((-2, -1)) if reg == "group_lasso" else kernel_l1
    phi: Callable[[Tensor], Tensor] = torch.square if reg == "exclusive" else _sqrt
    if levels == 1:
        return phi(b.sum(within))
    s = phi(b).sum(within)
    return _sqrt(s) if outer == "sqrt" else s.square()


def regularized_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weights HGSR acts on, in module order: every 3x3 convolution (docs/method.md part 1), and
    every conv that produces or consumes a prunable width (a model's ``units()``).

    The second rule adds a Bottleneck's 1x1 conv1 (its filters are prunable) and 1x1 conv3 (it
    reads the prunable width of conv2), so that both inner widths can die under either grouping.
    In the CIFAR ResNets every such conv is 3x3: their penalty is the reference's. Not the 1x1
    projection shortcuts, a 7x7 stem (its inputs are RGB, its filters the residual stream: no
    filter pruning removes them), the linear classifier, biases or BatchNorm parameters.
    """
    units = model.units() if callable(getattr(model, "units", None)) else []
    prunable = {id(conv) for unit in units for conv in (unit.producer, unit.consumer)}
    return [m.weight for m in model.modules()
            if isinstance(m, nn.Conv2d) and (tuple(m.kernel_size) == (3, 3) or id(m) in prunable)]


class Regularizer:
    """HGSR of one network, lam (mix sum R(W) + (1 - mix) sum ||W||_1): docs/method.md part 1.

    Built once per trial (hgsearch.hgsr_hooks): the options are checked here, once, and the
    regularized weights are found and grouped by shape here, once; ``penalty`` then only
    computes. The structure is that of ``model`` as it was when built. Surgery makes a pruned
    network another module with other convs, so ``penalty`` refuses any module but ``model``
    (``on`` builds one for another network); ``model.to(...)`` keeps its parameters' identity
    and is fine. ``lam`` is the weight in use (see ``from_config``).
    """

    def __init__(self, model: nn.Module, *, reg: str, levels: int, outer: str, grouping: str,
                 lam: float, mix: float) -> None:
        check_options(reg=reg, levels=levels, outer=outer, grouping=grouping)
        _check_weight(lam)
        _check_key("mix", mix)
        self.model = model
        self.reg, self.levels, self.outer, self.grouping = reg, levels, outer, grouping
        self.lam, self.mix = lam, mix
        self.weights = regularized_weights(model)
        # Same-shape weights are stacked into (L, out, in, kh, kw) per step: a few ops in all,
        # not per layer. Grouped in order of first appearance.
        by_shape: dict[tuple[int, ...], list[nn.Parameter]] = {}
        for w in self.weights:
            by_shape.setdefault(tuple(w.shape), []).append(w)
        self.by_shape = list(by_shape.values())

    @classmethod
    def from_config(cls, cfg: TrialConfig, model: nn.Module) -> Regularizer:
        """The trial's regularizer on ``model``, its freshly initialized network. Its weight is
        lam, or under lam_scale=init lam / (the penalty of ``model`` at lam=1)."""
        out = cls(model, reg=cfg.reg, levels=cfg.reg_levels, outer=cfg.reg_outer,
                  grouping=cfg.reg_grouping, lam=cfg.lam, mix=cfg.mix)
        if cfg.lam_scale != "init" or not cfg.regularized:
            return out
        with torch.no_grad():
            at_init = float(out.with_lam(1.0).penalty(model))
        return out.with_lam(cfg.lam / at_init) if at_init > 0 else out

    def with_lam(self, lam: float) -> Regularizer:
        """The same options and structure, weighted by ``lam``."""
        _check_weight(lam)
        out = copy.copy(self)
        out.lam = lam
        return out

    def on(self, model: nn.Module) -> Regularizer:
        """The same options and weight on another network (a resumed trial's, rebuilt from its
        checkpoint): its structure found once, here."""
        return type(self)(model, reg=self.reg, levels=self.levels, outer=self.outer,
                          grouping=self.grouping, lam=self.lam, mix=self.mix)

    def check_model(self, model: nn.Module) -> None:
        """ValueError unless ``model`` is the network this regularizer's structure is of."""
        if model is not self.model:
            raise ValueError("Regularizer: called on another network than the one it was built "
                             "on (Regularizer.on builds one for it)")

    def penalty(self, model: nn.Module) -> Tensor:
        """The penalty of ``model`` (the network built on), a differentiable 0-dim tensor; with
        reg=none, lam=0 or no regularized conv a zero outside any autograd graph, at no cost."""
        self.check_model(model)
        if self.reg == "none" or self.lam == 0 or not self.weights:
            ref = self.weights[0] if self.weights else next(model.parameters(), torch.zeros(()))
            return torch.zeros((), dtype=ref.dtype, device=ref.device)
        # mix=0: only the L1 term is left; do not compute R just to weigh it by 0
        reg = "l1" if self.mix == 0 else self.reg
        r_sum: Tensor | float = 0.0
        l1_sum: Tensor | float = 0.0
        for ws in self.by_shape:
            w = torch.stack(ws) if len(ws) > 1 else ws[0].unsqueeze(0)
            r, l1 = _stack_terms(w, reg=reg, levels=self.levels, outer=self.outer,
                                 grouping=self.grouping)
            r_sum, l1_sum = r_sum + r, l1_sum + l1
        lam, mix = self.lam, self.mix
        if reg == "l1" or mix == 1:
            return lam * r_sum    # R is the L1 term itself, or the L1 term has weight 0
        # scalars folded in plain Python: two multiplications on the device instead of four
        return (lam * mix) * r_sum + (lam * (1 - mix)) * l1_sum

    def group_values(self, weight: Tensor) -> Tensor:
        """``group_values`` of one weight under these options (checked already)."""
        return _group_values(weight, reg=self.reg, levels=self.levels, outer=self.outer,
                             grouping=self.grouping)


def hgsr_loss(model: nn.Module, *, reg: str, levels: int, outer: str, grouping: str,
              lam: float, mix: float) -> Tensor:
    """lam * (mix * sum_layers R(W) + (1 - mix) * sum_layers ||W||_1): docs/method.md part 1.

    Summed over ``regularized_weights(model)``, layers of the same shape in one stacked
    computation. With ``reg="none"`` or ``lam=0`` it is a zero tensor outside any autograd
    graph, at no cost. Each call checks the options and finds the weights: a training loop builds
    one ``Regularizer`` instead and calls its ``penalty`` every step.
    """
    return Regularizer(model, reg=reg, levels=levels, outer=outer, grouping=grouping, lam=lam,
                       mix=mix).penalty(model)


def group_norms(weight: Tensor, *, grouping: str) -> Tensor:
    """L2 norm ||W_g||_2 of each outer group of a conv weight: shape (in,) or (out,)."""
    _check_key("reg_grouping", grouping)
    dims = (0, 2, 3) if grouping == "input" else (1, 2, 3)
    return torch.linalg.vector_norm(weight, dim=dims)
