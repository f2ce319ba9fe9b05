"""One meaning of lam for both solvers (docs/guides/solvers.md): driven by the training step's
own parts (``train.sgd_optimizer``, ``trial.hgsr_hooks``, in ``train.train``'s order), each
solver converges to the minimizer of 0.5 ||W - A||^2 + wd/2 ||W||^2 + lam R(W), known in closed
form for R = ||W||_1 and the sparse group lasso, at momentum 0 and 0.9, with and without
Nesterov and weight decay."""

from __future__ import annotations

import math

import pytest
import torch

from hgsearch.config import make_config
from hgsearch.hgsr_hooks import hgsr_hooks
from hgsearch.train import SGDSettings, apply_step, lr_factor, sgd_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")

LAM = 0.05
# Per input group (grouping input): the size of A's entries against lam. 0.9 lam: the group is
# zero at the minimizer; 1.6 lam and 3 lam: some entries and groups lie between lam and
# lam / (1 - 0.9), where a threshold without the momentum factor, or a buffer forgotten at zero,
# puts the wrong point; 30 lam: never zero.
SCALES = (0.3, 0.9, 1.6, 3.0, 30.0)


def _target() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4, len(SCALES), 3, 3, generator=gen, dtype=torch.float64)
    a = a / a.abs().amax(dim=(0, 2, 3), keepdim=True)      # each group's largest |a| is 1
    return a * torch.tensor(SCALES, dtype=torch.float64).view(1, -1, 1, 1) * LAM


def _soft(a: torch.Tensor, t: float) -> torch.Tensor:
    return a.sign() * (a.abs() - t).clamp_min(0)


def closed_form(a: torch.Tensor, *, reg: str, lam: float, mix: float, wd: float) -> torch.Tensor:
    """argmin 0.5 ||W - A||^2 + wd/2 ||W||^2 + lam R(W), R the l1 norm or the sparse group lasso
    mix sum_g ||W_g||_2 + (1 - mix) ||W||_1 over input groups: the quadratic part is
    (1 + wd)/2 ||W - A/(1 + wd)||^2, so it is the proximal operator of lam/(1 + wd) R at
    A/(1 + wd): soft thresholding, then each group shrunk radially (Simon et al. 2013)."""
    k = 1 + wd
    if reg == "l1":
        return _soft(a / k, lam / k)
    z = _soft(a / k, lam * (1 - mix) / k)
    norms = torch.linalg.vector_norm(z, dim=(0, 2, 3), keepdim=True)
    return z * (1 - lam * mix / k / norms.clamp_min(1e-300)).clamp_min(0)


def solve(a: torch.Tensor, *, solver: str, reg: str, mix: float, momentum: float,
          nesterov: bool, wd: float, steps: int, lr: float, schedule: str | None = None
          ) -> torch.Tensor:
    """W after ``steps`` SGD steps on 0.5 ||W - A||^2 from W = 0, as ``train.train`` takes them:
    the penalty added to the loss, optimizer.step, then the step after it, at the step's lr."""
    conv = torch.nn.Conv2d(a.shape[1], a.shape[0], 3, bias=False).double()
    torch.nn.init.zeros_(conv.weight)
    model = torch.nn.Sequential(conv)
    cfg = make_config({"reg": reg, "reg_levels": 1, "reg_grouping": "input", "lam": LAM,
                       "mix": mix, "reg_solver": solver, "momentum": momentum,
                       "nesterov": nesterov, "weight_decay": wd})
    penalty, after_step = hgsr_hooks(cfg, model)
    settings = SGDSettings(epochs=1, lr=lr, momentum=momentum, nesterov=nesterov,
                           weight_decay=wd)
    optimizer = sgd_optimizer(model, settings)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * (lr_factor(step, steps, schedule) if schedule else 1.0)
        loss = 0.5 * (conv.weight - a).square().sum()
        apply_step(model, optimizer, loss, penalty=penalty, after_step=after_step)
    return conv.weight.detach()


CASES = [("l1", 0.0), ("group_lasso", 1.0), ("group_lasso", 0.4)]
MOMENTA = [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0), (0.9, False, 0.05)]


def test_the_setting_has_teeth():
    """Each case has zero groups, kept groups, and a kept entry or group that the minimizer for
    (1 - 0.9) lam, or a zero held by a forgotten buffer, would put elsewhere."""
    a = _target()
    for reg, mix in CASES:
        w = closed_form(a, reg=reg, lam=LAM, mix=mix, wd=0.0)
        norms = torch.linalg.vector_norm(w, dim=(0, 2, 3))
        assert (norms == 0).any() and (norms > 0).any(), reg
        weak = closed_form(a, reg=reg, lam=0.1 * LAM, mix=mix, wd=0.0)
        assert (weak - w).abs().max() > 0.3 * LAM, reg
    # a group nonzero at the minimizer with every |a| < lam / (1 - 0.9): a zero group whose
    # buffer is forgotten every step never leaves zero
    l1 = closed_form(a, reg="l1", lam=LAM, mix=0.0, wd=0.0)
    trapped = [g for g in range(len(SCALES))
               if l1[:, g].abs().max() > 0 and a[:, g].abs().max() < LAM / 0.1]
    assert trapped


@pytest.mark.parametrize("momentum, nesterov, wd", MOMENTA)
@pytest.mark.parametrize("reg, mix", CASES)
def test_proximal_solver_reaches_the_closed_form_minimizer(reg, mix, momentum, nesterov, wd):
    a = _target()
    expect = closed_form(a, reg=reg, lam=LAM, mix=mix, wd=wd)
    got = solve(a, solver="proximal", reg=reg, mix=mix, momentum=momentum, nesterov=nesterov,
                wd=wd, steps=500, lr=0.1)
    assert torch.allclose(got, expect, rtol=0, atol=1e-9), (got - expect).abs().max().item()
    # exact zeros where the minimizer has them, not just small values
    assert torch.equal(got == 0, expect == 0)


@pytest.mark.parametrize("momentum, nesterov, wd", MOMENTA)
@pytest.mark.parametrize("reg, mix", CASES)
def test_subgradient_solver_ends_near_the_same_minimizer(reg, mix, momentum, nesterov, wd):
    """Subgradients oscillate around a kink, so the learning rate goes to 0 (cosine, as in
    training) and the tolerance is loose; it is still far below the distance to the minimizer
    for (1 - momentum) lam or lam / (1 - momentum), so lam means the same for both solvers."""
    a = _target()
    expect = closed_form(a, reg=reg, lam=LAM, mix=mix, wd=wd)
    got = solve(a, solver="subgradient", reg=reg, mix=mix, momentum=momentum, nesterov=nesterov,
                wd=wd, steps=400, lr=0.1, schedule="cosine")
    err = (got - expect).abs().max().item()
    assert err < 0.05 * LAM, err
    if momentum:
        for other in ((1 - momentum) * LAM, LAM / (1 - momentum)):
            far = closed_form(a, reg=reg, lam=other, mix=mix, wd=wd)
            assert (far - expect).abs().max().item() > 10 * err
    assert math.isfinite(err)
