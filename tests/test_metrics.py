from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hgsearch.metrics import (
    PairTiming,
    Timing,
    _timing,
    count_macs,
    count_params,
    inner_channel_costs,
    measure_latency,
    measure_latency_pair,
)
from hgsearch.models import ARCH_SPECS, build_model, default_widths

ARCHS = list(ARCH_SPECS)


pytestmark = pytest.mark.usefixtures("one_thread")


def random_widths(arch: str, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    return [int(torch.randint(1, w + 1, (1,), generator=gen)) for w in default_widths(arch)]


def torch_macs(model: torch.nn.Module, size: tuple[int, int]) -> int:
    """PyTorch's own count: conv and addmm flops are 2 per multiply-accumulate."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, *size))
    flops = counter.get_flop_counts()["Global"]
    assert set(map(str, flops)) <= {"aten.convolution", "aten.addmm"}
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("pruned", [False, True])
def test_macs_and_params_agree_with_pytorch(arch, pruned):
    widths = random_widths(arch, seed=len(arch)) if pruned else None
    model = build_model(arch, 10, widths)
    size = (32, 32) if arch != "resnet18_small" else (24, 40)
    assert count_macs(model, size) == torch_macs(model, size)
    assert count_params(model) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", [(32, 32), (9, 13), (1, 1)])
def test_macs_of_resnet20_by_hand(size):
    """Closed form from the definition: 3x3 convs with padding 1, stride 2 at stages 2 and 3."""
    h, w = size
    spatial = []
    for _stage in range(3):
        spatial.append(h * w)
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    macs = 3 * 16 * 9 * spatial[0]
    for s, c in enumerate((16, 32, 64)):
        first_in = 16 if s == 0 else c // 2
        macs += first_in * c * 9 * spatial[s] + 5 * c * c * 9 * spatial[s]   # conv1s and conv2s
        if s > 0:
            macs += first_in * c * spatial[s]                                # 1x1 projection
    macs += 64 * 10
    assert count_macs(build_model("resnet20", 10), size) == macs


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [(32, 32), (11, 7)])
def test_channel_costs_are_differences_of_rebuilt_networks(arch, size):
    widths = [max(w, 4) for w in random_widths(arch, seed=3)]
    base = build_model(arch, 10, widths)
    costs = inner_channel_costs(base, size)
    params, macs = count_params(base), count_macs(base, size)
    n = ARCH_SPECS[arch].blocks_per_stage[0]
    blocks = sorted({0, 1, n, 2 * n, len(widths) - 1})   # stage entries differ in stride, inputs
    for b in blocks:
        smaller = list(widths)
        smaller[b] -= 3                                  # three channels: linear in the count
        thin = build_model(arch, 10, smaller)
        assert params - count_params(thin) == 3 * costs[b].params, b
        assert macs - count_macs(thin, size) == 3 * costs[b].macs, b


def test_counting_leaves_the_model_as_it_was():
    model = build_model("resnet20", 10).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (8, 8))
    inner_channel_costs(model, (8, 8))
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("channels_last,dtype", [(False, None), (True, None),
                                                 (False, torch.bfloat16)])
def test_latency_is_a_positive_time_and_leaves_the_model_alone(channels_last, dtype):
    model = build_model("resnet20", 10).train()
    seconds = measure_latency(model, input_size=(8, 8), batch_size=2, device="cpu", repeats=3,
                              warmup=1, channels_last=channels_last, dtype=dtype)
    assert 0 < seconds < 60
    assert model.training
    assert model.blocks[0].conv1.weight.is_contiguous()


def test_latency_refuses_zero_repeats():
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(build_model("resnet20", 10), input_size=(8, 8), batch_size=1,
                        device="cpu", repeats=0)


@pytest.mark.parametrize("grouping", ["input", "output"])
@pytest.mark.parametrize("tol", [0.0, 0.01, 0.1])
def test_zero_group_fraction_counts_only_groups_that_free_a_prunable_filter(grouping, tol):
    from hgsearch.metrics import zero_group_fraction

    model = build_model("resnet20", 10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0)
        # Groups no pruning can remove, all zero: the stem, every conv1's inputs (the residual
        # path) and every conv2's outputs. None of them may count.
        model.stem[0].weight.zero_()
        for b in model.blocks:
            (b.conv1.weight if grouping == "input" else b.conv2.weight).zero_()
        # The prunable groups of block 4: 3 exact zeros, 2 at 0.005 x max, 1 at 0.05 x max.
        b4 = model.blocks[4]
        g = b4.conv2.weight.transpose(0, 1) if grouping == "input" else b4.conv1.weight
        g[:3] = 0
        g[3:5] = 0.005
        g[5] = 0.05
        # block 7 zero throughout (its prunable groups): all of them count
        (model.blocks[7].conv2 if grouping == "input" else model.blocks[7].conv1).weight.zero_()
    total = sum(default_widths("resnet20"))                      # one group per filter: 336
    small = {0.0: 0, 0.01: 2, 0.1: 3}[tol]
    expected = (3 + small + model.blocks[7].conv1.out_channels) / total
    assert zero_group_fraction(model, grouping=grouping, tol=tol) == pytest.approx(expected)


def test_zero_filters_are_unread_or_silent_filters():
    from hgsearch.metrics import zero_filter_fraction, zero_filters

    model = build_model("resnet20", 10)
    with torch.no_grad():
        model.blocks[0].conv2.weight[:, 4] = 0                  # unread
        b = model.blocks[3]
        b.conv1.weight[7] = 0                                   # silent: weights, scale, shift
        b.bn1.weight[7] = 0
        b.bn1.bias[7] = 0
        b.conv1.weight[8] = 0                                   # still emits relu(shift)
        b.bn1.weight[8] = 0
        b.bn1.bias[8] = 0.5
        model.blocks[5].conv1.weight[1] = 0                     # emits relu(bn1(0)): not zero
    flags = zero_filters(model)
    found = [(i, c) for i, f in enumerate(flags) for c in f.nonzero().flatten().tolist()]
    assert found == [(0, 4), (3, 7)]
    assert zero_filter_fraction(model) == pytest.approx(2 / 336)


def test_nonzero_keep_drops_exactly_the_zero_filters_and_leaves_a_block_one():
    from hgsearch.metrics import nonzero_keep

    model = build_model("resnet20", 10)
    with torch.no_grad():
        model.blocks[0].conv2.weight[:, [1, 4]] = 0
        model.blocks[2].conv2.weight[:] = 0                     # the whole block unread
    keep = nonzero_keep(model)
    widths = [b.conv1.out_channels for b in model.blocks]
    assert keep[0] == [c for c in range(widths[0]) if c not in (1, 4)]
    assert keep[2] == [0]
    assert all(keep[i] == list(range(w)) for i, w in enumerate(widths) if i not in (0, 2))


def test_zero_group_fraction_rejects_a_bad_tolerance():
    from hgsearch.errors import UserError
    from hgsearch.metrics import zero_group_fraction

    with pytest.raises(UserError, match="zero_tol=-0.1"):
        zero_group_fraction(build_model("resnet20", 10), grouping="input", tol=-0.1)


# --- dense and pruned timed interleaved ---------------------------------------------------


def _sleeper(name: str, seconds: float, calls: list[str]) -> torch.nn.Module:
    """A one-conv net whose forward logs its name and sleeps ``seconds``."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1))

    def hook(_module, _inputs, _out):
        calls.append(name)
        time.sleep(seconds)

    net.register_forward_hook(hook)
    return net


def test_pair_alternates_dense_and_pruned_round_by_round():
    calls: list[str] = []
    measure_latency_pair(_sleeper("d", 0.0, calls), _sleeper("p", 0.0, calls),
                         input_size=(4, 4), batch_size=1, device="cpu", repeats=3, warmup=2)
    # warmup 2 + repeats 3 rounds, one forward of each per round, order reversed on odd rounds
    assert calls == ["d", "p", "p", "d", "d", "p", "p", "d", "d", "p"]


def test_pair_tells_a_real_difference_from_the_spread():
    calls: list[str] = []
    pair = measure_latency_pair(_sleeper("d", 0.03, calls), _sleeper("p", 0.003, calls),
                                input_size=(4, 4), batch_size=1, device="cpu", repeats=6,
                                warmup=1)
    assert pair.dense.median >= 0.03 and pair.pruned.median >= 0.003
    assert pair.dense.median > pair.pruned.median
    assert pair.significant is True
    few = measure_latency_pair(_sleeper("d", 0.0, calls), _sleeper("p", 0.0, calls),
                               input_size=(4, 4), batch_size=1, device="cpu", repeats=2)
    assert math.isnan(few.dense.iqr) and few.significant is None   # too few for quartiles


def test_significance_is_the_difference_against_the_larger_iqr():
    assert PairTiming(Timing(1.0, 0.3), Timing(0.8, 0.05)).significant is False
    assert PairTiming(Timing(1.0, 0.1), Timing(0.8, 0.15)).significant is True
    assert PairTiming(Timing(0.8, 0.1), Timing(1.0, 0.15)).significant is True  # slower: too


@pytest.mark.parametrize("seed", range(5))
def test_iqr_is_numpys_interquartile_range(seed):
    times = list(np.random.default_rng(seed).exponential(size=int(5 + seed * 7)))
    got = _timing(times)
    q1, q3 = np.percentile(times, [25, 75])
    assert got.median == pytest.approx(np.median(times))
    assert got.iqr == pytest.approx(q3 - q1, rel=1e-12)
