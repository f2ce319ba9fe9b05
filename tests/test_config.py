from __future__ import annotations

import dataclasses

import pytest

from hgsearch.config import (
    FIELDS,
    TrialConfig,
    key_table,
    make_config,
    problems_of,
)
from hgsearch.config_file import compose_config, parse_assignments, read_config_file
from hgsearch.errors import UserError


def test_defaults_are_valid_and_every_key_is_documented():
    assert make_config({}) == TrialConfig()
    assert problems_of(TrialConfig().to_dict()) == []
    rows = key_table()
    assert [r[0] for r in rows] == [f.name for f in dataclasses.fields(TrialConfig)]
    assert all(meaning for *_, meaning in rows)


@pytest.mark.parametrize("key,text,expected", [
    ("lam", "1e-3", 1e-3), ("epochs", "7", 7), ("epochs", 7.0, 7), ("nesterov", "yes", True),
    ("nesterov", "off", False), ("compile", True, True), ("arch", "resnet56", "resnet56"),
    ("reg_levels", "1", 1), ("prune_ratio", 0, 0.0),
    # YAML 1.1 reads an unquoted on/off as a boolean; an on/off key takes it as its word.
    ("channels_last", True, "on"), ("channels_last", False, "off"),
])
def test_values_are_coerced_to_the_key_type(key, text, expected):
    value = getattr(make_config({key: text}), key)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("values,fragment", [
    ({"lamb": 1}, "unknown key 'lamb'"),
    ({"epochs": "two"}, "epochs='two': expected int"),
    ({"epochs": 2.5}, "epochs=2.5: expected int"),
    ({"nesterov": "maybe"}, "expected bool"),
    ({"arch": True}, "arch=True: expected str"),   # a boolean is a word only for on/off keys
    ({"prune_ratio": 0.99}, "prune_ratio=0.99: must be between 0 and 0.95"),
    ({"lam": float("nan")}, "lam=nan"),
    ({"reg": "l2"}, "reg='l2': allowed values are none, l1, group_lasso, exclusive, group_l12"),
    ({"reg_levels": 3}, "allowed values are 1, 2"),
    ({"dataset": "cifar10"}, "data_dir is empty"),
    ({"trial_id": "../x"}, "trial_id='../x'"),
    ({"trial_id": ".hidden"}, "trial_id='.hidden'"),
    ({"trial_id": "t1\n"}, "trial_id='t1\\n'"),     # "$" alone would let a final newline by
    ({"round_to": 8, "min_channels": 4}, "min_channels=4: must be a multiple of round_to=8"),
])
def test_bad_values_name_the_key_and_what_is_allowed(values, fragment):
    with pytest.raises(UserError) as err:
        make_config(values)
    assert fragment in str(err.value)
    assert all("\n" not in p for p in err.value.problems)


def test_every_problem_is_reported_at_once():
    problems = problems_of({"lamb": 1, "epochs": "x", "reg": "l2"})
    assert len(problems) == 3


def test_replace_validates():
    cfg = TrialConfig()
    assert cfg.replace(lam=0.5).lam == 0.5
    with pytest.raises(UserError):
        cfg.replace(lam=-1)


def test_parse_assignments():
    assert parse_assignments(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    assert parse_assignments(["lam=1e-3", "arch=resnet56"]) == {"lam": "1e-3", "arch": "resnet56"}
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_assignments(["lam"])


def test_config_file(tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("lam: 1.0e-4\narch: resnet32\n")
    assert make_config(read_config_file(good)).arch == "resnet32"
    for text, fragment in [("- a\n- b\n", "expected a mapping"), ("a: [1,\n", "not valid YAML")]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(UserError, match=fragment):
            read_config_file(bad)
    with pytest.raises(UserError, match="no such config file"):
        read_config_file(tmp_path / "missing.yaml")


def test_field_types_are_the_four_flat_kinds():
    assert {f.type for f in FIELDS.values()} <= {"bool", "int", "float", "str"}


@pytest.mark.parametrize("reg", FIELDS["reg"].metadata["choices"])
@pytest.mark.parametrize("lam", [0.0, 1e-6, 10.0])
def test_regularized_is_a_penalty_to_train_with(reg, lam):
    cfg = make_config({"reg": reg, "lam": lam})
    assert cfg.regularized is (reg != "none" and lam != 0.0)


def test_compose_config_later_sources_win(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("arch: resnet32\nepochs: 7\nout_dir: from_file\n")
    cfg = compose_config(config_file=cfg_file, assignments=["epochs=2", "out_dir=from_set"],
                         out_dir="from_out")
    assert (cfg.arch, cfg.epochs, cfg.out_dir) == ("resnet32", 2, "from_out")
    assert compose_config() == TrialConfig()
    with pytest.raises(UserError) as err:
        compose_config(assignments=["lamb=1", "epochs=two"])
    assert len(err.value.problems) == 2
