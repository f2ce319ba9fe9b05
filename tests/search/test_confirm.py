"""Confirmation seeds (hgsearch/search/confirm.py): a real tiny sweep with a baseline and a
scratch control, whose selection `select --confirm 1` re-runs with one more seed each."""

from __future__ import annotations

import json
import time

import pytest

from hgsearch.analysis.confirm import paired
from hgsearch.analysis.front import pareto_front
from hgsearch.analysis.select_trial import select_trial
from hgsearch.cli import main
from hgsearch.errors import UserError
from hgsearch.results import load_results
from hgsearch.search.confirm import check_count, confirm_keys, run_confirmation
from tests.search.test_controls import sweep_one_pruned_trial


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory):
    # one pruned trial, the baseline and one control: each kind of pair once, at least cost
    swept, _ = sweep_one_pruned_trial(tmp_path_factory.mktemp("confirm"), baseline=True,
                                      kinds=["scratch"], log=lambda _l: None)
    chosen = select_trial(swept.rows, rule="knee")
    lines: list[str] = []
    start = time.perf_counter()
    ran = run_confirmation(swept.folder, chosen.row, 1, num_cpus=2, log=lines.append)
    seconds = time.perf_counter() - start
    print(f"confirm: {len(ran)} trial(s) in {seconds:.1f} s")
    return swept.folder, swept.rows, chosen, ran, lines


def test_each_trial_compared_gets_its_seed_once(confirmed):
    folder, before, chosen, ran, lines = confirmed
    rows = load_results(folder).set_index("trial_id")
    base = str(before[before.is_baseline.eq(True)].trial_id.iloc[0])
    originals = [chosen.trial_id, base, f"{chosen.trial_id}-scratch"]
    assert sorted(ran) == sorted(f"{t}-seed1" for t in originals)
    new = rows[rows.confirm_of.notna()]
    assert sorted(new.index) == sorted(ran)
    assert (new.status == "ok").all(), new[["status", "error"]]
    for t in originals:
        again = rows.loc[f"{t}-seed1"]
        assert again.confirm_of == t and again.confirm_seed == 1
        assert again.seed == rows.loc[t].seed + 1
        # the same configuration (its pruning may keep other filters under another seed)
        assert list(again.widths_dense) == list(rows.loc[t].widths_dense)
        assert again.prune_ratio == rows.loc[t].prune_ratio
        assert again.epochs == rows.loc[t].epochs
        assert not again.is_baseline and not isinstance(again.control, str)
    assert sum("confirm: 3 trial(s) of seeds 1..1" in line for line in lines) == 1


def test_confirmation_seeds_stay_off_the_front_and_the_selection(confirmed):
    folder, _, chosen, _, _ = confirmed
    rows = load_results(folder)
    front = pareto_front(rows)
    assert not front.trial_id.str.contains("-seed").any()
    assert front.attrs["excluded"]["confirmation seeds"] == 3
    assert select_trial(rows, rule="knee").trial_id == chosen.trial_id
    with pytest.raises(UserError, match="left out: 3 confirmation seeds"):
        select_trial(rows[rows.confirm_of.notna()], rule="knee")


def test_select_confirm_again_runs_nothing_and_prints_the_pairs(confirmed, capsys):
    folder, _, chosen, _, _ = confirmed
    before = load_results(folder).set_index("trial_id").finished_at.to_dict()
    assert main(["select", str(folder), "--rule", "knee", "--no-onnx", "--confirm", "1"]) == 0
    out = capsys.readouterr().out
    assert load_results(folder).set_index("trial_id").finished_at.to_dict() == before
    rows = load_results(folder)
    pairs = {p.kind: p for p in paired(rows, chosen.row)}
    assert set(pairs) == {"baseline", "scratch"}
    by_id = rows.set_index("trial_id").acc_final
    for p in pairs.values():
        d = [by_id[chosen.trial_id] - by_id[p.other_id],
             by_id[f"{chosen.trial_id}-seed1"] - by_id[f"{p.other_id}-seed1"]]
        assert p.differences == pytest.approx(d)
        se = abs(d[0] - d[1]) / 2          # n = 2: sd = |d0 - d1| / sqrt(2), / sqrt(2)
        assert p.se == pytest.approx(se)
        assert f"against {p.kind} ({p.other_id}): {100 * sum(d) / 2:+.2f} +- {100 * se:.2f} " \
            "points over 2 seed(s)" in out
    card = json.loads((folder / "selected" / "model_card.json").read_text())
    assert {c["kind"] for c in card["confirmation"]["pairs"]} == {"baseline", "scratch"}


def test_confirm_keys_change_the_seed_and_nothing_else(tmp_path):
    row = {"trial_id": "t0003", "seed": 7, "lam": 1e-3, "reg": "group_l12", "early_stop": True,
           "out_dir": "elsewhere", "acc_final": 0.5}
    keys = confirm_keys(row, 2, folder=tmp_path)
    assert keys == {"trial_id": "t0003-seed2", "seed": 9, "lam": 1e-3, "reg": "group_l12",
                    "early_stop": False, "out_dir": str(tmp_path)}


@pytest.mark.parametrize("count", [0, -1, True, 1.5])
def test_a_bad_count_is_refused(count):
    with pytest.raises(UserError, match=r"^--confirm .*: expected an integer >= 1"):
        check_count(count)
