"""Scoring criteria: one shared contract for all of them, plus each one's own exact check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hgsearch.config import FIELDS
from hgsearch.pruning import (
    CRITERIA,
    SCORE_METHODS,
    criteria,
    exact_math,
    get_criterion,
    prune,
    select_filters,
)
from hgsearch.pruning.criteria import l2_normalized, taylor_per_sample_mean
from hgsearch.pruning.scoring import score_filters_reference
from tests.nets import randomized_net

pytestmark = pytest.mark.usefixtures("one_thread")

# (block, channel) made exactly zero: conv1 filter, bn1 scale and shift (proximal.py's dead filter)
ZERO = ((0, 3), (2, 7), (4, 0), (8, 63))
GEN_SEED = 5


def criteria_net(dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    """ResNet-20 with random BatchNorm statistics, sharp logits and a few all-zero filters."""
    model = randomized_net("resnet20", seed=0, sharpen=4)
    with torch.no_grad():
        for b, c in ZERO:
            block = model.blocks[b]
            block.conv1.weight[c] = 0
            block.bn1.weight[c] = 0
            block.bn1.bias[c] = 0
    return model.to(dtype).eval()


@pytest.fixture(scope="module")
def sample():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, 8, 8, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, 10, (16,), generator=gen)


def scores_of(name: str, model, x, y, seed: int = GEN_SEED) -> list[torch.Tensor]:
    return get_criterion(name)(model, x, y, batch_size=64,
                               generator=torch.Generator().manual_seed(seed))


def test_config_offers_exactly_the_criteria():
    assert FIELDS["score_method"].metadata["choices"] == SCORE_METHODS == tuple(CRITERIA)
    assert FIELDS["score_method"].default == "loss_increase"
    with pytest.raises(ValueError, match="score_method='nope'"):
        get_criterion("nope")


@pytest.mark.parametrize("name", SCORE_METHODS)
def test_contract_shape_dtype_and_no_side_effects(name, sample):
    model = criteria_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    scores = scores_of(name, model, *sample)
    assert model.training                                   # mode restored
    assert [len(s) for s in scores] == model.widths
    assert all(s.dtype == torch.float64 and s.device.type == "cpu" for s in scores)
    assert all(torch.isfinite(s).all() for s in scores)
    for k, v in model.state_dict().items():                 # nothing moved, not even BN stats
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("name", [n for n in SCORE_METHODS if n != "random"])
def test_contract_all_zero_filter_goes_before_every_filter_that_matters(name, sample):
    scores = scores_of(name, criteria_net(), *sample)
    flat = torch.cat(scores)
    offsets = np.cumsum([0] + [len(s) for s in scores])
    zero_idx = {int(offsets[b] + c) for b, c in ZERO}
    for b, c in ZERO:
        assert scores[b][c] == 0.0, (b, c)
    order = torch.argsort(flat, stable=True).tolist()
    last_zero = max(order.index(i) for i in zero_idx)
    # No filter with a positive score goes before them: only those whose removal is free too (a
    # filter the ReLU silences on the whole sample) or lowers the loss (a negative increase).
    ahead = [i for i in order[:last_zero] if i not in zero_idx]
    assert all(flat[i] <= 0 for i in ahead)
    if name in ("l1_norm", "bn_scale"):     # weights alone: only the zero filters score 0
        assert sorted(order[:len(ZERO)]) == sorted(zero_idx)


def test_random_is_seeded_and_uniform(sample):
    model = criteria_net(torch.float32)
    x, y = sample[0].float(), sample[1]
    a, b = scores_of("random", model, x, y, seed=3), scores_of("random", model, x, y, seed=3)
    assert all(torch.equal(s, t) for s, t in zip(a, b))
    other = scores_of("random", model, x, y, seed=4)
    assert not all(torch.equal(s, t) for s, t in zip(a, other))
    values = torch.cat([torch.cat(scores_of("random", model, x, y, seed=s)) for s in range(20)])
    values = np.sort(values.numpy())
    n = len(values)
    ks = np.max(np.abs(np.arange(1, n + 1) / n - values))   # Kolmogorov-Smirnov vs U(0, 1)
    assert ks < 1.63 / math.sqrt(n)                         # the 1% critical value
    # Rank uniformity: a dead filter is pruned at a 50% channel ratio about half the time.
    picked = 0
    for s in range(200):
        scores = scores_of("random", model, x, y, seed=1000 + s)
        order = torch.argsort(torch.cat(scores)).tolist()
        picked += order.index(3) < len(order) // 2          # block 0, channel 3
    assert 70 <= picked <= 130                              # binomial(200, 1/2): about 4.2 sd


def test_loss_increase_equals_the_reference_scorer(sample):
    model = criteria_net()
    fast = scores_of("loss_increase", model, *sample)
    ref = score_filters_reference(model, *sample, batch_size=64)
    for f, r in zip(fast, ref):
        assert torch.allclose(f, r, rtol=0, atol=1e-12)


def test_l1_norm_and_bn_scale_equal_numpy(sample):
    model = criteria_net(torch.float32)
    l1 = scores_of("l1_norm", model, sample[0].float(), sample[1])
    bn = scores_of("bn_scale", model, sample[0].float(), sample[1])
    for block, s_l1, s_bn in zip(model.blocks, l1, bn):
        w = block.conv1.weight.detach().numpy().astype(np.float64)
        expect_l1 = np.array([np.sum(np.abs(w[k])) for k in range(w.shape[0])])
        assert np.allclose(s_l1.numpy(), expect_l1, rtol=1e-6, atol=0)
        assert np.array_equal(s_bn.numpy(), np.abs(block.bn1.weight.detach().numpy()).astype(
            np.float64))


@pytest.mark.parametrize("block, channel", [(0, 1), (3, 5), (7, 20), (8, 2)])
def test_taylor_equals_a_finite_difference_of_each_samples_loss(sample, block, channel):
    """d CE_s / d alpha at alpha = 1, with channel c of block b's output scaled by alpha, is
    sum_pixels g * h; central differences in float64 on the whole network, sample by sample."""
    x, y = sample
    model = criteria_net()
    raw = taylor_per_sample_mean(model, x, y, batch_size=64)[block][channel].item()
    blk = model.blocks[block]
    pixels = blk.inner(_input_of(model, x, block))[0, 0].numel()
    original = type(blk).inner.__get__(blk)

    def ce_per_sample(alpha: float) -> torch.Tensor:
        scale = torch.ones(1, blk.conv1.out_channels, 1, 1, dtype=torch.float64)
        scale[0, channel] = alpha
        blk.inner = lambda t: original(t) * scale
        try:
            with torch.no_grad():
                return F.cross_entropy(model(x), y, reduction="none")
        finally:
            del blk.inner

    eps = 1e-6
    deriv = (ce_per_sample(1 + eps) - ce_per_sample(1 - eps)) / (2 * eps)
    # Molchanov et al.: |(1/M) sum_pixels|, then the mean over samples.
    assert raw == pytest.approx(deriv.abs().mean().item() / pixels, rel=1e-6, abs=1e-12)


def _input_of(model, x: torch.Tensor, block: int) -> torch.Tensor:
    with torch.no_grad():
        feat = model.stem(x)
        for blk in model.blocks[:block]:
            feat = blk(feat)
    return feat


def test_taylor_equals_a_per_sample_autograd_loop_normalized_per_block(sample):
    """Brute force: one backward per sample with every block's h kept, |mean(h * g)| per
    filter, averaged over samples, then each block divided by its L2 norm."""
    x, y = sample
    model = criteria_net()
    got = scores_of("taylor", model, x, y)
    kept: list[torch.Tensor] = []
    for blk in model.blocks:
        original = type(blk).inner.__get__(blk)

        def keep(t, original=original):
            h = original(t)
            h.retain_grad()
            kept.append(h)
            return h
        blk.inner = keep
    totals = [torch.zeros(b.conv1.out_channels, dtype=torch.float64) for b in model.blocks]
    try:
        for s in range(len(x)):
            kept.clear()
            model.zero_grad()
            F.cross_entropy(model(x[s:s + 1]), y[s:s + 1]).backward()
            for total, h in zip(totals, kept):
                total += (h * h.grad)[0].mean((1, 2)).abs().detach()
    finally:
        for blk in model.blocks:
            del blk.inner
    for g, total in zip(got, totals):
        expect = total / len(x)
        expect = expect / expect.norm() if expect.norm() > 0 else expect
        assert torch.allclose(g, expect, rtol=1e-9, atol=1e-12)
        assert g.norm().item() == pytest.approx(1.0) or g.norm().item() == 0.0


def test_taylor_global_ranking_is_blind_to_a_blocks_scale(sample, monkeypatch):
    """Per-block L2 normalization: block 0's raw scores multiplied by 16 (as a larger feature
    map would under a sum over pixels) change neither the Taylor criterion's scores nor the
    filters a global ranking prunes; ranked raw, the same scale does move filters (the control,
    so the check has something to see)."""
    x, y = sample
    model = criteria_net()
    raw = taylor_per_sample_mean(model, x, y, batch_size=64)
    scaled = [s * (16.0 if b == 0 else 1.0) for b, s in enumerate(raw)]

    def pruned(raws):   # the criterion as prune runs it, on these raw scores
        monkeypatch.setattr(criteria, "taylor_per_sample_mean",
                            lambda *args, **kwargs: [r.clone() for r in raws])
        return prune(model, x, y, ratio=0.3, criterion="taylor", batch_size=64)

    plain, big = pruned(raw), pruned(scaled)
    for a, b in zip(plain.scores, big.scores):
        assert torch.allclose(a, b, rtol=1e-12, atol=0)
    assert big.keep == plain.keep
    assert select_filters(scaled, ratio=0.3).keep != select_filters(raw, ratio=0.3).keep
    assert torch.equal(l2_normalized(torch.zeros(3)), torch.zeros(3))


class _Spy:
    """A criterion that records the numeric settings it ran under."""

    name = "spy"

    def __init__(self, fail: bool = False) -> None:
        self.seen: list[tuple] = []
        self.fail = fail

    def __call__(self, model, x, y, *, batch_size, generator):
        self.seen.append((torch.backends.cudnn.conv.fp32_precision,
                          torch.backends.cuda.matmul.fp32_precision,
                          torch.is_autocast_enabled("cpu"), torch.is_autocast_enabled("cuda")))
        if self.fail:
            raise RuntimeError("spy failed")
        return CRITERIA["l1_norm"](model, x, y, batch_size=batch_size, generator=generator)


def test_scoring_runs_without_tf32_or_autocast_and_restores_them(sample):
    model = criteria_net(torch.float32)
    x, y = sample[0].float(), sample[1]
    before = (torch.backends.cudnn.conv.fp32_precision,
              torch.backends.cuda.matmul.fp32_precision)
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    try:
        spy = _Spy()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            prune(model, x, y, ratio=0.3, criterion=spy, steps=2)
            assert torch.is_autocast_enabled("cpu")
        assert spy.seen == [("ieee", "ieee", False, False)] * 2
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
        with pytest.raises(RuntimeError, match="spy failed"):
            prune(model, x, y, ratio=0.3, criterion=_Spy(fail=True))
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    finally:
        torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = (
            before)


def test_threads_scoring_at_once_leave_the_switches_as_they_found_them():
    """Trials scoring in threads of one process: the first out must not restore TF32 under
    the second, nor the second restore the first one's "ieee" for good (the flags are
    process-wide; left at "ieee" for convolutions only, torch.onnx.export refuses to run)."""
    import threading

    def switches():
        return (torch.backends.cudnn.conv.fp32_precision,
                torch.backends.cuda.matmul.fp32_precision)

    before = switches()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with exact_math():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with exact_math():
            second_in.set()
            first_out.wait(10)
            seen["inside_after_first_left"] = switches()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen["inside_after_first_left"] == ("ieee", "ieee")
    assert switches() == before


def test_scores_under_an_outer_autocast_are_the_fp32_scores(sample):
    model = criteria_net(torch.float32)
    x, y = sample[0].float(), sample[1]
    with exact_math():
        plain = scores_of("loss_increase", model, x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16), exact_math():
        inside = scores_of("loss_increase", model, x, y)
    assert all(torch.equal(a, b) for a, b in zip(plain, inside))
