"""HGSR against the docs/method.md part 1 table, computed independently with numpy loops."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from hgsearch import regularizers as R
from hgsearch.errors import UserError
from hgsearch.models import build_model
from hgsearch.regularizers import (
    group_norms,
    hgsr_loss,
    penalty,
    regularized_weights,
)

VARIANTS = list(itertools.product(
    ("none", "l1", "group_lasso", "exclusive", "group_l12"), (1, 2), ("sqrt", "square"),
    ("input", "output")))
GROUP_VARIANTS = [v for v in VARIANTS if v[0] not in ("none", "l1")]
# the variants that take a square root somewhere (all but exclusive with a square outside)
SQRT_VARIANTS = [v for v in GROUP_VARIANTS if v[0] != "exclusive" or (v[1] == 2 and v[2] == "sqrt")]


def ids(v: tuple) -> str:
    return "-".join(str(x) for x in v)


def ref_penalty(W: np.ndarray, reg: str, levels: int, outer: str, grouping: str) -> float:
    """The docs/method.md part 1 table, one group and one kernel at a time (float64)."""
    W = np.asarray(W, dtype=np.float64)
    if reg == "none":
        return 0.0
    if reg == "l1":
        return float(np.abs(W).sum())
    n_out, n_in = W.shape[:2]
    groups = range(n_in) if grouping == "input" else range(n_out)

    def kernels(g: int) -> list[np.ndarray]:
        if grouping == "input":
            return [W[i, g] for i in range(n_out)]
        return [W[g, j] for j in range(n_in)]

    def family(w: np.ndarray) -> float:   # the one-level penalty of one group of weights
        if reg == "group_lasso":
            return math.sqrt(np.sum(w * w))
        if reg == "exclusive":
            return np.sum(np.abs(w)) ** 2
        return math.sqrt(np.sum(np.abs(w)))

    total = 0.0
    for g in groups:
        ks = kernels(g)
        if levels == 1:
            total += family(np.concatenate([k.ravel() for k in ks]))
            continue
        inner = sum(family(k) for k in ks)
        total += math.sqrt(inner) if outer == "sqrt" else inner ** 2
    return total


def weight_with_zeros(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random float64 weight with some single kernels and one whole input and output group zero."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=g, dtype=torch.float64)
    w[0, 1] = 0            # one kernel
    w[2, 0] = 0            # another kernel
    w[:, 2] = 0            # a whole input group
    w[1] = 0               # a whole output group
    return w


SHAPES = [(5, 4, 3, 3), (2, 6, 3, 3)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("variant", VARIANTS, ids=ids)
def test_penalty_matches_table(variant: tuple, shape: tuple) -> None:
    reg, levels, outer, grouping = variant
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = penalty(w, reg=reg, levels=levels, outer=outer, grouping=grouping)
    assert got.dim() == 0
    assert got.item() == pytest.approx(ref_penalty(w.numpy(), *variant), rel=1e-12, abs=1e-12)


def test_groupings_differ() -> None:
    # guards the test above: with out != in the two groupings must give different values
    w = torch.randn(5, 4, 3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a = penalty(w, reg="group_l12", levels=2, outer="square", grouping="input")
    b = penalty(w, reg="group_l12", levels=2, outer="square", grouping="output")
    assert abs(a.item() - b.item()) > 1e-3


@pytest.mark.parametrize("variant", VARIANTS, ids=ids)
def test_zero_kernels_and_groups_finite(variant: tuple) -> None:
    reg, levels, outer, grouping = variant
    w = weight_with_zeros((5, 4, 3, 3), seed=3).requires_grad_()
    value = penalty(w, reg=reg, levels=levels, outer=outer, grouping=grouping)
    value.backward()
    assert math.isfinite(value.item())
    assert value.item() == pytest.approx(ref_penalty(w.detach().numpy(), *variant), rel=1e-12)
    assert torch.isfinite(w.grad).all()
    zero = w.detach() == 0
    assert (w.grad[zero] == 0).all()        # the slope chosen at 0
    # away from zero: the true partial derivatives, by a central difference of the numpy table
    W = w.detach().numpy()
    rng = np.random.default_rng(4)
    for idx in map(tuple, rng.permutation(np.argwhere(~zero.numpy()))[:12]):
        h = 1e-6
        up, down = W.copy(), W.copy()
        up[idx] += h
        down[idx] -= h
        fd = (ref_penalty(up, *variant) - ref_penalty(down, *variant)) / (2 * h)
        assert w.grad[idx].item() == pytest.approx(fd, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("variant", SQRT_VARIANTS, ids=ids)
def test_plain_sqrt_would_give_nan(variant: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    # guards the test above: without the safe square root, zeros do produce NaN or inf
    reg, levels, outer, grouping = variant
    monkeypatch.setattr(R, "_sqrt", torch.sqrt)
    w = weight_with_zeros((5, 4, 3, 3), seed=3).requires_grad_()
    penalty(w, reg=reg, levels=levels, outer=outer, grouping=grouping).backward()
    assert not torch.isfinite(w.grad).all()


@pytest.mark.parametrize("variant", GROUP_VARIANTS, ids=ids)
def test_gradcheck_away_from_zero(variant: tuple) -> None:
    reg, levels, outer, grouping = variant
    g = torch.Generator().manual_seed(5)
    # entries at least 0.1 from zero, so |x| is smooth within gradcheck's step
    w = (torch.rand(3, 4, 3, 3, generator=g, dtype=torch.float64) + 0.1)
    w = w * torch.randint(0, 2, w.shape, generator=g).mul(2).sub(1)
    w.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: penalty(x, reg=reg, levels=levels, outer=outer, grouping=grouping), (w,))


def test_safe_sqrt() -> None:
    x = torch.tensor([0.0, 1e-30, 0.25, 4.0, 1e30], requires_grad=True)
    y = R._sqrt(x)
    assert torch.equal(y, torch.sqrt(x.detach()))     # the value is torch.sqrt's, bit for bit
    y.sum().backward()
    expected = torch.tensor([0.0, 0.5e15, 1.0, 0.25, 0.5e-15])
    torch.testing.assert_close(x.grad, expected)


def test_regularized_weights_are_the_3x3_convs() -> None:
    model = build_model("resnet20", 10)
    expected = [model.stem[0].weight]
    for block in model.blocks:
        expected += [block.conv1.weight, block.conv2.weight]
    got = regularized_weights(model)
    assert len(got) == len(expected) == 19
    assert all(a is b for a, b in zip(got, expected))
    shortcuts = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(shortcuts) == 2           # resnet20 has projections, so the exclusion is exercised
    assert not any(s.weight is w for s in shortcuts for w in got)


@pytest.mark.parametrize("variant", [
    ("group_l12", 2, "square", "input", 1e-3, 0.5),
    ("group_lasso", 1, "sqrt", "output", 2e-2, 0.3),
    ("exclusive", 2, "sqrt", "input", 1e-4, 1.0),
    ("group_l12", 1, "square", "output", 1e-2, 0.0),
    ("l1", 2, "square", "input", 1e-3, 0.5),
], ids=ids)
def test_hgsr_loss_sums_the_3x3_convs_by_hand(variant: tuple) -> None:
    reg, levels, outer, grouping, lam, mix = variant
    torch.manual_seed(0)
    model = build_model("resnet20", 10)
    convs = [model.stem[0]] + [c for b in model.blocks for c in (b.conv1, b.conv2)]
    Ws = [c.weight.detach().numpy() for c in convs]
    # the table's loops are the slow part; at mix=0 R has weight 0 and is not needed
    r = sum(ref_penalty(W, reg, levels, outer, grouping) for W in Ws) if mix > 0 else 0.0
    l1 = sum(float(np.abs(W.astype(np.float64)).sum()) for W in Ws)
    expected = lam * (mix * r + (1 - mix) * l1)
    got = hgsr_loss(model, reg=reg, levels=levels, outer=outer, grouping=grouping, lam=lam, mix=mix)
    assert got.item() == pytest.approx(expected, rel=1e-5)

    got.backward()
    # shortcut convs, fc, BatchNorm: no gradient from the penalty
    for name, p in model.named_parameters():
        if not any(p is c.weight for c in convs):
            assert p.grad is None, name
    # the stacked computation has the gradient of the per-layer sum
    grads = [c.weight.grad.clone() for c in convs]
    model.zero_grad()
    per_layer = sum(lam * (mix * penalty(c.weight, reg=reg, levels=levels, outer=outer,
                                          grouping=grouping) + (1 - mix) * c.weight.abs().sum())
                    for c in convs)
    per_layer.backward()
    for c, g in zip(convs, grads):
        torch.testing.assert_close(g, c.weight.grad)


def test_hgsr_loss_ignores_other_parameters() -> None:
    torch.manual_seed(0)
    model = build_model("resnet20", 10)
    opts = dict(reg="group_l12", levels=2, outer="square", grouping="input", lam=1e-3, mix=0.5)
    before = hgsr_loss(model, **opts).item()
    with torch.no_grad():
        for p in model.parameters():
            if not any(p is w for w in regularized_weights(model)):
                p.add_(1.0)
    assert hgsr_loss(model, **opts).item() == before
    with torch.no_grad():
        model.blocks[3].conv2.weight.mul_(2.0)
    assert hgsr_loss(model, **opts).item() != before


@pytest.mark.parametrize("reg, lam", [("none", 1e-3), ("group_l12", 0.0)])
def test_hgsr_loss_zero_is_free(reg: str, lam: float) -> None:
    model = build_model("resnet20", 10)
    got = hgsr_loss(model, reg=reg, levels=2, outer="square", grouping="input", lam=lam, mix=0.5)
    assert got.dim() == 0 and got.item() == 0.0
    assert not got.requires_grad and got.grad_fn is None


def test_hgsr_loss_l1_ignores_mix() -> None:
    model = build_model("resnet20", 10)
    l1 = sum(w.detach().abs().sum() for w in regularized_weights(model)).item()
    for mix in (0.0, 0.3, 1.0):
        got = hgsr_loss(model, reg="l1", levels=1, outer="sqrt", grouping="output", lam=0.5,
                        mix=mix)
        assert got.item() == pytest.approx(0.5 * l1, rel=1e-5)


@pytest.mark.parametrize("grouping", ["input", "output"])
def test_group_norms(grouping: str) -> None:
    w = weight_with_zeros((5, 4, 3, 3), seed=6)
    W = w.numpy()
    if grouping == "input":
        ref = [math.sqrt(sum(x * x for i in range(5) for x in W[i, j].ravel())) for j in range(4)]
    else:
        ref = [math.sqrt(sum(x * x for j in range(4) for x in W[i, j].ravel())) for i in range(5)]
    np.testing.assert_allclose(group_norms(w, grouping=grouping).numpy(), ref, rtol=1e-12)


@pytest.mark.parametrize("call, key", [
    (lambda: penalty(torch.ones(2, 2, 3, 3), reg="l3", levels=1, outer="sqrt",
                     grouping="input"), "reg="),
    (lambda: penalty(torch.ones(2, 2, 3, 3), reg="l1", levels=3, outer="sqrt",
                     grouping="input"), "reg_levels="),
    (lambda: penalty(torch.ones(2, 2, 3, 3), reg="l1", levels=True, outer="sqrt",
                     grouping="input"), "reg_levels="),
    (lambda: penalty(torch.ones(2, 2, 3, 3), reg="l1", levels=1, outer="cube",
                     grouping="input"), "reg_outer="),
    (lambda: penalty(torch.ones(2, 2, 3, 3), reg="l1", levels=1, outer="sqrt",
                     grouping="kernel"), "reg_grouping="),
    (lambda: hgsr_loss(build_model("resnet20", 10), reg="l1", levels=1, outer="sqrt",
                       grouping="input", lam=-1.0, mix=0.5), "lam="),
    (lambda: hgsr_loss(build_model("resnet20", 10), reg="l1", levels=1, outer="sqrt",
                       grouping="input", lam=float("nan"), mix=0.5), "lam="),
    (lambda: hgsr_loss(build_model("resnet20", 10), reg="l1", levels=1, outer="sqrt",
                       grouping="input", lam=1e-3, mix=1.5), "mix="),
    (lambda: group_norms(torch.ones(2, 2, 3, 3), grouping="both"), "reg_grouping="),
])
def test_user_errors(call, key: str) -> None:
    with pytest.raises(UserError) as err:
        call()
    assert len(err.value.problems) == 1 and err.value.problems[0].startswith(key)
