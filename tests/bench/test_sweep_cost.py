"""The sweep-cost benchmark: hypervolume against compute and the reach ratio on hand-made rows
with answers worked out by hand, the plain space, and the whole report with sweeps faked."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from hgsearch.bench import cost_curves, sweep_cost
from hgsearch.cli import main
from hgsearch.config_file import read_config_file
from hgsearch.search.space_file import parse_space

ROOT = Path(__file__).resolve().parents[2]
REF = {"acc_final": 0.1, "params_ratio": 1.0}
OBJ = [("acc_final", "max"), ("params_ratio", "min")]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def row(trial_id, start, finish, acc, ratio, images=(0, 0, 0), status="ok", baseline=False):
    def at(s):
        return None if s is None else (T0 + timedelta(seconds=s)).isoformat()

    train, finetune, score = images
    return {"trial_id": trial_id, "status": status, "acc_final": acc, "params_ratio": ratio,
            "started_at": at(start), "finished_at": at(finish), "is_baseline": baseline,
            "images_train": train, "images_finetune": finetune, "images_score": score}


def box(acc, ratio):
    """Area a point dominates above the reference: (acc - 0.1) x (1 - ratio)."""
    return (acc - 0.1) * (1.0 - ratio)


# Two fronts of the same two points, (0.6, 0.5) and (0.4, 0.2): by inclusion-exclusion
# 0.25 + 0.24 - 0.3 x 0.5 = 0.34.
HV_ONE = box(0.6, 0.5)
HV_TWO = box(0.6, 0.5) + box(0.4, 0.2) - (0.4 - 0.1) * (1 - 0.5)


def plain_rows():
    # The baseline would dominate both trials: it must add no volume, but its images count.
    return pd.DataFrame([
        row("baseline", 0, 50, 0.9, 0.3, (300, 100, 100), baseline=True),
        row("t0000", 0, 100, 0.6, 0.5, (700, 200, 100)),
        row("t0001", 100, 200, 0.4, 0.2, (700, 200, 100))])


def economical_rows():
    return pd.DataFrame([
        row("t0000", 0, 40, 0.6, 0.5, (300, 50, 50)),
        row("t0001", 0, 80, 0.4, 0.2, (0, 700, 100)),      # concurrent with t0000
        row("t0002", 40, 60, None, None, (100, 0, 0), status="stopped"),
        {**row("t0003", None, 90, None, None, status="failed"),
         "images_train": None, "images_finetune": None, "images_score": None}])


def test_curves_by_hand():
    assert HV_TWO == pytest.approx(0.34)
    plain, notes = cost_curves.cost_curve(plain_rows(), OBJ, REF)
    assert notes == []
    assert plain.trial_ids == ["baseline", "t0000", "t0001"]
    assert plain.hv == pytest.approx([0.0, HV_ONE, HV_TWO])
    # At t=50 the baseline is done (500) and t0000 half way (500); t0001 starts at 100.
    assert plain.images == pytest.approx([1000, 1500, 2500])
    assert plain.wall_s == pytest.approx([50, 100, 200])
    assert plain.trainings == [1, 2, 3]          # the baseline and each trial trained a network

    econ, _ = cost_curves.cost_curve(economical_rows(), OBJ, REF)
    assert econ.trial_ids == ["t0000", "t0002", "t0001", "t0003"]
    assert econ.hv == pytest.approx([HV_ONE, HV_ONE, HV_TWO, HV_TWO])
    # t=40: t0000 400 + half of t0001's 800; t=60: + t0002 100 + 3/4 of 800; the failed row 0.
    assert econ.images == pytest.approx([800, 1100, 1300, 1300])
    assert econ.wall_s == pytest.approx([40, 60, 80, 90])
    # t0002 trained until it was stopped; t0001 reused a network; the failed t0003 trained none
    assert econ.trainings == [1, 2, 2, 2]


def test_reach_ratio_by_hand():
    plain, _ = cost_curves.cost_curve(plain_rows(), OBJ, REF)
    econ, _ = cost_curves.cost_curve(economical_rows(), OBJ, REF)
    got = cost_curves.compare(plain, econ)
    assert got["reached"] is True and got["reach_trials"] == 3
    assert got["plain_hv"] == pytest.approx(HV_TWO) and got["economical_hv"] == pytest.approx(
        HV_TWO)
    assert got["reach_images"] == pytest.approx(1300) and got["plain_images"] == 2500
    assert got["ratio_images"] == pytest.approx(1300 / 2500)
    assert got["ratio_wall_s"] == pytest.approx(80 / 200)
    assert got["reach_trainings"] == 2 and got["plain_trainings"] == 3
    # A third of the plain images (833) buys the economical sweep its first point only (800);
    # a third of the plain wall time (66.7 s), its first (40 s) and the stopped t0002 (60 s).
    assert got["hv_share_at_third_images"] == pytest.approx(HV_ONE / HV_TWO)
    assert got["hv_share_at_third_wall_s"] == pytest.approx(HV_ONE / HV_TWO)
    lines = sweep_cost.format_sweep_cost({"reference": REF, "per_seed": [{"seed": 0, **got}]})
    assert f"| 0.52 | {HV_ONE / HV_TWO:.3f} | 3.3 min |" in lines[4]
    assert lines[4].endswith("| 0.40 | 2 (3) |")


def test_hv_within_a_budget():
    econ, _ = cost_curves.cost_curve(economical_rows(), OBJ, REF)     # images 800 .. 1300
    assert cost_curves.hv_within(econ, "images", 799) == 0.0          # before the first point
    assert cost_curves.hv_within(econ, "images", 800) == pytest.approx(HV_ONE)
    assert cost_curves.hv_within(econ, "images", 1299) == pytest.approx(HV_ONE)
    assert cost_curves.hv_within(econ, "images", 1e9) == pytest.approx(HV_TWO)
    assert cost_curves.hv_within(econ, "wall_s", 80) == pytest.approx(HV_TWO)
    no_images, _ = cost_curves.cost_curve(plain_rows().drop(columns=["images_score"]), OBJ, REF)
    assert cost_curves.hv_within(no_images, "images", 1e9) is None


def test_not_reached():
    plain, _ = cost_curves.cost_curve(plain_rows(), OBJ, REF)
    econ, _ = cost_curves.cost_curve(economical_rows().iloc[[0, 2]], OBJ, REF)
    got = cost_curves.compare(plain, econ)
    assert got["reached"] is False and got["economical_hv"] == pytest.approx(HV_ONE)
    assert got["reach_images"] is None and got["ratio_images"] is None
    assert got["ratio_wall_s"] is None
    summary = cost_curves.summarize([got, {**got, "reached": True, "ratio_images": 0.2,
                                           "ratio_wall_s": 0.4}])
    assert summary["reached"] == 1 and summary["ratio_images"] == pytest.approx(0.2)
    report = {"reference": REF, "per_seed": [{"seed": 0, **got}], "summary": summary}
    lines = sweep_cost.format_sweep_cost(report)
    assert "not reached" in lines[4] and lines[5].startswith("| mean (1 of 2 reached)")
    assert lines[4].endswith("| not reached (3) |") and got["reach_trainings"] is None
    assert got["hv_share_at_third_images"] == pytest.approx(HV_ONE / HV_TWO)   # still a figure


def test_no_usable_trial_and_no_plain_volume():
    rows = economical_rows().iloc[[2, 3]]            # stopped and failed only
    curve, _ = cost_curves.cost_curve(rows, OBJ, REF)
    assert curve.hv == [0.0, 0.0]
    got = cost_curves.compare(curve, curve)
    assert got["reached"] is None and got["ratio_images"] is None


def test_without_image_counts_only_wall_time():
    rows = plain_rows().drop(columns=["images_score"])
    curve, notes = cost_curves.cost_curve(rows, OBJ, REF)
    assert curve.images is None and curve.wall_s == pytest.approx([50, 100, 200])
    assert "images_score" in notes[0]
    rows = plain_rows()
    rows.loc[1, "images_train"] = None                # an ok row without its count
    curve, notes = cost_curves.cost_curve(rows, OBJ, REF)
    assert curve.images is None and "1 row(s)" in notes[0]


SPACE = {
    "fixed": {"dataset": "synthetic", "epochs": 2, "early_stop": True, "early_stop_ratio": 0.3},
    "search": {"lam": {"loguniform": [1e-6, 1e-3]},
               "prune_ratio": {"ladder": [0.3, 0.5, 0.7], "when": {"reg": "exclusive"}},
               "early_stop_rungs": {"int": [1, 3]}},
    "sampler": "tpe", "num_samples": 8}


def test_plain_space_turns_every_economy_off():
    out, changes = sweep_cost.plain_space(SPACE)
    assert out["search"]["prune_ratio"] == {"choice": [0.3, 0.5, 0.7],
                                            "when": {"reg": "exclusive"}}
    assert out["search"]["lam"] == SPACE["search"]["lam"]
    assert not any(k.startswith("early_stop_") for k in {**out["fixed"], **out["search"]})
    assert out["share_dense"] is False and "share_dense" not in out["fixed"]   # a section
    assert out["fixed"]["early_stop"] is False and "early_stop" not in out["search"]
    assert changes[:2] == ["share_dense: false (section)", "early_stop: false (fixed)"]
    assert SPACE["search"]["prune_ratio"]["ladder"] == [0.3, 0.5, 0.7]   # input untouched


def test_variant_spaces_seed_and_scale():
    econ, changes = sweep_cost.variant_space(SPACE, "economical", 3, sweep_cost.QUICK)
    assert changes == [] and econ["search"]["prune_ratio"]["ladder"] == [0.3, 0.5, 0.7]
    # twice the plain sweep's 4 trials: its trials are cheaper
    assert econ["sampler"] == {"name": "tpe", "seed": 3} and econ["num_samples"] == 8
    plain, _ = sweep_cost.variant_space(SPACE, "plain", 3, sweep_cost.QUICK)
    assert plain["num_samples"] == 4
    assert econ["fixed"]["synthetic_train_size"] == 1000 and econ["fixed"]["early_stop"] is True
    other = {**SPACE, "sampler": {"name": "tpe", "seed": 0, "options": {"group": True}},
             "fixed": {**SPACE["fixed"], "dataset": "cifar10"}}
    plain, _ = sweep_cost.variant_space(other, "plain", 1)
    assert plain["sampler"] == {"name": "tpe", "seed": 1, "options": {"group": True}}
    assert "synthetic_train_size" not in plain["fixed"] and plain["num_samples"] == 8


def test_the_demo_space_gives_two_valid_spaces():
    raw = read_config_file(ROOT / "search_spaces" / "demo.yaml")
    for variant in sweep_cost.VARIANTS:
        space, _ = sweep_cost.variant_space(raw, variant, 1)
        parsed = parse_space(space, source=variant)
        assert parsed.sampler.seed == 1
        # as the sweeps run them: sharing on by default, early stopping by the baseline
        assert sweep_cost.economies(parsed) == (
            {"ladder": None, "share_dense": False, "early_stop": False} if variant == "plain"
            else {"ladder": {"prune_ratio": [0.3, 0.5, 0.7]}, "share_dense": True,
                  "early_stop": True})
        assert parsed.share_dense is (variant != "plain")


def fake_sweeps(monkeypatch, fail=()):
    calls = []

    def run_sweep(space_file, *, name, results, log):
        calls.append((name, yaml.safe_load(Path(space_file).read_text())))
        if name in fail:
            raise RuntimeError("boom")
        rows = plain_rows() if name.startswith("plain") else economical_rows()
        return SimpleNamespace(rows=rows, complete=True)

    monkeypatch.setattr("hgsearch.search.driver.run_sweep", run_sweep)
    return calls


def test_report_with_faked_sweeps(tmp_path, monkeypatch):
    calls = fake_sweeps(monkeypatch, fail=("economical-s1",))
    report, path = sweep_cost.run_sweep_cost(ROOT / "search_spaces" / "demo.yaml", seeds=(0, 1),
                                             out=tmp_path, log=lambda _line: None)
    assert [name for name, _ in calls] == ["plain-s0", "economical-s0", "plain-s1",
                                           "economical-s1"]
    assert [space["sampler"]["seed"] for _, space in calls] == [0, 0, 1, 1]
    on_disk = json.loads(path.read_text())          # strict JSON
    assert on_disk["complete"] is True and on_disk["reference"] == REF
    assert on_disk["economies"]["economical"]["share_dense"] is True and not on_disk["notes"]
    assert on_disk["sweeps"]["economical-s1"]["status"].startswith("failed: RuntimeError")
    [seed0] = on_disk["per_seed"]                   # seed 1 has no economical curve
    assert seed0["seed"] == 0 and seed0["ratio_images"] == pytest.approx(1300 / 2500)
    assert on_disk["summary"]["ratio_wall_s"] == pytest.approx(0.4)
    table = path.with_suffix(".txt").read_text().splitlines()
    assert table == sweep_cost.format_sweep_cost(on_disk) and "| 0 | 0.3400 |" in table[4]
    assert (path.with_suffix("") / "spaces" / "plain-s1.yaml").is_file()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert any("matplotlib" in n for n in on_disk["notes"])
    else:
        assert path.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0,x"], "--seeds 0,x: expected"),
    (["--seeds", "1,1"], "--seeds 1,1: each seed once"),
    (["--seeds", "-1"], "--seeds -1: expected"),
    (["--only", "hgsr"], "--only: does not apply"),
])
def test_bad_options_exit_2_in_one_line(tmp_path, capsys, monkeypatch, args, message):
    calls = fake_sweeps(monkeypatch)
    out = tmp_path / "out"
    assert main(["bench", "--suite", "sweep-cost", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not calls


@pytest.mark.parametrize("key, value", [("fixed", [1, 2]), ("sampler", 5),
                                        ("num_samples", "x")])
def test_a_bad_space_exits_2_in_one_line_before_any_sweep(tmp_path, capsys, monkeypatch,
                                                           key, value):
    calls = fake_sweeps(monkeypatch)
    space, out = tmp_path / "bad.yaml", tmp_path / "out"
    raw = read_config_file(ROOT / "search_spaces" / "demo.yaml")
    space.write_text(yaml.safe_dump({**raw, key: value}))
    message = f"{key}:"
    assert main(["bench", "--suite", "sweep-cost", "--space", str(space), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(space) in err and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not calls


def test_sweep_cost_options_refused_for_other_suites(tmp_path, capsys):
    assert main(["bench", "--seeds", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--seeds: applies to --suite sweep-cost only" in capsys.readouterr().err
