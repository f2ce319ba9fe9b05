from __future__ import annotations

import copy
from pathlib import Path

import optuna
import pytest
import yaml

from hgsearch import config, inapplicable
from hgsearch.cli import main
from hgsearch.config_file import read_config_file
from hgsearch.errors import UserError
from hgsearch.search.baseline import BASELINE_VALUES
from hgsearch.search.samplers import sampler_names
from hgsearch.search.space_file import find_default_space, load_space, parse_space, space_problems

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "search_spaces").glob("*.yaml"))

VALID = {
    "fixed": {"dataset": "synthetic", "arch": "resnet20", "epochs": 2},
    "search": {
        "lam": {"loguniform": [1.0e-6, 1.0e-2]},
        "mix": {"uniform": [0.0, 1.0]},
        "reg_levels": {"choice": [1, 2]},
        "reg_outer": {"choice": ["sqrt", "square"], "when": {"reg_levels": 2}},
        "score_samples": {"int": [8, 512], "log": True},
        "min_channels": {"int": [2, 8], "step": 2},
    },
    "objectives": {"acc_final": "max", "params_ratio": "min"},
    "sampler": {"name": "tpe", "seed": 3, "options": {"multivariate": True, "group": True}},
    "num_samples": 4,
    "max_concurrent": 2,
    "resources": {"cpu": 1, "gpu": 0.5},
    "retries": 1,
    "baseline": True,
}


def test_the_four_spaces_are_shipped():
    assert {p.name for p in SHIPPED} >= {"demo.yaml", "cifar10_resnet56.yaml",
                                         "cifar10_resnet110.yaml", "tinyimagenet_resnet18.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_space_is_valid(path):
    space = load_space(path)
    assert space.num_samples >= 6 and space.baseline is not None
    # Every searched range lies inside the key's allowed range (checked independently here).
    for p in space.params:
        meta = config.FIELDS[p.key].metadata
        if p.kind in ("choice", "ladder"):
            assert all(config.check(p.key, c) is None for c in p.choices)
        else:
            assert meta["lo"] <= p.low < p.high <= meta["hi"]


def test_demo_space_is_small_enough_for_two_cpu_cores():
    space = load_space(REPO / "search_spaces" / "demo.yaml")
    assert space.fixed["dataset"] == "synthetic" and space.gpu == 0
    assert space.cpu * space.max_concurrent <= 2 and space.num_samples >= 6
    # The demo shows the economy: a ladder over the prune ratio, shared dense networks and
    # early stopping, so its 6 rows cost 3 dense trainings (the baseline's included).
    assert space.ladder is not None and space.share_dense and space.fixed["early_stop"]
    from hgsearch.search.cost import sweep_cost
    assert sweep_cost(space).dense_trainings == (3, 3)


def _mutate(change: dict, base: dict = VALID) -> dict:
    data = copy.deepcopy(base)
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = data
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return data


_DELETE = object()

# One mistake each: (change to VALID, the part of the file named, a word of what is allowed).
MISTAKES = [
    ({"fixed.arch": "resnet99"}, "fixed.arch", "resnet56"),
    ({"fixed.epochs": 0}, "fixed.epochs", "between 1"),
    ({"fixed.lr": "fast"}, "fixed.lr", "expected float"),
    ({"fixed.trial_id": "x"}, "fixed.trial_id", "set by the sweep"),
    ({"fixed.colour": "red"}, "fixed.colour", "unknown key"),
    ({"fixed.dataset": "cifar10"}, "fixed", "data_dir"),
    ({"fixed.device": "cuda", "resources.gpu": 0}, "fixed.device", "resources.gpu"),
    ({"search.lam": {"loguniform": [0.0, 1.0e-2]}}, "search.lam", "low > 0"),
    ({"search.lam": {"loguniform": [1.0e-2, 1.0e-6]}}, "search.lam", "below high"),
    ({"search.mix": {"uniform": [0.5, 2.0]}}, "search.mix", "between 0 and 1"),
    ({"search.mix": {"int": [0, 1]}}, "search.mix", "uniform, loguniform"),
    ({"search.mix": {"uniform": [0, 1], "choice": [0.5]}}, "search.mix", "exactly one"),
    ({"search.mix": {"normal": [0, 1]}}, "search.mix", "unknown entry"),
    ({"search.mix": [0, 1]}, "search.mix", "distributions"),
    ({"search.reg_levels": {"choice": [1, 3]}}, "search.reg_levels", "allowed values are 1, 2"),
    ({"search.reg_levels": {"choice": [1, 1]}}, "search.reg_levels", "twice"),
    ({"search.reg_outer.when": {"reg_levels": 3}}, "search.reg_outer.when", "allowed values"),
    ({"search.reg_outer.when": {"reg": "l1"}}, "search.reg_outer.when", "searched above"),
    ({"search.score_samples": {"int": [0, 512], "log": True}}, "search.score_samples",
     "between 1"),
    ({"search.score_samples": {"int": [8.5, 512]}}, "search.score_samples", "integers"),
    ({"search.min_channels.step": 4}, "search.min_channels", "divide"),
    ({"search.batch_size": {"uniform": [32, 64]}}, "search.batch_size", "use int"),
    ({"search.epochs": {"int": [1, 3]}}, "search.epochs", "also under fixed"),
    ({"search.trial_id": {"choice": ["a", "b"]}}, "search.trial_id", "set by the sweep"),
    ({"search.colour": {"choice": [1]}}, "search.colour", "unknown trial key"),
    ({"search.round_to": {"choice": [1, 3]}}, "search.round_to", "multiple of round_to"),
    ({"search": {}}, "search", "at least one"),
    ({"objectives": {"accuracy": "max"}}, "objectives.accuracy", "acc_final"),
    ({"objectives": {"acc_final": "best"}}, "objectives.acc_final", "max or min"),
    ({"objectives": _DELETE}, "objectives", "acc_final: max"),
    ({"sampler.name": "cmaes"}, "sampler.name", "tpe, nsga2"),
    ({"sampler.seed": "x"}, "sampler.seed", "integer"),
    ({"sampler.options": {"multivariat": True}}, "sampler.options", "multivariat"),
    ({"sampler.colour": 1}, "sampler.colour", "name, seed, options"),
    ({"num_samples": 0}, "num_samples", ">= 1"),
    ({"max_concurrent": "two"}, "max_concurrent", ">= 1"),
    ({"retries": -1}, "retries", ">= 0"),
    ({"resources.cpu": -1}, "resources.cpu", ">= 0"),
    ({"resources.gpu": 1.5}, "resources.gpu", "whole number"),
    ({"resources.tpu": 1}, "resources.tpu", "cpu, gpu"),
    ({"resources": {"cpu": 0, "gpu": 0}}, "resources", "some cpu or gpu"),
    ({"search.lr": {"uniform": [0.01, 0.1]}}, "baseline", "lr is searched"),
    ({"baseline": {"lam": 0.1}}, "baseline.lam", "set by the sweep"),
    ({"baseline": "yes"}, "baseline", "true, false or a mapping"),
    ({"colour": 1}, "colour", "unknown section"),
]

LADDER_MISTAKES = [
    ({"search.lam": {"ladder": [1e-4, 1e-3]}}, "search.lam", "prune or finetune group"),
    ({"search.prune_ratio": {"ladder": [0.5]}}, "search.prune_ratio", "at least 2"),
    ({"search.prune_ratio": {"ladder": 0.5}}, "search.prune_ratio", "at least 2"),
    ({"search.prune_ratio": {"ladder": [0.5, 0.99]}}, "search.prune_ratio", "between 0"),
    ({"search.prune_ratio": {"ladder": [0.5, "half"]}}, "search.prune_ratio", "expected float"),
    ({"search.prune_ratio": {"ladder": [0.5, 0.5]}}, "search.prune_ratio", "twice"),
    ({"search.prune_ratio": {"ladder": [0.3, 0.5], "step": 0.1}}, "search.prune_ratio",
     "log and step"),
    ({"search.prune_ratio": {"ladder": [0.3, 0.5]}, "search.prune_scope": {
        "ladder": ["global", "layer"]}}, "search.prune_scope", "prune_ratio is one"),
    ({"share_dense": "yes"}, "share_dense", "true or false"),
]


@pytest.mark.parametrize("change,where,allowed", MISTAKES + LADDER_MISTAKES,
                         ids=[m[1] + ":" + m[2] for m in MISTAKES + LADDER_MISTAKES])
def test_each_mistake_is_one_line_naming_file_key_and_what_is_allowed(change, where, allowed):
    problems = space_problems(_mutate(change), source="space.yaml")
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"space.yaml: {where}: ") and allowed in problems[0]


def test_every_mistake_of_a_file_is_reported_at_once():
    data = copy.deepcopy(VALID)
    # Mistakes in different places do not hide one another.
    wanted = {("fixed.arch", "resnet56"), ("search.mix", "between 0 and 1"),
              ("search.reg_outer.when", "allowed values"), ("sampler.seed", "integer"),
              ("num_samples", ">= 1"), ("resources.tpu", "cpu, gpu"), ("colour", "unknown section"),
              ("objectives.accuracy", "acc_final")}
    chosen = [m for m in MISTAKES if m[1:] in wanted]
    assert len(chosen) == len(wanted)
    for change, _, _ in chosen:
        data = _mutate(change, base=data)
    problems = space_problems(data, source="bad.yaml")
    assert len(problems) == len(chosen), problems
    for _, where, allowed in chosen:
        assert any(p.startswith(f"bad.yaml: {where}: ") and allowed in p for p in problems)
    with pytest.raises(UserError) as err:
        parse_space(data, source="bad.yaml")
    assert err.value.problems == problems


def test_a_valid_space_parses_to_what_the_file_says():
    space = parse_space(VALID, source="ok.yaml")
    assert space.metrics == ["acc_final", "params_ratio"] and space.modes == ["max", "min"]
    assert (space.cpu, space.gpu, space.retries, space.max_concurrent) == (1.0, 0.5, 1, 2)
    assert [p.key for p in space.params] == list(VALID["search"])
    # The baseline (docs/method.md part 4): same fixed keys, no regularization, no pruning.
    assert space.baseline == BASELINE_VALUES
    assert config.make_config({**space.fixed, **space.baseline}).reg == "none"


def test_a_searched_training_key_needs_a_baseline_value():
    data = _mutate({"search.lr": {"uniform": [0.01, 0.1]}, "baseline": {"lr": 0.05}})
    assert parse_space(data, source="x").baseline == {**BASELINE_VALUES, "lr": 0.05}
    assert parse_space(_mutate({"baseline": False}), source="x").baseline is None


def _sample(space, n: int) -> list[optuna.trial.FrozenTrial]:
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(n):
        trial = study.ask()
        space.suggest(trial)
        study.tell(trial, [0.0, 0.0])
    return study.trials


def test_suggest_samples_each_key_in_its_range_and_honours_conditions():
    space = parse_space(VALID, source="ok.yaml")
    trials = _sample(space, 60)
    levels = {t.params["reg_levels"] for t in trials}
    assert levels == {1, 2}
    for t in trials:
        # reg_outer exists exactly when reg_levels is 2 (the `when:` condition).
        assert ("reg_outer" in t.params) == (t.params["reg_levels"] == 2)
        assert 1e-6 <= t.params["lam"] <= 1e-2 and 0.0 <= t.params["mix"] <= 1.0
        assert 8 <= t.params["score_samples"] <= 512
        assert t.params["min_channels"] in (2, 4, 6, 8)
        assert t.distributions["lam"].log and t.distributions["score_samples"].log
        config.make_config({**space.fixed, **t.params})      # every proposal is a valid trial
    # Log-uniform: about half the draws fall below the geometric mean 1e-4 (60 draws).
    below = sum(t.params["lam"] < 1e-4 for t in trials)
    assert 15 <= below <= 45


def test_a_key_the_trial_does_not_use_is_not_proposed():
    """No `when:` in the file: reg=l1 makes the group keys inert (inapplicable.inapplicable_keys),
    so they are absent from the Optuna params whenever l1 was drawn, present otherwise."""
    data = {"fixed": {"epochs": 1}, "objectives": {"acc_final": "max", "params_ratio": "min"},
            "search": {"reg": {"choice": ["l1", "group_l12"]}, "reg_levels": {"choice": [1, 2]},
                       "reg_outer": {"choice": ["sqrt", "square"]}}, "num_samples": 40}
    trials = _sample(parse_space(data, source="x"), 40)
    assert {t.params["reg"] for t in trials} == {"l1", "group_l12"}
    for t in trials:
        params = t.params
        expected = set() if params["reg"] == "l1" else (
            {"reg_levels", "reg_outer"} if params["reg_levels"] == 2 else {"reg_levels"})
        assert set(params) - {"reg"} == expected
        assert set(params).isdisjoint(inapplicable.inapplicable_keys({**data["fixed"], **params}))


def test_a_condition_on_a_fixed_key_is_static():
    data = _mutate({"fixed.reg_levels": 1, "search.reg_levels": _DELETE})
    space = parse_space(data, source="x")
    assert all("reg_outer" not in t.params for t in _sample(space, 10))


@pytest.mark.parametrize("name", [n for n, why in sampler_names().items()
                                  if why is None and n != "auto"])
def test_every_usable_sampler_builds_with_its_seed(name):
    data = _mutate({"sampler": {"name": name, "seed": 7}})
    sampler = parse_space(data, source="x").make_sampler()
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    assert len(_sample(parse_space(data, source="x"), 3)) == 3


def test_notes_warn_of_a_random_first_generation():
    data = _mutate({"sampler": {"name": "nsga2", "options": {"population_size": 20}}})
    assert any("random" in n for n in parse_space(data, source="x").notes)


def test_validate_command_exit_codes(tmp_path, capsys):
    assert main(["validate", *map(str, SHIPPED)]) == 0
    assert "demo.yaml: ok" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_mutate({"num_samples": 0, "retries": -1})))
    assert main(["validate", str(SHIPPED[0]), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith(f"hgsearch: error: {bad}: ") for line in err)
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_default_space_is_found_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_default_space() == REPO / "search_spaces" / "demo.yaml"


@pytest.fixture
def fake_hub(monkeypatch):
    """An optunahub whose load_module records each call instead of fetching code."""
    import importlib.machinery
    import sys
    import types

    calls: list[str] = []
    hub = types.ModuleType("optunahub")
    hub.__spec__ = importlib.machinery.ModuleSpec("optunahub", None)

    def load_module(package):
        calls.append(package)
        return types.SimpleNamespace(AutoSampler=lambda seed=None: optuna.samplers.RandomSampler(
            seed=seed))
    hub.load_module = load_module
    monkeypatch.setitem(sys.modules, "optunahub", hub)
    return calls


def test_auto_sampler_needs_fetch_true_and_validate_never_fetches(fake_hub, tmp_path, capsys):
    plain = tmp_path / "auto.yaml"
    plain.write_text(yaml.safe_dump(_mutate({"sampler": {"name": "auto"}})))
    assert main(["validate", str(plain)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sampler.name" in err[0] and "fetch: true" in err[0]
    asked = tmp_path / "fetch.yaml"
    asked.write_text(yaml.safe_dump(_mutate({"sampler": {"name": "auto", "fetch": True}})))
    assert main(["validate", str(asked)]) == 0
    assert fake_hub == []                               # validating fetched nothing
    sampler = load_space(asked).make_sampler()          # a sweep starting: now, as asked
    assert fake_hub == ["samplers/auto_sampler"] and isinstance(sampler,
                                                                optuna.samplers.BaseSampler)


# ----------------------------------------------------------------- ladders, share_dense, early_stop


def test_a_ladder_is_one_categorical_that_every_trial_shares():
    data = _mutate({"search.prune_ratio": {"ladder": [0.3, 0.5, 0.7]}, "num_samples": 4})
    space = parse_space(data, source="x")
    assert space.ladder is not None and space.ladder.choices == (0.3, 0.5, 0.7)
    assert space.ladder.key == "prune_ratio" and space.share_dense is True
    trials = _sample(space, 30)
    assert {t.params["prune_ratio"] for t in trials} == {0.3, 0.5, 0.7}
    assert {t.distributions["prune_ratio"] for t in trials} == {
        optuna.distributions.CategoricalDistribution([0.3, 0.5, 0.7])}
    assert any("cut short" in n for n in space.notes)           # 4 = 3 + 1
    assert "  search:     prune_ratio: ladder 0.3, 0.5, 0.7" in space.describe()
    assert parse_space(_mutate({"search.prune_ratio": {"ladder": [0.3, 0.6]}}),
                       source="x").notes == ()


def test_share_dense_is_read_and_a_ladder_without_it_is_noted():
    data = _mutate({"search.prune_ratio": {"ladder": [0.3, 0.5]}, "share_dense": False})
    space = parse_space(data, source="x")
    assert space.share_dense is False and any("share_dense" in n for n in space.notes)
    notes = parse_space(_mutate({"share_dense": False}), source="x").notes
    assert [n.split(":")[0] for n in notes] == ["early_stop"]    # on by default, and inert


def test_searched_trials_stop_early_unless_the_file_says_otherwise_the_baseline_never():
    space = parse_space(VALID, source="x")
    assert space.fixed["early_stop"] is True and space.baseline["early_stop"] is False
    assert config.make_config({**space.fixed, **space.baseline}).early_stop is False
    assert space.raw == VALID                        # sweep.json keeps the file as written
    off = parse_space(_mutate({"fixed.early_stop": False}), source="x")
    assert off.fixed["early_stop"] is False
    assert "early_stop" not in parse_space(_mutate({"baseline": False}), source="x").fixed
    searched = parse_space(_mutate({"search.early_stop": {"choice": [True, False]}}),
                           source="x")
    assert "early_stop" not in searched.fixed and searched.baseline["early_stop"] is False
    assert parse_space(searched.raw, source="again").fixed == searched.fixed   # a resume


def test_early_stopping_that_may_stop_nothing_is_said_by_validate():
    """Its reference curve lives in the dense store and is the baseline's network: without the
    store, without a baseline, or where a dense key differs from the baseline's, a trial's
    rungs may have nothing to compare with."""
    raw = read_config_file(REPO / "search_spaces" / "demo.yaml")

    def notes(**changes):
        return [n for n in parse_space({**raw, **changes}, source="x").notes
                if n.startswith("early_stop")]

    assert notes() == []
    assert "share_dense is false" in notes(share_dense=False)[0]
    searched = copy.deepcopy(raw)
    searched["fixed"].pop("lr")
    searched["search"]["lr"] = {"loguniform": [0.01, 0.2]}
    assert "; lr differs between trials and the baseline" in notes(
        fixed=searched["fixed"], search=searched["search"], baseline={"lr": 0.1})[0]
    assert "; lr differs" in notes(baseline={"lr": 0.2})[0]    # the baseline's own lr
    assert "; lr, batch_size differ" in notes(baseline={"lr": 0.2, "batch_size": 64})[0]
    assert notes(baseline={"lr": 0.1}) == []                   # the fixed value: no matter
    alone = notes(baseline=False, fixed={**raw["fixed"], "early_stop": True})
    assert "with no baseline only an unregularized trial" in alone[0]
    assert notes(fixed={**raw["fixed"], "early_stop": False}, share_dense=False) == []
