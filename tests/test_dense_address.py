"""The dense address is exact: two configurations with one address train one network.

Pairs of configurations (seeded), each side trained briefly as a trial's dense phase trains
(``trial.hgsr_hooks``, ``train.sgd_settings``, ``train.train``) on a narrow ResNet-20 and 8x8
images. Equal address (``dense_store.dense_key``) must mean bitwise equal weights; equivalently,
weights that differ must have addresses that differ. Two kinds of pairs:

- random pairs, most differing in exactly one key that reaches the dense training;
- rule pairs: for every rule of ``inapplicable.INAPPLICABLE_RULES`` that switches off such a key, a
  configuration where the rule applies, under each solver, and the same with that key changed.
  Random pairs rarely land on a rule's edge (mix exactly 0 under the proximal step, say); these
  do by construction.

The fast tests draw 24 random pairs and every rule's pairs; the slow one 400 random pairs.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from hgsearch.config import FIELDS, make_config
from hgsearch.data import DeviceData
from hgsearch.dense_store import dense_key
from hgsearch.hgsr_hooks import hgsr_hooks
from hgsearch.inapplicable import INAPPLICABLE_RULES
from hgsearch.models import build_model
from hgsearch.runtime import resolve_runtime
from hgsearch.train import Diverged, sgd_settings, train

pytestmark = pytest.mark.usefixtures("one_thread")

RUNTIME = resolve_runtime("cpu")
WIDTHS = [4] * 9
# The keys drawn, each from values that make it matter in a short training: lam large enough
# to zero groups within a few steps, mix often at its ends (where rules switch keys off).
HGSR = ("reg", "reg_levels", "reg_outer", "reg_grouping", "lam", "mix", "reg_solver",
        "lam_scale")
TRAIN = ("momentum", "nesterov", "weight_decay", "lr", "schedule", "seed")


def _draw(key: str, rng: random.Random):
    if key == "lam":
        return rng.choice([0.0, 10 ** rng.uniform(-1.5, 0.5)])
    if key == "mix":
        return rng.choice([0.0, 1.0, round(rng.uniform(0, 1), 3)])
    if key == "momentum":
        return rng.choice([0.0, 0.9])
    if key == "weight_decay":
        return rng.choice([0.0, 5e-4])
    if key == "lr":
        return rng.choice([0.05, 0.2])
    if key == "seed":
        return rng.choice([0, 1])
    if key == "nesterov":
        return rng.choice([False, True])
    return rng.choice(FIELDS[key].metadata["choices"])


def _config(rng: random.Random) -> dict:
    return {k: _draw(k, rng) for k in HGSR + TRAIN}


def pairs(n: int, seed: int) -> list[tuple[dict, dict]]:
    """n pairs: 3 in 4 differ in one key (an HGSR key 3 times in 4), the rest anywhere."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        a = _config(rng)
        if rng.random() < 0.75:
            key = rng.choice(HGSR) if rng.random() < 0.75 else rng.choice(TRAIN)
            b = {**a, key: _draw(key, rng)}
        else:
            b = _config(rng)
        if a != b:
            out.append((a, b))
    return out


_DATA = None


def _data() -> DeviceData:
    global _DATA
    if _DATA is None:
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (48, 3, 8, 8), generator=gen, dtype=torch.uint8)
        y = torch.randint(0, 4, (48,), generator=gen)
        _DATA = DeviceData(x, y, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), device="cpu")
    return _DATA


def trained(values: dict) -> dict[str, torch.Tensor]:
    """The dense network ``values`` trains (3 steps), as phases.run_phases seeds it. A run that
    diverges (a large lam at the larger lr can) is an outcome too: its weights as they stood,
    and the epoch it diverged in under ``"diverged"``."""
    cfg = make_config({**values, "epochs": 1, "batch_size": 16, "device": "cpu"})
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, 4, WIDTHS)
    penalty, prox = hgsr_hooks(cfg, model)
    outcome = {}
    try:
        train(model, _data(), settings=sgd_settings(cfg, cfg.epochs, cfg.lr, dense=True),
              runtime=RUNTIME, generator=torch.Generator().manual_seed(cfg.seed),
              penalty=penalty, after_step=prox, log=None)
    except Diverged as exc:
        outcome["diverged"] = torch.tensor(exc.epoch)
    return {**{k: v.detach().clone() for k, v in model.state_dict().items()}, **outcome}


def address(values: dict) -> str:
    return dense_key(make_config(values), None, RUNTIME, fingerprint="same data")


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Bitwise equal, NaN included (a diverged run's NaN equals the same run's NaN)."""
    def raw(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous().view(-1).view(torch.uint8)

    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and torch.equal(raw(a[k]), raw(b[k])) for k in a)


def rule_pairs(seed: int) -> list[tuple[dict, dict]]:
    """For each rule, each dense key it switches off and each solver (once for subgradients,
    twice for the proximal step, whose rules are the finer ones): a configuration where that
    rule alone switches the key off, and the same with the key changed (none where the rule
    never is the only reason, or holds under one solver only)."""
    rng = random.Random(seed)
    defaults = {k: f.default for k, f in FIELDS.items()}
    out = []
    for i, (applies, keys, _why) in enumerate(INAPPLICABLE_RULES):
        others = INAPPLICABLE_RULES[:i] + INAPPLICABLE_RULES[i + 1:]
        for key in (k for k in keys if k in HGSR + TRAIN):
            for solver, draws in (("subgradient", 1), ("proximal", 2)):
                found = []
                for _ in range(2000):
                    a = {**_config(rng), "reg_solver": solver}
                    merged = {**defaults, **a}
                    if applies(merged) and not any(
                            key in ks and other(merged) for other, ks, _ in others):
                        found.append(a)
                        if len(found) == draws:
                            break
                for a in found:
                    b = dict(a)
                    while b[key] == a[key]:
                        b[key] = _draw(key, rng)
                    out.append((a, b))
    return out


def check_pairs(pair_list: list[tuple[dict, dict]], *, same: bool = False) -> dict[str, int]:
    """Train both sides of each pair; ``same``: the rules call each pair one network."""
    cache: dict[str, dict[str, torch.Tensor]] = {}

    def weights(values: dict) -> dict[str, torch.Tensor]:
        key = repr(sorted(values.items()))
        if key not in cache:
            cache[key] = trained(values)
        return cache[key]

    counts = {"same address": 0, "other address, same weights": 0, "differ": 0}
    for a, b in pair_list:
        same_address = address(a) == address(b)
        diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
        same_weights = _same(weights(a), weights(b))
        # differing weights imply differing addresses (equal address implies equal weights)
        assert same_weights or not same_address, f"one address, two networks: {a} vs {diff}"
        assert same_weights or not same, f"the rules null {diff} in {a}, the weights differ"
        assert same_address or not same, f"the rules null {diff} in {a}, the address does not"
        counts["same address" if same_address else
               "other address, same weights" if same_weights else "differ"] += 1
    return counts


def test_the_weights_are_finite_and_moved_by_the_keys():
    """The setting has teeth: lam, solver, level and grouping each move the weights of a short
    run, the grouping of l1 and the level at mix=0 too under the proximal step."""
    base = {"reg": "group_l12", "reg_levels": 1, "mix": 1.0, "lam": 0.5, "reg_solver": "proximal",
            "reg_grouping": "output"}
    w = trained(base)
    assert all(torch.isfinite(v).all() for v in w.values() if v.is_floating_point())
    for change in ({"lam": 0.05}, {"reg_solver": "subgradient"}, {"reg_grouping": "input"},
                   {"reg_levels": 2}):
        assert not _same(w, trained({**base, **change})), change
    l1 = {"reg": "l1", "lam": 1.0, "reg_solver": "proximal", "reg_grouping": "output"}
    assert not _same(trained(l1), trained({**l1, "reg_grouping": "input"}))
    flat = {"reg": "group_lasso", "reg_levels": 1, "mix": 0.0, "lam": 0.1,
            "reg_solver": "proximal"}
    assert not _same(trained(flat), trained({**flat, "reg_levels": 2}))


def test_one_address_one_network_on_random_pairs():
    counts = check_pairs(pairs(24, seed=0))
    # many pairs share an address (an inapplicable key changed), many do not
    assert counts["same address"] >= 4 and counts["differ"] >= 4, counts


def test_each_rule_switches_off_only_keys_that_leave_the_network_alone():
    pair_list = rule_pairs(seed=0)
    mix_zero = {(a["reg_solver"], k) for a, b in pair_list if a["mix"] == 0 and a["lam"] > 0
                and a["reg"] not in ("none", "l1") for k in a if a[k] != b[k]}
    assert {("proximal", "reg_outer"), ("subgradient", "reg_levels"),
            ("subgradient", "reg_grouping"), ("proximal", "reg_levels")} <= mix_zero
    check_pairs(pair_list, same=True)


@pytest.mark.slow
def test_one_address_one_network_on_many_random_pairs():
    counts = check_pairs(pairs(400, seed=1))
    assert counts["same address"] >= 60 and counts["differ"] >= 60, counts
    assert math.isfinite(sum(counts.values()))
