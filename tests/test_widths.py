"""The trial keys widths and width_scale: checked at the config boundary, built as given."""

from __future__ import annotations

import pytest

from hgsearch import config, widths
from hgsearch.cli import main
from hgsearch.config import make_config
from hgsearch.errors import UserError
from hgsearch.inapplicable import inapplicable_keys
from hgsearch.metrics import count_params
from hgsearch.models import ARCHS, build_model, default_widths


@pytest.mark.parametrize("arch", ARCHS)
def test_unit_counts_without_torch_equal_the_built_networks(arch):
    assert widths.UNITS[arch] == len(default_widths(arch)) == len(build_model(arch, 3).units())
    assert set(widths.UNITS) == set(config.ARCHS)


@pytest.mark.parametrize("scale,expected", [
    (1.0, [16, 32, 64]), (0.5, [8, 16, 32]), (0.25, [4, 8, 16]),
    # round half up (not to even): 16 x 0.15625 = 2.5 -> 3; at least 1
    (0.15625, [3, 5, 10]), (0.01, [1, 1, 1]),
])
def test_scaled_widths_round_half_up_and_keep_one(scale, expected):
    assert widths.scaled_widths([16, 32, 64], scale) == expected


def test_a_widths_list_builds_that_network():
    given = [3, 5, 7, 9, 11, 13, 15, 17, 19]
    cfg = make_config({"arch": "resnet20", "widths": widths.widths_text(given)})
    built = widths.trial_widths(default_widths(cfg.arch), cfg.widths, cfg.width_scale)
    assert built == given
    net = build_model("resnet20", 10, built)
    assert [u.producer.out_channels for u in net.units()] == given
    assert [u.bn.num_features for u in net.units()] == given


def test_width_scale_builds_fewer_parameters_by_an_independent_count():
    cfg = make_config({"arch": "resnet20", "width_scale": 0.5})
    built = widths.trial_widths(default_widths("resnet20"), cfg.widths, cfg.width_scale)
    assert built == [8] * 3 + [16] * 3 + [32] * 3
    net = build_model("resnet20", 10, built)
    # by hand: each BasicBlock of inner width w between c_in and c_out channels (3x3 convs, BN
    # weight+bias) has 9*c_in*w + 2w + 9*w*c_out + 2*c_out parameters, plus a 1x1 shortcut
    # (c_in*c_out + 2*c_out) where the stage changes
    def block(c_in, w, c_out):
        shortcut = c_in * c_out + 2 * c_out if c_in != c_out else 0
        return 9 * c_in * w + 2 * w + 9 * w * c_out + 2 * c_out + shortcut
    stem = 9 * 3 * 16 + 2 * 16
    body = sum(block(c_in, w, c_out) for c_in, w, c_out in
               [(16, 8, 16)] * 3 + [(16, 16, 32)] + [(32, 16, 32)] * 2 + [(32, 32, 64)]
               + [(64, 32, 64)] * 2)
    head = 64 * 10 + 10
    assert count_params(net) == sum(p.numel() for p in net.parameters()) == stem + body + head


@pytest.mark.parametrize("values,fragment", [
    ({"widths": "16,16"}, "widths: resnet20 has 9 prunable units, got 2 widths"),
    ({"widths": "a,b"}, "widths='a,b': expected 9 comma-separated integers >= 1"),
    ({"widths": "0," * 8 + "4"}, "expected 9 comma-separated integers >= 1"),
    ({"widths": "4," * 8 + "4", "width_scale": 0.5}, "widths and width_scale=0.5: give one"),
    ({"width_scale": 0.0}, "width_scale=0.0: must be above 0 and at most 1"),
    ({"width_scale": 1.5}, "width_scale=1.5: must be between 0 and 1"),
    ({"width_scale": 0.5, "init_weights": "w.pt"}, "width_scale=0.5: only from random"),
    ({"arch": "resnet50", "widths": "8," * 15 + "8"}, "resnet50 has 32 prunable units, got 16"),
])
def test_bad_widths_are_one_line_user_errors(values, fragment):
    with pytest.raises(UserError) as err:
        make_config(values)
    assert len(err.value.problems) == 1 and "\n" not in err.value.problems[0]
    assert fragment in err.value.problems[0]


def test_a_yaml_list_of_widths_reads_as_the_list(tmp_path):
    from hgsearch.config_file import compose_config

    path = tmp_path / "c.yaml"
    path.write_text("arch: resnet20\nwidths: [3, 5, 7, 9, 11, 13, 15, 17, 19]\n")
    assert compose_config(config_file=path).widths == "3,5,7,9,11,13,15,17,19"
    path.write_text("widths: [3, 5]\n")
    with pytest.raises(UserError, match="resnet20 has 9 prunable units, got 2 widths"):
        compose_config(config_file=path)


def test_bad_widths_exit_2_at_the_cli(tmp_path, capsys):
    code = main(["trial", "--set", "widths=1,2", "--out", str(tmp_path)])
    assert code == 2
    assert "widths: resnet20 has 9 prunable units, got 2 widths" in capsys.readouterr().err


def test_widths_change_the_dense_network_and_are_never_switched_off():
    assert {"widths", "width_scale"} <= set(config.dense_keys())
    control = {"widths": "4," * 8 + "4", "reg": "none", "prune_ratio": 0.0,
               "finetune_epochs": 0}
    off = inapplicable_keys(control)
    assert not {"widths", "width_scale"} & off
    assert {"lam", "mix", "score_samples", "finetune_lr"} <= off
