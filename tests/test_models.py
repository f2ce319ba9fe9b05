from __future__ import annotations

import pytest
import torch

from hgsearch.errors import UserError
from hgsearch.models import build_model, default_widths, load_model, save_model

# Published sizes (He et al. 2016, table 6) with 10 classes; ours use 1x1 projection shortcuts.
PUBLISHED = {"resnet20": 0.27e6, "resnet56": 0.85e6, "resnet110": 1.7e6}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def closed_form_params(arch: str, widths: list[int], classes: int) -> int:
    """Independent count from the architecture's definition (convs, BN affine pairs, fc)."""
    stages = [64, 128, 256, 512] if arch == "resnet18_small" else [16, 32, 64]
    blocks = [2, 2, 2, 2] if arch == "resnet18_small" else [(int(arch[6:]) - 2) // 6] * 3
    stem = stages[0]
    total = 3 * stem * 9 + 2 * stem
    in_ch, i = stem, 0
    for out_ch, n in zip(stages, blocks):
        for _ in range(n):
            w = widths[i]
            total += in_ch * w * 9 + 2 * w + w * out_ch * 9 + 2 * out_ch
            if in_ch != out_ch:
                total += in_ch * out_ch + 2 * out_ch
            in_ch, i = out_ch, i + 1
    return total + in_ch * classes + classes


@pytest.mark.parametrize("arch,published", PUBLISHED.items())
def test_parameter_counts_match_published_sizes(arch, published):
    assert abs(n_params(build_model(arch, 10)) - published) / published < 0.02


@pytest.mark.parametrize("arch", ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
                                  "resnet18_small"])
def test_widths_rebuild_a_smaller_network(arch):
    full = default_widths(arch)
    assert len(full) == (8 if arch == "resnet18_small" else (int(arch[6:]) - 2) // 2 // 3 * 3)
    g = torch.Generator().manual_seed(0)
    widths = [int(torch.randint(1, w + 1, (1,), generator=g)) for w in full]
    model = build_model(arch, 7, widths)
    assert [b.conv1.out_channels for b in model.blocks] == widths
    assert [b.conv2.in_channels for b in model.blocks] == widths
    assert n_params(model) == closed_form_params(arch, widths, 7)
    assert n_params(build_model(arch, 7)) == closed_form_params(arch, full, 7)
    out = model.eval()(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)


def test_resnet18_small_takes_64px_inputs():
    model = build_model("resnet18_small", 200, [8] * 8).eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 200)


@pytest.mark.parametrize("args,fragment", [
    (("resnet19", 10), "arch='resnet19'"),
    (("resnet20", 10, [16] * 8), "has 9 blocks, got 8"),
    (("resnet20", 10, [0] * 9), "at least 1 channel"),
    (("resnet20", 0), "num_classes=0"),
])
def test_bad_model_arguments(args, fragment):
    with pytest.raises(UserError, match=fragment.replace("[", r"\[")):
        build_model(*args)


def test_saved_model_reloads_with_the_same_logits(tmp_path):
    model = build_model("resnet20", 10, [3, 5, 7, 9, 11, 13, 15, 17, 19])
    for m in model.modules():  # non-trivial BN statistics, so a missed buffer shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    model.eval()
    save_model(model, tmp_path / "m.pt")
    again = load_model(tmp_path / "m.pt")
    x = torch.randn(4, 3, 32, 32)
    assert again.widths == model.widths
    assert torch.equal(again(x), model(x))


def test_load_model_refuses_foreign_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="bad.pt"):
        load_model(bad)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not an hgsearch model"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(UserError, match="no such model file"):
        load_model(tmp_path / "missing.pt")
