"""A sweep's controls (hgsearch/search/controls.py): the space entry, the widths a control gets,
and a real tiny sweep whose controls run once, stay off the front and are compared by select."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import yaml

from hgsearch.analysis.controls import compare, standard_error
from hgsearch.analysis.front import pareto_front
from hgsearch.analysis.select_trial import select_trial
from hgsearch.cli import main
from hgsearch.errors import UserError
from hgsearch.models import build_model, default_widths
from hgsearch.search.controls import ControlSpec, control_keys, uniform_widths
from hgsearch.search.driver import run_sweep
from hgsearch.search.space_file import parse_space, space_problems
from hgsearch.widths import parse_widths

TINY = {"dataset": "synthetic", "synthetic_train_size": 200, "synthetic_test_size": 50,
        "arch": "resnet20", "epochs": 1, "batch_size": 64, "eval_batch_size": 200,
        "score_samples": 8, "finetune_epochs": 1, "latency_repeats": 1, "latency_batch": 4,
        "reg": "group_l12", "lam": 1e-4}


def _counted(arch: str, widths: list[int], classes: int = 10) -> int:
    """Parameters of the built network, counted here (not by hgsearch.metrics)."""
    return sum(p.numel() for p in build_model(arch, classes, widths).parameters())


def _space(**changes) -> dict:
    return {"fixed": TINY, "search": {"prune_ratio": {"choice": [0.3, 0.5]}},
            "objectives": {"acc_final": "max", "params_ratio": "min"},
            "sampler": {"name": "random", "seed": 0}, "num_samples": 2, "max_concurrent": 2,
            "resources": {"cpu": 1}, "retries": 0, "baseline": True, **changes}


@pytest.mark.parametrize("raw,expected", [
    (None, None), (False, None), (True, ControlSpec(("scratch", "uniform"), "selected", 1)),
    ({"kinds": ["uniform"], "of": "front", "max": 3}, ControlSpec(("uniform",), "front", 3)),
    ({"kinds": "scratch"}, ControlSpec(("scratch",), "selected", 1)),
])
def test_the_controls_entry_parses(raw, expected):
    data = _space(**({} if raw is None else {"controls": raw}))
    assert parse_space(data, source="s.yaml").controls == expected


@pytest.mark.parametrize("raw,fragment", [
    ({"kinds": ["scratch", "thin"]}, "s.yaml: controls.kinds: ['scratch', 'thin']: expected a "
     "list of scratch, uniform"),
    ({"of": "best"}, "s.yaml: controls.of: 'best': allowed values are selected, front"),
    ({"max": 0}, "s.yaml: controls.max: 0: expected an integer >= 1"),
    ({"seeds": 3}, "s.yaml: controls.seeds: unknown; allowed: kinds, of, max"),
    ("yes", "s.yaml: controls: 'yes': expected true, false or"),
])
def test_bad_controls_are_one_line_each(raw, fragment):
    problems = space_problems(_space(controls=raw), source="s.yaml")
    assert len(problems) == 1 and problems[0].startswith(fragment), problems


@pytest.mark.parametrize("arch", ["resnet20", "resnet56", "resnet18_small"])
@pytest.mark.parametrize("share", [0.3, 0.5, 0.7])
def test_uniform_widths_meet_the_pruned_parameter_count_within_one_percent(arch, share):
    rng = random.Random(f"{arch}{share}")
    kept = [max(1, round(w * rng.uniform(share - 0.2, share + 0.2))) for w in default_widths(arch)]
    target = _counted(arch, kept)
    widths, factor = uniform_widths(arch, 10, target)
    assert abs(_counted(arch, widths) - target) <= 0.01 * target
    assert 0 < factor < 1
    # one factor for all: no width strays more than one channel from it, rounded
    full = default_widths(arch)
    assert all(abs(w - max(1, round(factor * f))) <= 2 for w, f in zip(widths, full))


def test_a_scratch_control_keeps_the_widths_and_the_epochs(tmp_path):
    kept = [5, 7, 9, 11, 13, 15, 17, 19, 21]
    target = {**TINY, "trial_id": "t0001", "epochs": 4, "finetune_epochs": 3, "lam": 1e-3,
              "kept_channels": kept, "num_classes": 10, "params_final": _counted("resnet20", kept)}
    keys = control_keys(target, "scratch", folder=tmp_path, log=lambda _l: None)
    assert parse_widths(keys["widths"]) == kept and keys["trial_id"] == "t0001-scratch"
    assert (keys["epochs"], keys["finetune_epochs"], keys["reg"], keys["prune_ratio"]) == \
        (7, 0, "none", 0.0)
    rounds = control_keys({**target, "prune_steps": 3, "finetune_between": 2}, "scratch",
                          folder=tmp_path, log=lambda _l: None)
    assert rounds["epochs"] == 4 + 2 * 2 + 3          # dense, between the 3 rounds, fine-tuning


def test_validate_says_what_the_controls_cost():
    lines = parse_space(_space(controls={"of": "front", "max": 3}), source="s.yaml").describe()
    assert "  controls:   scratch, uniform for the first 3 of the front, after the search: up " \
        "to 6 more trial(s) from scratch, each of its trial's epochs + finetune_epochs" in lines


def sweep_one_pruned_trial(tmp, *, baseline: bool, kinds: list[str], log):
    """A sweep of one pruned trial (prune_ratio 0.5), the baseline if asked, and the
    selection's controls of ``kinds``: the least a sweep with controls runs; (result, space)."""
    space = tmp / "space.yaml"
    space.write_text(yaml.safe_dump(_space(
        search={"prune_ratio": {"choice": [0.5]}}, num_samples=1, baseline=baseline,
        controls={"kinds": kinds, "of": "selected"})))
    torch.set_num_threads(1)
    return run_sweep(space, name="c", results=tmp / "r", num_cpus=2, log=log), space


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    lines: list[str] = []
    result, space = sweep_one_pruned_trial(tmp_path_factory.mktemp("controls"), baseline=False,
                                           kinds=["scratch", "uniform"], log=lines.append)
    return result, lines, space


def test_controls_run_once_for_the_selection_with_its_size(swept):
    result, lines, _ = swept
    rows = result.rows.set_index("trial_id")
    controls = rows[rows.control.notna()]
    chosen = select_trial(result.rows, rule="knee").trial_id
    assert sorted(controls.index) == [f"{chosen}-scratch", f"{chosen}-uniform"]
    assert (controls.status == "ok").all(), controls[["status", "error"]]
    assert (controls.control_of == chosen).all()
    target = rows.loc[chosen]
    scratch, uniform = controls.loc[f"{chosen}-scratch"], controls.loc[f"{chosen}-uniform"]
    assert list(scratch.widths_dense) == list(target.kept_channels)
    assert parse_widths(scratch.widths) == list(target.kept_channels)
    n = _counted("resnet20", list(uniform.widths_dense), int(target.num_classes))
    assert abs(n - int(target.params_final)) <= 0.01 * int(target.params_final)
    # Scratch-E: the pruned trial's epochs, dense and fine-tuning, from random initialization
    assert (controls.epochs == TINY["epochs"] + TINY["finetune_epochs"]).all()
    assert controls.lam.isna().all() and controls.finetune_lr.isna().all()
    assert controls.score_samples.isna().all() and (controls.reg == "none").all()
    assert sum("controls: 2 trial(s) from scratch" in line for line in lines) == 1
    # the console is not silent while they run: their phases, as the search's trials show
    start = next(i for i, line in enumerate(lines) if "controls: 2 trial(s)" in line)
    shown = [line for line in lines[start:] if " running: " in line]
    assert {line.split()[0] for line in shown} == {f"{chosen}-scratch", f"{chosen}-uniform"}
    ended = [i for i, line in enumerate(lines) if line.startswith(f"control {chosen}-")
             and ": ok, val " in line]
    assert len(ended) == 2 and min(ended) > start
    assert not list((Path(result.folder) / "logs").glob("*.status.json"))   # gone with them


def test_controls_are_never_on_the_front_nor_selected(swept):
    result, _, _ = swept
    rows = result.rows
    front = pareto_front(rows)
    assert not front.trial_id.str.contains("-").any()
    assert front.attrs["excluded"]["controls"] == 2
    with pytest.raises(UserError, match="no usable trial among 2 rows .left out: 2 controls"):
        select_trial(rows[rows.control.notna()], rule="knee")


def test_select_prints_the_choice_against_its_controls(swept, capsys):
    result, _, _ = swept
    assert main(["select", str(result.folder), "--rule", "knee", "--no-onnx"]) == 0
    out = capsys.readouterr().out
    chosen = select_trial(result.rows, rule="knee")
    row = chosen.row
    assert "against its controls" in out and f"{chosen.trial_id}-uniform" in out
    n = int(row.val_images)
    assert n == round(TINY["synthetic_train_size"] * 0.1)
    se = standard_error(float(row.acc_final), n)
    assert f"{100 * float(row.acc_final):.2f}% +- {100 * se:.2f}" in out
    for c in compare(result.rows, row):
        assert c.ahead == pytest.approx(float(row.acc_final) - c.acc)
    assert main(["front", str(result.folder)]) == 0
    front_out = capsys.readouterr().out
    assert "controls of the front's trials" in front_out and "-scratch" in front_out
    card = json.loads((result.folder / "selected" / "model_card.json").read_text())
    assert {c["kind"] for c in card["controls"]} == {"scratch", "uniform"}
    assert all(c["ahead"] == pytest.approx(float(row.acc_final) - c["acc"])
               for c in card["controls"])
    assert main(["report", str(result.folder)]) == 0
    page = (result.folder / "report" / "index.html").read_text()
    assert "control: uniform" in page and f"{chosen.trial_id}-scratch" in page


def test_a_resumed_sweep_does_not_run_its_controls_again(swept):
    result, _, space = swept
    before = result.rows.set_index("trial_id").finished_at
    lines: list[str] = []
    again = run_sweep(name="c", results=Path(result.folder).parent, resume=True, num_cpus=2,
                      log=lines.append)
    after = again.rows.set_index("trial_id").finished_at
    assert after.to_dict() == before.to_dict()
    assert not any("controls:" in line for line in lines)
