from __future__ import annotations

import pytest
import torch

from hgsearch.models import ARCH_SPECS, build_model
from hgsearch.pruning.surgery import check_keep, mask_model, prune_model
from tests.nets import randomized_net

ARCHS = list(ARCH_SPECS)


pytestmark = pytest.mark.usefixtures("one_thread")


def randomized(arch: str, seed: int, classes: int = 10) -> torch.nn.Module:
    """A network whose BatchNorms are not the identity, so a wrong copy changes outputs."""
    return randomized_net(arch, seed, classes=classes, scale=(0.2, 0.6),
                          batches_tracked=seed + 7)


def random_keep(widths: list[int], gen: torch.Generator) -> list[list[int]]:
    """Random kept sets: every third block down to one channel, the rest to a random size."""
    keep = []
    for i, w in enumerate(widths):
        n = 1 if i % 3 == 0 else int(torch.randint(1, w + 1, (1,), generator=gen))
        keep.append(sorted(torch.randperm(w, generator=gen)[:n].tolist()))
    return keep


@pytest.mark.parametrize("arch", ARCHS)
def test_compact_network_computes_what_the_masked_one_does(arch):
    model = randomized(arch, seed=1)
    gen = torch.Generator().manual_seed(2)
    keep = random_keep(model.widths, gen)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    with torch.no_grad():
        dense = model(x)
        with mask_model(model, keep):
            masked = model(x)
        compact = prune_model(model, keep)
        out = compact(x)
    assert compact.widths == [len(k) for k in keep]
    assert [b.conv1.out_channels for b in compact.blocks] == compact.widths
    assert (dense - masked).abs().max() > 1e-3           # the mask changed something
    assert (out - masked).abs().max() < 1e-4
    assert torch.equal(model(x), dense)                  # the mask is gone, the original intact


def test_compact_copy_keeps_dtype_mode_and_buffers():
    model = randomized("resnet20", seed=3).double().train()
    keep = random_keep(model.widths, torch.Generator().manual_seed(4))
    compact = prune_model(model, keep)
    assert compact.training and next(compact.parameters()).dtype == torch.float64
    for i, (src, dst, k) in enumerate(zip(model.blocks, compact.blocks, keep)):
        assert torch.equal(dst.bn1.running_var, src.bn1.running_var[k])
        assert int(dst.bn1.num_batches_tracked) == int(src.bn1.num_batches_tracked), i
        assert torch.equal(dst.conv2.weight, src.conv2.weight[:, k])
        assert torch.equal(dst.bn2.running_mean, src.bn2.running_mean)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad(), mask_model(model.eval(), keep):
        masked = model(x)
    assert (compact.eval()(x) - masked).abs().max() < 1e-10   # float64: exact up to rounding


def test_keeping_everything_is_a_copy():
    model = randomized("resnet20", seed=5)
    compact = prune_model(model, [list(range(w)) for w in model.widths])
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(compact(x), model(x))
    compact.fc.weight.data.zero_()
    assert model.fc.weight.abs().sum() > 0


def test_mask_is_removed_after_an_error():
    model = randomized("resnet20", seed=6)
    keep = [[0]] * len(model.widths)
    x = torch.randn(1, 3, 8, 8)
    before = model(x)
    with pytest.raises(RuntimeError), mask_model(model, keep):
        raise RuntimeError("boom")
    assert torch.equal(model(x), before)
    assert all("inner" not in vars(b) for b in model.blocks)


@pytest.mark.parametrize("keep,match", [
    ([[0]] * 8, "lists for 9 blocks"),
    ([[]] + [[0]] * 8, "at least one channel"),
    ([[0, 0]] + [[0]] * 8, "distinct"),
    ([[16]] + [[0]] * 8, r"in \[0, 16\)"),
    ([[-1]] + [[0]] * 8, "distinct and in"),
])
def test_bad_keep_lists_are_refused(keep, match):
    model = build_model("resnet20", 10)
    with pytest.raises(ValueError, match=match):
        check_keep(model, keep)
