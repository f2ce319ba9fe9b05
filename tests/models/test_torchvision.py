"""hgsearch's torchvision ResNets against torchvision's own models (the independent reference)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from hgsearch.metrics import count_macs, count_params, inner_channel_costs
from hgsearch.models import build_model, default_widths, load_model, save_model
from hgsearch.models.torchvision_resnet import TORCHVISION_SPECS

pytestmark = pytest.mark.usefixtures("one_thread")
ARCHS = list(TORCHVISION_SPECS)


def randomized(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random BatchNorm affines and statistics on top of the random convs, so that a missed or
    swapped tensor shows."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_torchvision_state_dict_loads_strictly_and_gives_the_same_outputs(arch):
    reference = randomized(getattr(torchvision.models, arch)(weights=None), seed=len(arch))
    ours = build_model(arch, 1000)
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(reference.state_dict())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), ours.eval()(x)
    assert expected.abs().max() > 1e-3          # not a trivially zero output
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "wide_resnet50_2"])
def test_default_widths_are_torchvision_inner_widths(arch):
    reference = getattr(torchvision.models, arch)(weights=None)
    blocks = [b for layer in (reference.layer1, reference.layer2, reference.layer3,
                              reference.layer4) for b in layer]
    convs = [c for b in blocks for c in ([b.conv1, b.conv2] if hasattr(b, "conv3") else
                                         [b.conv1])]
    assert default_widths(arch) == [c.out_channels for c in convs]


def flop_counter_macs(model: torch.nn.Module, size: int) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    assert set(map(str, counter.get_flop_counts()["Global"])) <= {"aten.convolution",
                                                                   "aten.addmm"}
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("pruned", [False, True])
def test_params_and_macs_equal_an_independent_count(arch, pruned):
    gen = torch.Generator().manual_seed(3)
    widths = [int(torch.randint(1, w + 1, (1,), generator=gen)) for w in default_widths(arch)] \
        if pruned else None
    model = build_model(arch, 10, widths)
    assert count_macs(model, (64, 64)) == flop_counter_macs(model, 64)
    if not pruned:
        reference = getattr(torchvision.models, arch)(weights=None, num_classes=10)
        assert count_params(model) == sum(p.numel() for p in reference.parameters())
        assert count_macs(model, (64, 64)) == flop_counter_macs(reference, 64)


@pytest.mark.parametrize("unit", [0, 1, 2, 5, 31])
def test_bottleneck_unit_costs_are_differences_of_rebuilt_networks(unit):
    widths = [8] * len(default_widths("resnet50"))
    base = build_model("resnet50", 10, widths)
    cost = inner_channel_costs(base, (40, 40))[unit]
    smaller = list(widths)
    smaller[unit] -= 3
    thin = build_model("resnet50", 10, smaller)
    assert count_params(base) - count_params(thin) == 3 * cost.params
    assert count_macs(base, (40, 40)) - count_macs(thin, (40, 40)) == 3 * cost.macs


def test_a_pruned_bottleneck_network_round_trips_through_its_file(tmp_path):
    gen = torch.Generator().manual_seed(5)
    widths = [int(torch.randint(1, 9, (1,), generator=gen)) for _ in default_widths("resnet50")]
    model = randomized(build_model("resnet50", 7, widths), seed=2)
    save_model(model, tmp_path / "m.pt")
    again = load_model(tmp_path / "m.pt")
    x = torch.randn(2, 3, 32, 32)
    assert again.arch == "resnet50" and again.widths == widths
    assert torch.equal(again(x), model(x))


def test_the_configs_arch_list_is_the_models():
    # config names the architectures without importing torch; the two lists must not drift.
    from hgsearch import config, models

    assert config.ARCHS == models.ARCHS
    assert config.TORCHVISION_ARCHS == tuple(TORCHVISION_SPECS)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_the_smallest_image_size_allowed_runs_and_one_less_is_refused(arch):
    # 32 px reaches the last stage as 1 x 1 maps; config.image_size_problem says where it ends.
    from hgsearch.config import image_size_problem

    net = build_model(arch, 3).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert image_size_problem(arch, 32) is None
    assert "image_size >= 32" in image_size_problem(arch, 31)
