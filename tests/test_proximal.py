"""reg_solver=proximal: exact operators against closed forms, the thresholding against its rule,
and dead filters removable at no loss cost by real surgery."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hgsearch.metrics import zero_filters
from hgsearch.models import build_model
from hgsearch.proximal import conv_bn_pairs, degree, exact, proximal_step
from hgsearch.pruning import prune_model, score_filters
from hgsearch.regularizers import group_values, penalty, regularized_weights

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = list(itertools.product(("group_lasso", "exclusive", "group_l12"), (1, 2),
                                  ("sqrt", "square"), ("input", "output")))


def _weight(seed: int = 0, shape=(6, 5, 3, 3)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


@pytest.mark.parametrize("reg, levels, outer, grouping", FAMILIES + [
    ("l1", 1, "sqrt", "input"), ("l1", 1, "sqrt", "output")])
def test_group_values_are_the_penalty_of_each_group_alone(reg, levels, outer, grouping):
    w = _weight()
    values = group_values(w, reg=reg, levels=levels, outer=outer, grouping=grouping)
    for g in range(len(values)):
        alone = w[:, g:g + 1] if grouping == "input" else w[g:g + 1]
        assert values[g].item() == pytest.approx(
            penalty(alone, reg=reg, levels=levels, outer=outer, grouping=grouping).item(),
            rel=1e-12)
    assert values.sum().item() == pytest.approx(
        penalty(w, reg=reg, levels=levels, outer=outer, grouping=grouping).item(), rel=1e-12)


@pytest.mark.parametrize("reg, levels, outer, grouping", FAMILIES)
@pytest.mark.parametrize("s", [0.3, 2.5])
def test_degree_is_the_homogeneity_of_the_penalty(reg, levels, outer, grouping, s):
    w = _weight(1)
    kw = {"reg": reg, "levels": levels, "outer": outer, "grouping": grouping}
    p = degree(reg, levels, outer)
    assert penalty(s * w, **kw).item() == pytest.approx(s ** p * penalty(w, **kw).item(),
                                                        rel=1e-10)


def _conv_model(w: torch.Tensor) -> torch.nn.Module:
    conv = torch.nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1, bias=False).double()
    conv.weight.data.copy_(w)
    return torch.nn.Sequential(conv)


def _objective(z: np.ndarray, w: np.ndarray, t: float, mix: float, axis: tuple) -> float:
    """0.5 ||Z - W||^2 + t (mix sum_g ||Z_g||_2 + (1 - mix) ||Z||_1): what the prox minimizes."""
    groups = np.sqrt((z ** 2).sum(axis=axis)).sum()
    return 0.5 * ((z - w) ** 2).sum() + t * (mix * groups + (1 - mix) * np.abs(z).sum())


@pytest.mark.parametrize("grouping", ["input", "output"])
@pytest.mark.parametrize("mix", [0.0, 0.5, 1.0])
def test_sparse_group_lasso_step_is_the_exact_proximal_operator(grouping, mix):
    scales = torch.linspace(0.02, 1.0, 5 if grouping == "input" else 6, dtype=torch.float64)
    w = _weight(2) * (scales.view(1, -1, 1, 1) if grouping == "input" else scales.view(-1, 1, 1, 1))
    model = _conv_model(w)
    lam, lr = 0.4, 0.5
    proximal_step(model, None, reg="group_lasso", levels=1, outer="sqrt", grouping=grouping,
                  lam=lam, mix=mix, lr=lr)
    z = model[0].weight.detach().numpy()
    axis = (0, 2, 3) if grouping == "input" else (1, 2, 3)
    norms = np.sqrt((z ** 2).sum(axis=axis))
    assert (norms == 0).any() and (norms > 0).any()          # the setting zeroes some groups
    # Optimality: no random perturbation lowers the (convex) objective.
    w_np, t = w.numpy(), lr * lam
    best = _objective(z, w_np, t, mix, axis)
    rng = np.random.default_rng(0)
    for scale in (1e-3, 1e-2, 1e-1):
        for _ in range(50):
            assert _objective(z + scale * rng.standard_normal(z.shape), w_np, t, mix,
                              axis) >= best - 1e-12


def test_l1_step_is_soft_thresholding():
    w = _weight(3)
    model = _conv_model(w)
    proximal_step(model, None, reg="l1", levels=1, outer="sqrt", grouping="input", lam=0.5,
                  mix=0.5, lr=0.8)
    w_np = w.numpy()
    expect = np.sign(w_np) * np.maximum(np.abs(w_np) - 0.4, 0)
    assert np.allclose(model[0].weight.detach().numpy(), expect, rtol=0, atol=1e-15)


@pytest.mark.parametrize("reg, levels, outer, grouping",
                         [f for f in FAMILIES if not exact(f[0], f[1])])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_thresholding_zeroes_exactly_the_groups_the_penalty_carries_through_zero(
        reg, levels, outer, grouping, momentum):
    """The rule t * d_g >= ||W_g||, with d_g the slope of lam-free penalty along W_g, taken here
    by autograd (a directional derivative) instead of the module's Euler formula, and
    t = lr lam / (1 - momentum): the step the penalty takes through SGD's buffer."""
    shape = (6, 5, 3, 3)
    scales = torch.logspace(-4, 0, shape[1] if grouping == "input" else shape[0],
                            dtype=torch.float64)
    w = _weight(4) * (scales.view(1, -1, 1, 1) if grouping == "input" else scales.view(-1, 1, 1, 1))
    mix, lam, lr = 0.7, 0.05 * (1 - momentum), 0.2    # the same t at both momenta
    t = lr * lam / (1 - momentum)
    expected_zero = []
    for g in range(len(scales)):
        wg = (w[:, g:g + 1] if grouping == "input" else w[g:g + 1]).clone().requires_grad_(True)
        f = mix * penalty(wg, reg=reg, levels=levels, outer=outer, grouping=grouping) + (
            1 - mix) * wg.abs().sum()
        (grad,) = torch.autograd.grad(f, wg)
        norm = wg.detach().norm()
        slope = (grad * wg.detach()).sum() / norm
        expected_zero.append(bool(t * slope >= norm))
    assert any(expected_zero) and not all(expected_zero), "the setting must split the groups"
    model = _conv_model(w)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    proximal_step(model, optimizer, reg=reg, levels=levels, outer=outer, grouping=grouping,
                  lam=lam, mix=mix, lr=lr)
    z = model[0].weight.detach()
    for g, zero in enumerate(expected_zero):
        zg = z[:, g] if grouping == "input" else z[g]
        wg = w[:, g] if grouping == "input" else w[g]
        assert torch.equal(zg, torch.zeros_like(zg)) if zero else torch.equal(zg, wg), g


def test_output_grouping_takes_bn_and_momentum_with_the_group():
    torch.manual_seed(0)
    model = build_model("resnet20", 10)
    pairs = conv_bn_pairs(model)
    assert len(pairs) == len(regularized_weights(model)) == 19
    block = model.blocks[1]
    assert pairs[block.conv1] is block.bn1 and pairs[block.conv2] is block.bn2
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    F.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()                                   # momentum buffers exist, all nonzero
    with torch.no_grad():
        block.conv1.weight[[2, 5]] *= 1e-6
    proximal_step(model, opt, reg="group_l12", levels=2, outer="square", grouping="output",
                  lam=1e-3, mix=0.5, lr=0.1)
    for p in (block.conv1.weight, block.bn1.weight, block.bn1.bias):
        assert (p[[2, 5]] == 0).all()
        assert (opt.state[p]["momentum_buffer"][[2, 5]] == 0).all()
    assert zero_filters(model)[1].nonzero().flatten().tolist() == [2, 5]


def _train_proximal(grouping: str, lam: float, steps: int) -> torch.nn.Module:
    """A small ResNet-20 trained with the proximal solver on random 12x12 images."""
    torch.manual_seed(0)
    model = build_model("resnet20", 10)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 12, 12, generator=gen)
    y = torch.randint(0, 10, (64,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    kw = {"reg": "group_l12", "levels": 2, "outer": "square", "grouping": grouping, "mix": 0.5}
    from hgsearch.regularizers import hgsr_loss
    for i in range(steps):
        xb, yb = x[i % 4 * 16:(i % 4 + 1) * 16], y[i % 4 * 16:(i % 4 + 1) * 16]
        loss = F.cross_entropy(model(xb), yb) + hgsr_loss(model, lam=lam, **kw)
        opt.zero_grad()
        loss.backward()
        opt.step()
        proximal_step(model, opt, lam=lam, lr=0.1, **kw)
    return model.eval()


@pytest.mark.parametrize("grouping", ["input", "output"])
def test_a_filter_hgsr_zeroed_is_removable_at_no_loss_cost(grouping):
    model = _train_proximal(grouping, lam=0.1, steps=12)
    dead = zero_filters(model)
    n_dead = int(sum(d.sum() for d in dead))
    assert n_dead >= 5, "the setting must zero some prunable filters"
    keep = [(~d).nonzero().flatten().tolist() or [0] for d in dead]
    compact = prune_model(model, keep).eval()
    assert sum(compact.widths) < sum(model.widths)
    x = torch.randn(48, 3, 12, 12, generator=torch.Generator().manual_seed(9))
    y = torch.randint(0, 10, (48,), generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        ce_dense = F.cross_entropy(model(x), y).item()
        ce_compact = F.cross_entropy(compact(x), y).item()
        assert torch.allclose(compact(x), model(x), rtol=0, atol=1e-5)
    assert ce_compact == pytest.approx(ce_dense, abs=1e-6)
    scores = score_filters(model, x, y, batch_size=64)
    for s, d in zip(scores, dead):
        assert (s[d] == 0).all()          # the paper's criterion sees them as free, too
