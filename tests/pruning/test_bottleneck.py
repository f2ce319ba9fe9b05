"""The method on Bottleneck blocks (two prunable widths each): scoring, surgery, selection, the
regularizer's groups, on a resnet50 with narrow inner widths at 32 px."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hgsearch.metrics import count_macs, count_params, zero_filters
from hgsearch.models import build_model, default_widths
from hgsearch.proximal import conv_bn_pairs, proximal_step
from hgsearch.pruning import prune
from hgsearch.pruning.criteria import get_criterion
from hgsearch.pruning.scoring import score_filters
from hgsearch.pruning.surgery import mask_model, prune_model
from hgsearch.regularizers import regularized_weights
from tests.nets import reference_scores, scoring_sample

pytestmark = pytest.mark.usefixtures("one_thread")
N_UNITS = len(default_widths("resnet50"))   # 32: two per Bottleneck


def bottleneck_net(seed: int = 0, width: int = 5) -> torch.nn.Module:
    """resnet50 with every inner width ``width``, random BatchNorms, sharp logits, and one dead
    filter in each of the two kinds of unit."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    widths = [width + int(torch.randint(0, 3, (1,), generator=gen)) for _ in range(N_UNITS)]
    model = build_model("resnet50", 10, widths)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.0)
            m.bias.data.uniform_(-0.2, 0.2)
    model.fc.weight.data *= 4
    for u, c in ((2, 1), (5, 0)):            # a conv1 unit and a conv2 unit emit exactly zero
        model.units()[u].bn.weight.data[c] = 0
        model.units()[u].bn.bias.data[c] = -1
    return model.eval()


@pytest.fixture(scope="module")
def sample():
    return scoring_sample(6, 32)


@pytest.fixture(scope="module")
def reference(sample):
    return reference_scores(bottleneck_net(), *sample)


def test_units_are_both_inner_widths_of_each_bottleneck():
    model = bottleneck_net()
    units = model.units()
    assert len(units) == N_UNITS == 2 * len(model.blocks)
    for block, (first, second) in zip(model.blocks, zip(units[::2], units[1::2])):
        assert (first.producer, first.bn, first.consumer) == (block.conv1, block.bn1,
                                                             block.conv2)
        assert (second.producer, second.bn, second.consumer) == (block.conv2, block.bn2,
                                                                block.conv3)
    assert [u.producer.out_channels for u in units] == model.widths


def test_reference_equals_loss_difference_of_rebuilt_networks(sample, reference):
    x, y = sample
    model = bottleneck_net().double()
    with torch.no_grad():
        base = F.cross_entropy(model(x), y).item()
        for u, c in ((0, 0), (1, 3), (6, 2), (31, 4)):
            keep = [list(range(w)) for w in model.widths]
            del keep[u][c]
            direct = F.cross_entropy(prune_model(model, keep)(x), y).item() - base
            assert reference[u][c].item() == pytest.approx(direct, rel=1e-9, abs=1e-12)
    assert reference[2][1] == 0 and reference[5][0] == 0        # the dead filters
    assert max(s.abs().max().item() for s in reference) > 1e-3


@pytest.mark.parametrize("batch_size", [4, 6, 40])   # chunks + remainder, one chunk, stacked
def test_fast_scores_equal_the_reference_on_bottlenecks(sample, reference, batch_size):
    fast = score_filters(bottleneck_net().double(), *sample, batch_size=batch_size)
    assert [len(s) for s in fast] == [len(s) for s in reference]
    for f, r in zip(fast, reference):
        assert torch.all((f - r).abs() <= torch.maximum(1e-4 * r.abs(), torch.tensor(1e-10)))


def test_compact_bottleneck_network_equals_the_masked_one(sample):
    x, _ = sample
    model = bottleneck_net().double()
    gen = torch.Generator().manual_seed(4)
    keep = [sorted(torch.randperm(w, generator=gen)[:max(1, w // 2)].tolist())
            for w in model.widths]
    compact = prune_model(model, keep)
    assert compact.widths == [len(k) for k in keep]
    with torch.no_grad(), mask_model(model, keep):
        masked = model(x)
    with torch.no_grad():
        torch.testing.assert_close(compact(x), masked, rtol=1e-10, atol=1e-10)
        assert not torch.allclose(model(x), masked)     # the mask was lifted and did something


@pytest.mark.parametrize("name", ["l1_norm", "bn_scale", "taylor", "random"])
def test_every_criterion_scores_both_widths(sample, name):
    x, y = sample
    model = bottleneck_net()
    scores = get_criterion(name)(model, x.float(), y, batch_size=8,
                                 generator=torch.Generator().manual_seed(0))
    assert [len(s) for s in scores] == model.widths
    if name == "bn_scale":
        assert scores[2][1] == 0 and scores[5][0] == 0


@pytest.mark.parametrize("target", ["channels", "params", "macs"])
@pytest.mark.parametrize("round_to", [1, 2])
def test_prune_reaches_the_target_on_both_widths(sample, target, round_to):
    x, y = sample
    model = bottleneck_net(width=6)
    measure = {"channels": lambda m: sum(m.widths), "params": count_params,
               "macs": lambda m: count_macs(m, (32, 32))}[target]
    # Narrow inner widths: the residual stream holds most parameters, a few % are prunable.
    result = prune(model, x.float(), y, ratio=0.04, target=target, round_to=round_to,
                   min_channels=round_to, batch_size=16)
    removed = measure(model) - measure(result.model)
    assert result.note == ""
    assert removed >= 0.04 * measure(model)
    first, second = result.model.widths[::2], result.model.widths[1::2]
    assert first != model.widths[::2] or second != model.widths[1::2]
    for w, o in zip(result.model.widths, model.widths):
        assert w == o or w % round_to == 0


def test_regularizer_covers_the_convs_around_both_widths_and_no_other_1x1():
    model = build_model("resnet50", 10, [4] * N_UNITS)
    ids = {id(w) for w in regularized_weights(model)}
    for block in model.blocks:
        assert {id(block.conv1.weight), id(block.conv2.weight), id(block.conv3.weight)} <= ids
        if not isinstance(block.downsample, torch.nn.Identity):
            assert id(block.downsample[0].weight) not in ids
    assert id(model.conv1.weight) not in ids     # the 7x7 stem: RGB in, residual stream out
    pairs = conv_bn_pairs(model)
    assert pairs[model.blocks[0].conv1] is model.blocks[0].bn1
    assert pairs[model.blocks[0].conv3] is model.blocks[0].bn3


@pytest.mark.parametrize("grouping", ["input", "output"])
def test_a_large_proximal_step_kills_filters_of_both_widths(grouping):
    model = build_model("resnet50", 10, [4] * N_UNITS)
    proximal_step(model, None, reg="group_lasso", levels=1, outer="sqrt", grouping=grouping,
                  lam=1e6, mix=1.0, lr=1.0)
    dead = zero_filters(model)
    assert all(bool(d.all()) for d in dead)      # every filter of every unit, conv1 and conv2
