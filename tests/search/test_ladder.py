"""Prune ladders (hgsearch/search/ladder.py) through the Searcher, as Tune drives it; no Ray.

Each sibling must be its own Optuna trial holding its parent's params with its own ladder
value, every value once per parent, the budget exact, and a driver killed between a sibling's
steps must leave neither a lost nor a doubled sibling.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from hgsearch.results import empty_metrics, write_row
from hgsearch.search import ladder, reconcile
from hgsearch.search.records import optuna_storage_url
from hgsearch.search.searcher import make_searcher
from hgsearch.search.space_file import parse_space

LADDER = [0.3, 0.5, 0.7]
SPACE = {"fixed": {"dataset": "synthetic", "arch": "resnet20", "epochs": 1},
         "search": {"lam": {"loguniform": [1.0e-6, 1.0e-2]},
                    "prune_ratio": {"ladder": LADDER}},
         "objectives": {"acc_final": "max", "params_ratio": "min"},
         "sampler": {"name": "random", "seed": 0}, "num_samples": 7, "baseline": False}
OK = {"acc_final": 0.5, "params_ratio": 0.5, "hg_final": True, "hg_status": "ok"}


def _space(**changes):
    return parse_space({**SPACE, **changes}, source="s")


def _load(folder) -> optuna.Study:
    """The study as optuna.load_study shows it to a user (nothing cached by the searcher)."""
    return optuna.load_study(study_name="s", storage=optuna_storage_url(folder))


def _group_sizes(num_samples: int, size: int) -> list[int]:
    """Brute force: parents asked one after another, each taking what the budget leaves."""
    sizes, left = [], num_samples
    while left > 0:
        sizes.append(min(size, left))
        left -= sizes[-1]
    return sizes


def _ladders(study: optuna.Study, key: str = "prune_ratio") -> dict[int, list]:
    """{parent number: [parent, siblings...]}, after checking each sibling against its parent."""
    groups: dict[int, list] = {}
    for t in study.get_trials():
        groups.setdefault(t.user_attrs.get(ladder.PARENT, t.number), []).append(t)
    for number, (parent, *siblings) in groups.items():
        assert parent.number == number and ladder.PARENT not in parent.user_attrs
        values = [t.params.get(key) for t in (parent, *siblings)]
        assert len(set(values)) == len(values), values        # each value once per parent
        for t in siblings:
            assert t.params == {**parent.params, key: t.user_attrs[ladder.VALUE]}
            assert t.distributions == parent.distributions
    return groups


def _drive(searcher, prefix: str, limit: int = 50) -> list[str]:
    """Tune's loop: ask, and end each trial at once, until the searcher says FINISHED."""
    ids = []
    for i in range(limit):
        config = searcher.suggest(f"{prefix}{i}")
        if config == "FINISHED":
            return ids
        assert config is not None       # every parent ended: a sibling is always released
        ids.append(config["trial_id"])
        searcher.on_trial_complete(f"{prefix}{i}", OK)
    raise AssertionError("never FINISHED")


def test_siblings_wait_for_their_parents_training_and_carry_its_params(tmp_path):
    s = make_searcher(_space(), name="s", folder=tmp_path)
    first = [s.suggest(f"a{i}") for i in range(3)]     # three parents: 7 = 3 + 3 + 1
    assert [c["trial_id"] for c in first] == ["t0000", "t0001", "t0002"]
    assert ladder.pending(s.study) == {
        0: [v for v in LADDER if v != first[0]["prune_ratio"]],
        1: [v for v in LADDER if v != first[1]["prune_ratio"]], 2: []}
    assert reconcile.remaining(s.study, 7) == 0
    assert s.suggest("a3") is None                       # budget asked, no parent trained
    s.on_trial_result("a1", {"hg_phase": "train", "hg_final": False})
    assert s.suggest("a3") is None
    s.on_trial_result("a1", {"hg_phase": "trained", "hg_final": False})
    sibling = s.suggest("a3")                            # t0001 trained; t0000 still trains
    wanted = [v for v in LADDER if v != first[1]["prune_ratio"]][0]
    assert sibling == {**first[1], "prune_ratio": wanted, "trial_id": "t0003"}
    for i in range(4):
        s.on_trial_complete(f"a{i}", OK)                 # t0000 ended: its siblings next
    ids = _drive(s, "b")
    assert ids == ["t0004", "t0005", "t0006"]
    study = _load(tmp_path)
    groups = _ladders(study)
    assert [len(g) for g in groups.values()] == _group_sizes(7, len(LADDER)) == [3, 3, 1]
    assert {n: [t.number for t in g] for n, g in groups.items()} == \
        {0: [0, 4, 5], 1: [1, 3, 6], 2: [2]}
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert all(not values for values in ladder.recorded(study).values())


@pytest.mark.parametrize("num_samples", range(1, 9))
def test_the_budget_is_exact_whatever_the_ladder_leaves(tmp_path, num_samples):
    s = make_searcher(_space(num_samples=num_samples), name="s", folder=tmp_path)
    ids = _drive(s, "a")
    study = _load(tmp_path)
    assert len(study.trials) == len(ids) == num_samples
    assert [len(g) for g in _ladders(study).values()] == _group_sizes(num_samples, len(LADDER))


def test_a_parent_this_driver_does_not_run_releases_its_siblings_at_once(tmp_path):
    first = make_searcher(_space(), name="s", folder=tmp_path)
    parent = first.suggest("a0")
    first.on_trial_complete("a0", OK)
    fresh = make_searcher(_space(), name="s", folder=tmp_path)    # a resume, Tune state lost
    sibling = fresh.suggest("b0")
    assert sibling["lam"] == parent["lam"] and sibling["prune_ratio"] != parent["prune_ratio"]
    assert _load(tmp_path).trials[1].user_attrs[ladder.PARENT] == 0


@pytest.mark.parametrize("popped", [False, True], ids=["after-enqueue", "after-ask"])
def test_a_kill_between_a_siblings_steps_loses_and_doubles_nothing(tmp_path, popped):
    first = make_searcher(_space(), name="s", folder=tmp_path)
    parent = first.suggest("a0")
    value = ladder.pending(first.study)[0][0]
    ladder.enqueue(first.study, 0, value, key="prune_ratio")     # the release began, then
    if popped:
        first.study.ask()                  # its ask too (RUNNING), but not ladder.asked: kill
    assert ladder.recorded(first.study)[0] == [v for v in LADDER if v != parent["prune_ratio"]]
    fresh = make_searcher(_space(), name="s", folder=tmp_path)
    assert ladder.recorded(fresh.study)[0] == [v for v in LADDER
                                               if v not in (parent["prune_ratio"], value)]
    assert reconcile.remaining(fresh.study, 7) == 7 - 2 - 1
    ids = _drive(fresh, "b")               # the orphans are adopted, the queue emptied
    assert len(ids) == 7 and len(set(ids)) == 7
    study = _load(tmp_path)
    assert [len(g) for g in _ladders(study).values()] == [3, 3, 1]
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_an_adopted_parent_whose_siblings_were_never_recorded_gets_them(tmp_path):
    s = make_searcher(_space(), name="s", folder=tmp_path)
    s.study.ask().suggest_float("lam", 1.0e-6, 1.0e-2, log=True)    # asked, then the kill
    fresh = make_searcher(_space(), name="s", folder=tmp_path)
    adopted = fresh.suggest("b0")
    assert adopted["trial_id"] == "t0000" and ladder.has_record(fresh.study, 0)
    assert len(ladder.pending(fresh.study)[0]) == 2
    fresh.on_trial_complete("b0", OK)
    _drive(fresh, "c")
    assert [len(g) for g in _ladders(_load(tmp_path)).values()] == [3, 3, 1]


@pytest.mark.parametrize("resumed", [False, True], ids=["same-driver", "resumed"])
def test_a_stopped_parent_gives_its_trials_to_new_networks(tmp_path, resumed):
    """Its siblings would reuse its stopped network and stop at once: none is asked."""
    s = make_searcher(_space(), name="s", folder=tmp_path)
    parent = s.suggest("a0")
    assert len(ladder.pending(s.study)[0]) == 2
    s.on_trial_complete("a0", {"acc_final": float("nan"), "params_ratio": float("nan"),
                               "hg_final": True, "hg_status": "stopped"})
    if resumed:                         # killed before the next ask: the study alone decides
        s = make_searcher(_space(), name="s", folder=tmp_path)
    ids = _drive(s, "b")
    study = _load(tmp_path)
    assert [t.number for t in _ladders(study)[0]] == [0]        # no sibling of the stopped one
    assert study.trials[0].state == TrialState.PRUNED and parent["trial_id"] == "t0000"
    assert len(study.trials) == 7 and len(ids) == 6             # the budget still exact
    assert [len(g) for g in _ladders(study).values()] == [1, *_group_sizes(6, len(LADDER))]


def test_a_parent_whose_row_says_stopped_releases_no_sibling_before_tune_tells_it(tmp_path):
    """The worker writes its row before Tune reports the trial's end: in between, a sibling
    released on that row would reuse the stopped network and stop at once."""
    s = make_searcher(_space(num_samples=3), name="s", folder=tmp_path)
    parent = s.suggest("a0")
    assert s.suggest("a1") is None                       # the budget asked, the parent trains
    write_row(tmp_path, {**parent, **empty_metrics(), "out_dir": str(tmp_path),
                         "status": "stopped", "stopped_epoch": 1})
    new = s.suggest("a1")                                # not told yet: the row alone says so
    assert new is not None and ladder.PARENT not in s.study.trials[-1].user_attrs
    assert new["trial_id"] == "t0001" and ladder.pending(s.study)[0] == []
    s.on_trial_complete("a0", {"acc_final": float("nan"), "params_ratio": float("nan"),
                               "hg_final": True, "hg_status": "stopped"})
    s.on_trial_complete("a1", OK)
    _drive(s, "b")
    study = _load(tmp_path)
    assert len(study.trials) == 3 and [t.number for t in _ladders(study)[0]] == [0]
    assert study.trials[0].state == TrialState.PRUNED


@pytest.mark.parametrize("where", ["train", "finetune"])
def test_a_parent_that_diverged_in_training_takes_its_siblings_with_it(tmp_path, where):
    """Its network is NaN, so every sibling would diverge; diverged in fine-tuning, the network
    is sound (acc_dense measured) and the other ladder values are still worth a trial."""
    s = make_searcher(_space(), name="s", folder=tmp_path)
    parent = s.suggest("a0")
    dense = {"acc_dense": None} if where == "train" else {"acc_dense": 0.6}
    write_row(tmp_path, {**parent, **empty_metrics(), **dense, "out_dir": str(tmp_path),
                         "status": "diverged", "error": f"loss became nan in {where} epoch 1"})
    s.on_trial_complete("a0", {"acc_final": 0.1, "params_ratio": 1.0, "hg_final": True,
                               "hg_status": "diverged"})
    _drive(s, "b")
    study = _load(tmp_path)
    siblings = [t.number for t in _ladders(study)[0]][1:]
    assert len(siblings) == (0 if where == "train" else 2) and len(study.trials) == 7


def test_a_parent_without_the_key_has_no_siblings(tmp_path):
    """finetune_lr is inert when finetune_epochs is 0 (inapplicable.inapplicable_keys)."""
    space = _space(search={"finetune_epochs": {"choice": [0, 2]},
                           "finetune_lr": {"ladder": [0.01, 0.05]}}, num_samples=8)
    _drive(make_searcher(space, name="s", folder=tmp_path), "a")
    groups = _ladders(_load(tmp_path), key="finetune_lr")
    sizes = {len(g) for g in groups.values() if "finetune_lr" not in g[0].params}
    assert sizes == {1} and sum(len(g) for g in groups.values()) == 8
    assert {len(g) for g in groups.values() if "finetune_lr" in g[0].params} <= {1, 2}
