"""The selection against its baseline and controls over seeds (hgsearch/analysis/confirm.py), on
hand-made rows whose paired means and standard errors are worked out here in closed form."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from hgsearch.analysis.confirm import Paired, confirmation_lines, paired, seed_accuracies
from hgsearch.analysis.front import pareto_front
from hgsearch.analysis.select_trial import select_trial
from hgsearch.cli import main
from hgsearch.results import typed
from tests.results_fixtures import trial_row, write_results

# acc_final per seed k (0: the original row): the selection t1, the baseline, two controls.
SELECTION = {0: 0.80, 1: 0.82, 2: 0.78}
BASELINE = {0: 0.79, 1: 0.80, 2: 0.80}          # d = 1, 2, -2 points
SCRATCH = {0: 0.70, 1: 0.71, 2: None}           # seed 2 failed: d = 10, 11 points
UNIFORM = {0: 0.75}                             # never confirmed: one seed


def _row(trial_id: str, k: int, acc: float | None, **extra) -> dict:
    row = {"trial_id": trial_id if k == 0 else f"{trial_id}-seed{k}", "sweep": "s",
           "status": "ok" if acc is not None else "failed", "acc_final": acc,
           "params_ratio": 0.5, "val_images": 1000, "is_baseline": False, **extra}
    if k:
        row.update(confirm_of=trial_id, confirm_seed=k, control=None, control_of=None,
                   is_baseline=False)
    return row


def _rows() -> pd.DataFrame:
    rows = [_row("t1", k, a) for k, a in SELECTION.items()]
    rows += [_row("baseline", k, a, is_baseline=True, params_ratio=1.0)
             for k, a in BASELINE.items()]
    rows += [_row("t1-scratch", k, a, control="scratch", control_of="t1")
             for k, a in SCRATCH.items()]
    rows += [_row("t1-uniform", k, a, control="uniform", control_of="t1")
             for k, a in UNIFORM.items()]
    return typed(pd.DataFrame(rows))


def _by_kind(df: pd.DataFrame) -> dict[str, Paired]:
    row = df[df.trial_id.eq("t1")].iloc[0]
    return {p.kind: p for p in paired(df, row)}


def test_the_paired_mean_and_standard_error_match_the_closed_form():
    pairs = _by_kind(_rows())
    base = pairs["baseline"]
    # d = (1, 2, -2)/100: mean 1/300; deviations (2, 5, -7)/300 -> sd^2 = 78/9/2 * 1e-4,
    # se = sd / sqrt(3) = sqrt(13) / 300
    assert base.seeds == (0, 1, 2) and base.n == 3
    assert base.mean == pytest.approx(1 / 300, abs=1e-12)
    assert base.se == pytest.approx(math.sqrt(13) / 300, abs=1e-12)
    assert base.within_noise is True
    # seed 2 of the scratch control failed: only the seeds both ended ok are paired
    scratch = pairs["scratch"]
    assert scratch.seeds == (0, 1)
    assert scratch.mean == pytest.approx(0.105, abs=1e-12)
    assert scratch.se == pytest.approx(0.01 / 2, abs=1e-12)   # sd = 0.01/sqrt(2), n = 2
    assert scratch.within_noise is False
    uniform = pairs["uniform"]
    assert uniform.n == 1 and math.isnan(uniform.se) and uniform.within_noise is None


def test_select_lines_say_what_is_noise():
    df = _rows()
    lines = confirmation_lines(df, df[df.trial_id.eq("t1")].iloc[0])
    assert "the selection 80.00% over 3 seed(s), sd 2.00 points" in lines[0]
    assert "against baseline (baseline): +0.33 +- 1.20 points over 3 seed(s); within noise " \
        "(|mean| < 2 standard errors)" in lines[1]
    assert "against scratch (t1-scratch): +10.50 +- 0.50 points over 2 seed(s); the selection " \
        "is ahead beyond 2 standard errors" in lines[2]
    assert "against uniform (t1-uniform): +5.00 points over 1 seed(s); standard error unknown" \
        in lines[3]


def test_without_confirmation_seeds_nothing_is_said():
    df = _rows()
    alone = df[df.confirm_of.isna()]
    assert confirmation_lines(alone, alone[alone.trial_id.eq("t1")].iloc[0]) == []
    assert seed_accuracies(alone, "t1") == {0: 0.80}


def test_a_selection_without_baseline_or_controls_is_said_alone():
    df = _rows()
    alone = df[df.trial_id.eq("t1") | df.confirm_of.eq("t1").fillna(False)]
    lines = confirmation_lines(alone, alone[alone.trial_id.eq("t1")].iloc[0])
    assert len(lines) == 2 and "nothing to compare it with" in lines[1]


def test_confirmation_seeds_are_never_on_the_front_nor_selected():
    df = _rows()
    # a confirmation seed better than everything at the same size stays off the front
    df = typed(pd.concat([df, pd.DataFrame([_row("t1", 3, 0.99)])], ignore_index=True))
    front = pareto_front(df)
    assert not front.trial_id.str.contains("-seed").any()
    assert front.attrs["excluded"]["confirmation seeds"] == 2 + 2 + 2 + 1
    assert select_trial(df, rule="knee").trial_id == "t1"


def test_select_card_and_report_carry_the_confirmation(tmp_path, capsys):
    df = write_results(tmp_path)
    chosen = select_trial(df, rule="knee")
    base = df[df.is_baseline].iloc[0]
    for k, (mine, theirs) in enumerate([(0.95, 0.94), (0.90, 0.92)], start=1):
        for original, acc in ((chosen.row, mine), (base, theirs)):
            i = int(str(original["trial_id"])[1:])
            row = {**trial_row(i, acc=acc, ratio=float(original["params_ratio"]),
                               baseline=bool(original["is_baseline"])),
                   "trial_id": f"{original['trial_id']}-seed{k}", "is_baseline": False,
                   "confirm_of": original["trial_id"], "confirm_seed": k, "seed": k}
            pd.DataFrame([row]).to_parquet(tmp_path / "trials" / f"{row['trial_id']}.parquet")
    assert main(["select", str(tmp_path), "--rule", "knee", "--no-onnx"]) == 0
    out = capsys.readouterr().out
    assert f"selected {chosen.trial_id}" in out
    d = [float(chosen.row.acc_final) - float(base.acc_final), 0.95 - 0.94, 0.90 - 0.92]
    mean = sum(d) / 3
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / 2) / math.sqrt(3)
    assert f"against baseline ({base.trial_id}): {100 * mean:+.2f} +- {100 * se:.2f} points " \
        "over 3 seed(s)" in out
    card = json.loads((tmp_path / "selected" / "model_card.json").read_text())
    assert card["confirmation"]["acc_final_by_seed"] == pytest.approx(
        {"0": float(chosen.row.acc_final), "1": 0.95, "2": 0.90})
    (entry,) = card["confirmation"]["pairs"]
    assert entry["kind"] == "baseline" and entry["seeds"] == [0, 1, 2]
    assert entry["mean"] == pytest.approx(mean) and entry["se"] == pytest.approx(se)
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Over seeds (hgsearch select --confirm K)" in page


@pytest.mark.parametrize("k", ["0", "-2"])
def test_a_bad_count_is_one_line_and_writes_nothing(tmp_path, capsys, k):
    write_results(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["select", str(tmp_path), "--rule", "knee", "--confirm", k]) == 2
    err = capsys.readouterr().err
    assert err == f"hgsearch: error: --confirm {k}: expected an integer >= 1 (seeds to add to " \
        "each trial compared)\n"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_confirm_needs_a_sweep_folder_and_writes_nothing_without_one(tmp_path, capsys):
    write_results(tmp_path)       # rows and models, as `hgsearch trial` runs leave them
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["select", str(tmp_path), "--rule", "knee", "--confirm", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sweep.json" in err and "--confirm" in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
