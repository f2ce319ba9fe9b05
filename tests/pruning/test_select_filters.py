from __future__ import annotations

import logging
import math

import pytest
import torch

from hgsearch.config import FIELDS, check
from hgsearch.errors import UserError
from hgsearch.metrics import count_macs, count_params, inner_channel_costs
from hgsearch.models import build_model, default_widths
from hgsearch.pruning import prune
from hgsearch.pruning.scoring import score_filters
from hgsearch.pruning.select_filters import select_filters, select_keep
from hgsearch.pruning.surgery import mask_model
from tests.nets import randomized_net

SIZE = (32, 32)


pytestmark = pytest.mark.usefixtures("one_thread")


def t(*rows: list[float]) -> list[torch.Tensor]:
    return [torch.tensor(r, dtype=torch.float64) for r in rows]


# --- hand-computed selections


def test_global_removes_the_lowest_deltas_across_blocks():
    # 5 channels, ratio 0.4: the two lowest deltas anywhere go (0.05 in block 1, 0.1 in block 0).
    assert select_keep(t([0.3, 0.1, 0.2], [0.05, 0.4]), ratio=0.4) == [[0, 2], [1]]


def test_layer_removes_the_same_share_of_every_block():
    scores = t([4, 3, 2, 1], [8, 7, 6, 5, 4, 3, 2, 1])
    assert select_keep(scores, ratio=0.5, scope="layer") == [[0, 1], [0, 1, 2, 3]]
    # Globally: the six lowest deltas, 1, 1, 2, 2, 3, 3, three from each block.
    assert select_keep(scores, ratio=0.5, scope="global") == [[0], [0, 1, 2, 3, 4]]


def test_ties_go_earlier_block_first_then_lower_index():
    assert select_keep(t([0, 0], [0, 0]), ratio=0.5) == [[1], [1]]
    # 3 of 6 go: block 0 down to min_channels=1, then block 1's channel 0.
    assert select_keep(t([0, 0, 0], [0, 0, 0]), ratio=0.34) == [[2], [1, 2]]


def test_nan_deltas_go_last():
    assert select_keep(t([math.nan, 0.5, 0.1]), ratio=0.5) == [[0]]


def test_round_to_removes_chunks_ranked_by_their_largest_delta():
    # Chunks of 4: block 0 may go 8 -> 4 (key 3.0); block 1 16 -> 12 -> 8 -> 4 (keys 13, 17, 21).
    scores = t([float(v) for v in range(8)], [float(v) for v in range(10, 26)])
    keep = select_keep(scores, ratio=0.5, round_to=4)     # 12 of 24 channels
    assert keep == [[4, 5, 6, 7], list(range(8, 16))]


def test_a_width_below_round_to_or_not_a_multiple_stays_allowed():
    scores = t([1.0] * 3, [float(v) for v in range(6)])   # widths 3 (< 4) and 6 (not a multiple)
    assert [len(k) for k in select_keep(scores, ratio=0.0, round_to=4)] == [3, 6]
    assert [len(k) for k in select_keep(scores, ratio=0.9, round_to=4)] == [3, 4]


def test_an_unreachable_target_removes_what_it_may_and_says_so(caplog):
    scores = t([0.1] * 4, [0.2] * 8)
    with caplog.at_level(logging.WARNING):
        chosen = select_filters(scores, ratio=0.9, min_channels=4)
    assert [len(k) for k in chosen.keep] == [4, 4]
    assert chosen.removed == 4 and chosen.needed == 11
    assert "not reached" in chosen.note and "min_channels=4" in caplog.text


@pytest.mark.parametrize("kwargs,key", [
    ({"ratio": 1.0}, "prune_ratio"), ({"ratio": -0.1}, "prune_ratio"),
    ({"ratio": 0.5, "target": "flops"}, "prune_target"),
    ({"ratio": 0.5, "scope": "stage"}, "prune_scope"),
    ({"ratio": 0.5, "min_channels": 0}, "min_channels"),
    ({"ratio": 0.5, "round_to": 0}, "round_to"),
])
def test_bad_settings_name_their_key(kwargs, key):
    with pytest.raises(UserError, match=key):
        select_keep(t([0.1, 0.2]), **kwargs)


@pytest.mark.parametrize("arg, key", [("ratio", "prune_ratio"), ("min_channels", "min_channels"),
                                      ("round_to", "round_to")])
def test_each_setting_has_its_trial_keys_range(arg, key):
    """One range per key: the bounds are TrialConfig's, refused with config's own message."""
    lo, hi = FIELDS[key].metadata["lo"], FIELDS[key].metadata["hi"]
    ok = {"ratio": 0.0, "min_channels": 1, "round_to": 1}
    step = 0.01 if arg == "ratio" else 1
    for inside in (lo, hi):
        select_keep(t([0.1, 0.2]), **{**ok, arg: inside})
    for outside in (lo - step, hi + step):
        with pytest.raises(UserError) as err:
            select_keep(t([0.1, 0.2]), **{**ok, arg: outside})
        assert err.value.problems == [check(key, outside)]


# --- properties over random scores, against the rebuilt network's own counts


def naive_global(scores, *, needed, costs, min_channels):
    """The rule written plainly: one filter at a time by (delta, block, index)."""
    order = sorted((float(d), b, c) for b, s in enumerate(scores) for c, d in enumerate(s))
    widths, gone, removed = [len(s) for s in scores], set(), 0
    for _d, b, c in order:
        if removed >= needed:
            break
        if widths[b] > min_channels:
            widths[b] -= 1
            gone.add((b, c))
            removed += costs[b]
    return [[c for c in range(len(s)) if (b, c) not in gone] for b, s in enumerate(scores)]


def measure(widths, target):
    model = build_model("resnet20", 10, widths)
    return {"channels": sum(widths), "params": count_params(model),
            "macs": count_macs(model, SIZE)}[target]


@pytest.fixture(scope="module")
def costs():
    per = inner_channel_costs(build_model("resnet20", 10), SIZE)
    return {"channels": [1] * len(per), "params": [c.params for c in per],
            "macs": [c.macs for c in per]}


@pytest.mark.parametrize("target", ["channels", "params", "macs"])
@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("round_to,min_channels", [(1, 1), (1, 6), (4, 1), (8, 8)])
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.7, 0.9])
def test_selection_properties(target, scope, round_to, min_channels, ratio, costs):
    widths = default_widths("resnet20")
    gen = torch.Generator().manual_seed(int(ratio * 10) + 7 * round_to + min_channels)
    scores = [torch.rand(w, generator=gen, dtype=torch.float64) for w in widths]
    total = measure(widths, target)
    chosen = select_filters(scores, ratio=ratio, target=target, scope=scope,
                            min_channels=min_channels, round_to=round_to,
                            cost_per_channel=costs[target], total_cost=total)
    kept = [len(k) for k in chosen.keep]
    lo = -(-min_channels // round_to) * round_to
    for k, w, s in zip(chosen.keep, widths, scores):
        assert k == sorted(set(k)) and 0 <= k[0] and k[-1] < w
        assert len(k) == w or (len(k) % round_to == 0 and len(k) >= lo)
        gone = [c for c in range(w) if c not in k]
        if gone:                                          # lowest deltas of the block went
            assert s[gone].max() <= s[k].min()
    final = measure(kept, target)
    assert total - final == chosen.removed
    if ratio == 0:
        assert kept == widths
    if not chosen.note:
        assert final <= (1 - ratio) * total * (1 + 1e-12)
        unit = max(round_to * c for c in costs[target])
        assert (total - final) - ratio * total < unit      # at most one unit beyond the target
    else:
        assert all(n == lo for n in kept)                 # stopped only when nothing may go
    if scope == "global" and round_to == 1:
        assert chosen.keep == naive_global(scores, needed=chosen.needed, costs=costs[target],
                                           min_channels=min_channels)
    if scope == "layer":
        share = [1 - n / w for n, w in zip(kept, widths)]
        for n, w, f in zip(kept, widths, share):
            if n > lo:                                    # not pinned: within one unit of the max
                assert f >= max(share) - round_to / w - 1e-12


# --- prune: score, select and remove in several rounds


@pytest.fixture(scope="module")
def net_and_sample():
    model = randomized_net("resnet20", seed=0, shift=None)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 8, 8, generator=gen)
    return model, x, torch.randint(0, 10, (8,), generator=gen)


@pytest.mark.parametrize("steps,target", [(1, "channels"), (2, "params"), (3, "macs")])
def test_prune_in_rounds_reaches_the_target_with_original_indices(net_and_sample, steps, target):
    model, x, y = net_and_sample
    size = (8, 8)
    measure_of = {"channels": lambda m: sum(m.widths), "params": count_params,
                  "macs": lambda m: count_macs(m, size)}[target]
    result = prune(model, x, y, ratio=0.5, target=target, steps=steps, batch_size=32,
                   input_size=size)
    compact, keep = result.model, result.keep
    assert result.note == "" and compact.widths == [len(k) for k in keep]
    assert measure_of(compact) <= 0.5 * measure_of(model)
    assert model.widths == default_widths("resnet20")   # the original is untouched
    with torch.no_grad(), mask_model(model, keep):
        masked = model(x)
    assert (compact(x) - masked).abs().max() < 1e-4      # indices refer to the original
    for s, k, w in zip(result.scores, keep, model.widths):
        assert len(s) == w and torch.isfinite(s[k]).all()
        if steps == 1:
            assert torch.isfinite(s).all()


def test_one_round_of_prune_is_score_then_select(net_and_sample):
    model, x, y = net_and_sample
    result = prune(model, x, y, ratio=0.3, scope="layer", round_to=2, batch_size=32)
    scores = score_filters(model, x, y, batch_size=32)
    assert result.keep == select_keep(scores, ratio=0.3, scope="layer", round_to=2)
    assert all(torch.equal(a, b) for a, b in zip(result.scores, scores))


def test_prune_ratio_zero_keeps_everything(net_and_sample):
    model, x, y = net_and_sample
    result = prune(model, x, y, ratio=0.0, steps=2, batch_size=32)
    assert result.model.widths == model.widths and result.model is not model
