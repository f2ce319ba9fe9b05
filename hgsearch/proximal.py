"""``reg_solver=proximal``: exact zeros for HGSR groups, applied after each SGD step.

Plain subgradients (the reference, ``reg_solver=subgradient``) make a group oscillate around
zero without ever reaching it. With ``proximal`` the step after SGD is, per family:

- ``l1``: the exact proximal operator of t * ||W||_1, soft thresholding
  w <- sign(w) max(|w| - t, 0); the penalty is not in the SGD loss.
- ``group_lasso`` at level 1: the exact proximal operator of the sparse group lasso
  t * (mix * sum_g ||W_g||_2 + (1 - mix) * ||W||_1): soft thresholding by t (1 - mix), then each
  group shrunk radially by t mix, to zero when its norm is at most t mix (Simon, Friedman, Hastie
  and Tibshirani, "A Sparse-Group Lasso", JCGS 2013, eq. 5); the penalty is not in the SGD loss.
- every other family, which has no closed form: the penalty stays in the SGD loss and a group
  is set to zero when the penalty alone would carry it through zero within one step,
  t * d_g >= ||W_g||_2, with d_g the penalty's slope along the group's own direction. Each
  family's group term f_g is positively homogeneous of a degree p (``DEGREE``), so by Euler's
  theorem d_g = <grad f_g, W_g / ||W_g||> = p f_g / ||W_g||. For p = 1 this is the group lasso's
  own zero condition t >= ||W_g|| / (f_g / ||W_g||), and it does not depend on the learning rate
  near zero; p < 1 (group_l12, sqrt outer) holds a small group at zero ever more firmly;
  p > 1 (exclusive, square outer of group_lasso and exclusive) pulls ever more weakly near zero
  and rarely zeroes a group: those families spread weight within a group, they do not select.

One lam for both solvers (docs/guides/solvers.md). Every step above uses
t = lr * lam / (1 - beta), beta the optimizer's momentum (0 without an optimizer), lam already
divided by the initial penalty under ``lam_scale=init``. SGD's heavy-ball buffer b <- beta b + g
moves a weight by lr g / (1 - beta) per step under a steady gradient g (Nesterov's
lr (g + beta b) too), so the loss's gradient step is really s = lr / (1 - beta). A fixed point w*
of "momentum SGD on the loss, then the proximal operator of t R" satisfies
w* = prox_tR(w* - s grad L(w*)), that is 0 in grad L(w*) + (t / s) dR(w*): the minimizer of
L + lam R exactly when t = s lam, which is what the subgradient solver converges to too (its
penalty's gradient goes through the same buffer). With t = lr lam the exact operators would
solve the problem for (1 - beta) lam, ten times weaker at beta = 0.9. This is ProxSGD's step
(Yang, Yuan, Chen, Amini and Wang, ICLR 2020) written for torch's undamped buffer, whose
average momentum v = (1 - beta) b makes lr b = s v. Weight decay is the loss's part: SGD adds
it to g, so the minimizer is that of L + wd/2 ||W||^2 + lam R under both solvers.

The buffer is kept through a zeroing: a zero group must leave zero when its steady step
s ||g_g|| outgrows the threshold, the optimality condition ||g_g|| > lam (for l1 per entry).
Forgetting it would hold the group until ||g_g|| > lam / (1 - beta) and make zeros ten times
stickier than lam says. The one exception is below: a filter whose BatchNorm goes to zero with it
is dead for good (no gradient ever reaches it), and its momentum goes too.

Dead filters (docs/method.md part 2 removes a filter by zeroing its post-ReLU output). With grouping
``input`` a zero group of conv2 reads nothing from its channel: the filter that writes it goes at
no cost. With ``output`` a zero filter of a conv followed by BatchNorm would still emit the
constant relu(BN shift); folding that constant into conv2 is not exact, since conv2 zero-pads and
a constant map's contribution differs at the border. Instead the BN scale and shift go to zero
with their group: the filter then emits exactly 0 in train and eval mode, its gradients are all
exactly 0 (relu'(0) = 0), and it stays dead; removal changes nothing. Its weights, BN scale and
shift lose their momentum with it, so no leftover buffer moves them off zero.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hgsearch.regularizers import Regularizer, regularized_weights

# Degree of homogeneity of one group's term, f_g(s W_g) = s^p f_g(W_g): the kernel measure b
# (squared L2: 2, L1: 1) under phi (sqrt: 1/2, square: 2), then the outer function at level 2.
_INNER = {"group_lasso": 1.0, "exclusive": 2.0, "group_l12": 0.5}


def degree(reg: str, levels: int, outer: str) -> float:
    """p with f_g(s W) = s^p f_g(W) for the group term of ``reg`` (l1: 1)."""
    if reg in ("l1", "none"):
        return 1.0
    q = _INNER[reg]
    if levels == 1:
        return q
    return q / 2 if outer == "sqrt" else 2 * q


def exact(reg: str, levels: int) -> bool:
    """True where the proximal step is the exact operator and the penalty leaves the SGD loss."""
    return reg == "l1" or (reg == "group_lasso" and levels == 1)


def _group_dims(grouping: str) -> tuple[int, ...]:
    return (0, 2, 3) if grouping == "input" else (1, 2, 3)


def _expand(per_group: Tensor, grouping: str) -> Tensor:
    """(groups,) -> broadcastable to a conv weight (out, in, kh, kw)."""
    return per_group.view(1, -1, 1, 1) if grouping == "input" else per_group.view(-1, 1, 1, 1)


def conv_bn_pairs(model: nn.Module) -> dict[nn.Conv2d, nn.BatchNorm2d]:
    """Each regularized conv (``regularized_weights``: the 3x3 convs, and a Bottleneck's 1x1
    convs around its prunable widths) mapped to the BatchNorm that normalizes its output."""
    ids = {id(w) for w in regularized_weights(model)}
    pairs: dict[nn.Conv2d, nn.BatchNorm2d] = {}
    last: nn.Conv2d | None = None
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            last = module
        elif isinstance(module, nn.BatchNorm2d) and last is not None:
            if id(last.weight) in ids and last.out_channels == module.num_features:
                pairs[last] = module
            last = None
    return pairs


class ProximalStep:
    """The step described above for one ``Regularizer``'s network.

    Which convs, their BatchNorms, the groups' axes and the family's case are found here, once
    (the options were checked by the Regularizer); ``step`` then only computes. Like the
    Regularizer it refuses any network but the one it was built on.
    """

    def __init__(self, regularizer: Regularizer) -> None:
        r = self.regularizer = regularizer
        ids = {id(w) for w in r.weights}
        bns = conv_bn_pairs(r.model)
        self.pairs = [(m, bns.get(m)) for m in r.model.modules()
                      if isinstance(m, nn.Conv2d) and id(m.weight) in ids]
        self.exact = exact(r.reg, r.levels)
        self.degree = degree(r.reg, r.levels, r.outer)
        self.dims = _group_dims(r.grouping)

    @torch.no_grad()
    def step(self, model: nn.Module, optimizer: torch.optim.Optimizer | None, *,
             lr: float) -> None:
        """Apply the step, in place, to every regularized conv of ``model``."""
        r = self.regularizer
        r.check_model(model)
        reg, mix, grouping, dims = r.reg, r.mix, r.grouping, self.dims
        if reg == "none" or r.lam <= 0 or lr <= 0:
            return
        t = lr * r.lam / (1 - _momentum(optimizer))      # one lam for both solvers, see above
        for conv, bn in self.pairs:
            w = conv.weight
            if self.exact:
                l1_part = t if reg == "l1" else t * (1 - mix)
                w.copy_(w.sign() * (w.abs() - l1_part).clamp_min(0))
                if reg == "group_lasso":
                    norms = torch.linalg.vector_norm(w, dim=dims)
                    shrink = (1 - t * mix / norms.clamp_min(torch.finfo(w.dtype).tiny)
                              ).clamp_min(0)
                    w.mul_(_expand(shrink, grouping))
                dead = torch.linalg.vector_norm(w, dim=dims) == 0
            else:
                norms = torch.linalg.vector_norm(w, dim=dims)
                f = r.group_values(w)
                l1 = w.abs().sum(dims)
                slope = (mix * self.degree * f + (1 - mix) * l1) / norms.clamp_min(
                    torch.finfo(w.dtype).tiny)
                dead = (t * slope >= norms) | (norms == 0)
                w.mul_(_expand((~dead).to(w.dtype), grouping))
            # No .any() test: it would wait for the GPU on every step.
            if grouping == "output" and bn is not None:
                _forget(optimizer, w, _expand(dead, grouping).expand_as(w))
                for p in (bn.weight, bn.bias):
                    if p is not None:
                        p.masked_fill_(dead, 0.0)
                        _forget(optimizer, p, dead)


def proximal_step(model: nn.Module, optimizer: torch.optim.Optimizer | None, *, reg: str,
                  levels: int, outer: str, grouping: str, lam: float, mix: float,
                  lr: float) -> None:
    """Apply the step described above, in place, to every regularized conv of ``model``.

    Each call checks the options and finds the convs: a training loop builds one
    ``ProximalStep`` instead (hgsearch.hgsr_hooks)."""
    ProximalStep(Regularizer(model, reg=reg, levels=levels, outer=outer, grouping=grouping,
                             lam=lam, mix=mix)).step(model, optimizer, lr=lr)


def _momentum(optimizer: torch.optim.Optimizer | None) -> float:
    """SGD's heavy-ball coefficient beta of the first parameter group (0 without one)."""
    if optimizer is None:
        return 0.0
    return float(optimizer.param_groups[0].get("momentum", 0.0))


def _forget(optimizer: torch.optim.Optimizer | None, p: Tensor, mask: Tensor) -> None:
    """Zero the momentum of the entries of ``p`` under ``mask``."""
    if optimizer is None:
        return
    buf = optimizer.state.get(p, {}).get("momentum_buffer")
    if buf is not None:
        buf.masked_fill_(mask, 0.0)
