"""The regularizer built once per trial (Regularizer, ProximalStep, hgsr_hooks): bitwise the
training the free functions gave when they checked and searched the network on every step, its
options refused once at construction, and its structure bound to the network it was built on."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hgsearch import proximal, regularizers
from hgsearch.config import TrialConfig, make_config
from hgsearch.errors import UserError
from hgsearch.hgsr_hooks import hgsr_hooks
from hgsearch.models import build_model
from hgsearch.proximal import ProximalStep
from hgsearch.regularizers import Regularizer

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the reference: the free functions as they were before the object, every step from scratch


def fresh_penalty(model, *, reg, levels, outer, grouping, lam, mix):
    """The pre-object hgsr_loss: weights found and grouped by shape on every call."""
    weights = regularizers.regularized_weights(model)
    if reg == "none" or lam == 0 or not weights:
        return torch.zeros((), dtype=weights[0].dtype)
    if mix == 0:
        reg = "l1"
    by_shape: dict = {}
    for w in weights:
        by_shape.setdefault(tuple(w.shape), []).append(w)
    r_sum, l1_sum = 0.0, 0.0
    for ws in by_shape.values():
        w = torch.stack(ws) if len(ws) > 1 else ws[0].unsqueeze(0)
        r, l1 = regularizers._stack_terms(w, reg=reg, levels=levels, outer=outer,
                                          grouping=grouping)
        r_sum, l1_sum = r_sum + r, l1_sum + l1
    if reg == "l1" or mix == 1:
        return lam * r_sum
    return (lam * mix) * r_sum + (lam * (1 - mix)) * l1_sum


@torch.no_grad()
def fresh_prox(model, optimizer, *, reg, levels, outer, grouping, lam, mix, lr):
    """The pre-object proximal_step: convs, BatchNorms and checks on every call."""
    t = lr * lam / (1 - proximal._momentum(optimizer))
    ids = {id(w) for w in regularizers.regularized_weights(model)}
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and id(m.weight) in ids]
    bns = proximal.conv_bn_pairs(model)
    dims = proximal._group_dims(grouping)
    for conv in convs:
        w = conv.weight
        if reg == "l1" or (reg == "group_lasso" and levels == 1):
            l1_part = t if reg == "l1" else t * (1 - mix)
            w.copy_(w.sign() * (w.abs() - l1_part).clamp_min(0))
            if reg == "group_lasso":
                norms = torch.linalg.vector_norm(w, dim=dims)
                shrink = (1 - t * mix / norms.clamp_min(torch.finfo(w.dtype).tiny)).clamp_min(0)
                w.mul_(proximal._expand(shrink, grouping))
            dead = torch.linalg.vector_norm(w, dim=dims) == 0
        else:
            norms = torch.linalg.vector_norm(w, dim=dims)
            f = regularizers.group_values(w, reg=reg, levels=levels, outer=outer,
                                          grouping=grouping)
            slope = (mix * proximal.degree(reg, levels, outer) * f
                     + (1 - mix) * w.abs().sum(dims)) / norms.clamp_min(torch.finfo(w.dtype).tiny)
            dead = (t * slope >= norms) | (norms == 0)
            w.mul_(proximal._expand((~dead).to(w.dtype), grouping))
        bn = bns.get(conv)
        if grouping == "output" and bn is not None:
            proximal._forget(optimizer, w, proximal._expand(dead, grouping).expand_as(w))
            for p in (bn.weight, bn.bias):
                p.masked_fill_(dead, 0.0)
                proximal._forget(optimizer, p, dead)


def _train(model, penalty, prox, steps=4):
    """``steps`` momentum-SGD steps on a fixed batch, as train.train takes them; the losses."""
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 16, 16, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        total = loss + penalty(model) if penalty is not None else loss
        losses.append(total.detach().clone())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        if prox is not None:
            prox(model, opt)
    return losses, opt


# (reg, levels, outer, grouping, lam, mix, solver): every branch of the penalty and the step;
# in the proximal cases lam zeroes about half the groups (l1: entries) within the few steps, so
# which ones go depends on every term of the rule.
CASES = [
    ("group_l12", 2, "square", "input", 1e-3, 0.5, "subgradient"),
    ("group_lasso", 1, "sqrt", "output", 2e-2, 0.3, "subgradient"),
    ("exclusive", 2, "sqrt", "input", 1e-4, 1.0, "subgradient"),
    ("group_l12", 1, "square", "output", 1e-2, 0.0, "subgradient"),
    ("l1", 1, "sqrt", "input", 1e-3, 0.5, "subgradient"),
    ("l1", 1, "sqrt", "output", 1e-2, 0.5, "proximal"),
    ("group_lasso", 1, "sqrt", "output", 0.1, 0.6, "proximal"),
    ("group_l12", 2, "sqrt", "output", 0.1, 0.5, "proximal"),
    ("exclusive", 1, "sqrt", "input", 1e-2, 0.2, "proximal"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_the_trials_path_is_bitwise_the_fresh_computation(case):
    reg, levels, outer, grouping, lam, mix, solver = case
    cfg = make_config({"reg": reg, "reg_levels": levels, "reg_outer": outer,
                       "reg_grouping": grouping, "lam": lam, "mix": mix, "reg_solver": solver})
    torch.manual_seed(0)
    built = build_model("resnet20", 10)
    fresh = copy.deepcopy(built)
    penalty, prox = hgsr_hooks(cfg, built)
    got, opt_got = _train(built, penalty, prox)

    opts = dict(reg=reg, levels=levels, outer=outer, grouping=grouping, lam=lam, mix=mix)
    exact_op = solver == "proximal" and proximal.exact(reg, levels)
    want, opt_want = _train(
        fresh, None if exact_op else (lambda m: fresh_penalty(m, **opts)),
        (lambda m, o: fresh_prox(m, o, lr=o.param_groups[0]["lr"], **opts))
        if solver == "proximal" else None)

    assert all(torch.equal(a, b) for a, b in zip(got, want))
    for (name, a), b in zip(built.named_parameters(), fresh.parameters()):
        assert torch.equal(a, b), name
        assert torch.equal(opt_got.state[a]["momentum_buffer"],
                           opt_want.state[b]["momentum_buffer"]), name
    if solver == "proximal":   # the step has teeth: some groups (l1: entries) at 0, not all
        dims = proximal._group_dims(grouping)
        zero = [((w == 0) if reg == "l1" else (w.abs().sum(dims) == 0)).flatten()
                for w in regularizers.regularized_weights(built)]
        assert 0.1 < torch.cat(zero).double().mean() < 0.9


def test_penalty_and_step_neither_check_nor_search_the_network(monkeypatch):
    torch.manual_seed(0)
    model = build_model("resnet20", 10)
    r = Regularizer(model, reg="group_l12", levels=2, outer="sqrt", grouping="output",
                    lam=1.0, mix=0.5)
    step = ProximalStep(r)
    expected = fresh_penalty(model, reg="group_l12", levels=2, outer="sqrt", grouping="output",
                             lam=1.0, mix=0.5)

    def boom(*args, **kwargs):
        raise AssertionError("per-step check or search")

    for module, name in ((regularizers, "check_options"), (regularizers, "_check_key"),
                         (regularizers, "_check_weight"), (regularizers, "regularized_weights"),
                         (proximal, "conv_bn_pairs"), (proximal, "regularized_weights")):
        monkeypatch.setattr(module, name, boom)
    assert torch.equal(r.penalty(model), expected)
    step.step(model, None, lr=0.1)


@pytest.mark.parametrize("options, key", [
    ({"reg": "l3"}, "reg="), ({"levels": 3}, "reg_levels="), ({"levels": True}, "reg_levels="),
    ({"outer": "cube"}, "reg_outer="), ({"grouping": "kernel"}, "reg_grouping="),
    ({"lam": -1.0}, "lam="), ({"lam": float("nan")}, "lam="), ({"mix": 1.5}, "mix="),
    ({"mix": float("nan")}, "mix="),
])
def test_a_bad_option_is_refused_at_construction_naming_its_key(options, key):
    good = dict(reg="group_l12", levels=2, outer="square", grouping="input", lam=1e-3, mix=0.5)
    with pytest.raises(UserError) as err:
        Regularizer(build_model("resnet20", 10), **{**good, **options})
    assert len(err.value.problems) == 1 and err.value.problems[0].startswith(key)
    assert "\n" not in err.value.problems[0]


def test_a_config_that_skipped_validation_is_refused_when_the_regularizer_is_built():
    cfg = dataclasses.replace(TrialConfig(), reg_outer="cube")   # no make_config: no checks
    with pytest.raises(UserError, match=r"^reg_outer='cube': allowed values are sqrt, square$"):
        hgsr_hooks(cfg, build_model("resnet20", 10))


def test_the_structure_is_the_networks_it_was_built_on():
    torch.manual_seed(0)
    model = build_model("resnet20", 10)
    other = copy.deepcopy(model)
    r = Regularizer(model, reg="group_l12", levels=2, outer="square", grouping="input",
                    lam=1e-3, mix=0.5)
    with pytest.raises(ValueError, match="another network"):
        r.penalty(other)
    with pytest.raises(ValueError, match="another network"):
        ProximalStep(r).step(other, None, lr=0.1)
    # a pruned network (other widths, other convs) gets its own
    pruned = build_model("resnet20", 10, [8] * 9)
    assert torch.equal(r.on(pruned).penalty(pruned),
                       fresh_penalty(pruned, reg="group_l12", levels=2, outer="square",
                                     grouping="input", lam=1e-3, mix=0.5))


def test_hooks_weigh_by_the_fresh_network_and_act_on_the_trained_one():
    """On resume the trained network is rebuilt from the checkpoint: lam_scale=init still divides
    by the fresh network's penalty, and the hooks act on the rebuilt one."""
    cfg = make_config({"lam": 0.7, "lam_scale": "init"})
    torch.manual_seed(0)
    fresh = build_model("resnet20", 10)
    trained = build_model("resnet20", 10)     # other weights
    opts = dict(reg=cfg.reg, levels=cfg.reg_levels, outer=cfg.reg_outer,
                grouping=cfg.reg_grouping, mix=cfg.mix)
    at_init = float(fresh_penalty(fresh, lam=1.0, **opts).detach())
    penalty, _ = hgsr_hooks(cfg, fresh, trained=trained)
    assert torch.equal(penalty(trained), fresh_penalty(trained, lam=0.7 / at_init, **opts))
    with pytest.raises(ValueError, match="another network"):
        penalty(fresh)
