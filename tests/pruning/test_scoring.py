from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hgsearch.bench.scoring import measure_scoring_speedup
from hgsearch.models import build_model
from hgsearch.pruning.scoring import mean_ce, score_filters, score_filters_reference
from hgsearch.pruning.surgery import prune_model
from tests.nets import randomized_net, reference_scores, scoring_sample

DEAD = ((0, 3), (4, 0), (4, 5), (8, 63))   # (block, channel) forced to output exactly zero


pytestmark = pytest.mark.usefixtures("one_thread")


def scoring_net(seed: int = 0) -> torch.nn.Module:
    """ResNet-20 with random BatchNorm statistics, sharp logits and a few dead filters."""
    model = randomized_net("resnet20", seed=seed, sharpen=4)
    for b, c in DEAD:
        model.blocks[b].bn1.weight.data[c] = 0
        model.blocks[b].bn1.bias.data[c] = -1
    return model.eval()


@pytest.fixture(scope="module")
def sample():
    return scoring_sample(24, 8)


@pytest.fixture(scope="module")
def reference(sample):
    """Reference deltas in float64 (computed once: 336 full forwards)."""
    return reference_scores(scoring_net(), *sample)


def test_reference_equals_loss_difference_of_rebuilt_networks(sample, reference):
    """For a few filters: build the network without that filter and compare losses directly."""
    x, y = sample
    model = scoring_net().double()
    with torch.no_grad():
        base = F.cross_entropy(model(x), y).item()
        for b, c in ((0, 0), (3, 7), (5, 31), (8, 10)):
            keep = [list(range(w)) for w in model.widths]
            del keep[b][c]
            smaller = prune_model(model, keep)
            direct = F.cross_entropy(smaller(x), y).item() - base
            assert reference[b][c].item() == pytest.approx(direct, rel=1e-9, abs=1e-12)
    assert max(s.abs().max().item() for s in reference) > 1e-3   # the deltas are not all ~0


@pytest.mark.parametrize("batch_size", [5, 24, 50])   # chunks + remainder, one chunk, stacked
def test_fast_scores_equal_reference_in_float64(sample, reference, batch_size):
    fast = score_filters(scoring_net().double(), *sample, batch_size=batch_size)
    assert [len(s) for s in fast] == [len(s) for s in reference]
    for f, r in zip(fast, reference):
        assert f.dtype == torch.float64
        # Relative difference under 1e-4 for every filter with |delta| > 1e-10, else absolute.
        assert torch.all((f - r).abs() <= torch.maximum(1e-4 * r.abs(), torch.tensor(1e-10)))


@pytest.mark.parametrize("batch_size", [7, 96])
def test_fast_scores_in_float32_match_to_a_ten_thousandth_of_the_largest(sample, reference,
                                                                          batch_size):
    x, y = sample
    fast = score_filters(scoring_net(), x.float(), y, batch_size=batch_size)
    scale = max(r.abs().max().item() for r in reference)
    worst = max((f - r).abs().max().item() for f, r in zip(fast, reference))
    assert worst < 1e-4 * scale


def test_dead_filters_score_exactly_zero(sample, reference):
    fast = score_filters(scoring_net(), sample[0].float(), sample[1], batch_size=24)
    for b, c in DEAD:
        assert fast[b][c].item() == 0.0 and reference[b][c].item() == 0.0


def test_scoring_leaves_the_model_unchanged_and_in_its_mode(sample):
    model = scoring_net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = sample
    score_filters(model, x[:4].float(), y[:4], batch_size=8)
    narrow = build_model("resnet20", 10, [2] * 9).train()
    score_filters_reference(narrow, x[:2].float(), y[:2], batch_size=8)
    assert model.training and narrow.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_mean_ce_is_the_mean_over_batches(sample):
    x, y = sample
    model = scoring_net().double()
    with torch.no_grad():
        whole = F.cross_entropy(model(x), y).item()
    assert mean_ce(model, x, y, batch_size=5) == pytest.approx(whole, rel=1e-12)


def test_speedup_benchmark_reports_finite_figures():
    result = measure_scoring_speedup("resnet20", 4, batch_size=8, input_size=(8, 8),
                                     reference_filters=3)
    assert result["filters"] == 3 * 16 + 3 * 32 + 3 * 64
    assert result["reference_estimated"] and result["reference_filters_timed"] == 3
    assert math.isfinite(result["speedup"]) and result["fast_s"] > 0
    assert result["max_diff_rel_to_max_delta"] < 1e-4
