"""hgsearch.analysis.folder: a results folder's rows, objectives, front, selection and report."""

from __future__ import annotations

import json

import pytest

from hgsearch.analysis.folder import (
    front_of,
    objectives_of,
    read_rows,
    report_of,
    select_and_export,
)
from hgsearch.cli import main
from hgsearch.errors import UserError
from tests.results_fixtures import write_results


def test_the_front_of_a_folder_and_what_it_was_taken_from(tmp_path):
    write_results(tmp_path, models=False)
    front = front_of(tmp_path)
    # ok rows (acc, params_ratio): t00 .93/1.0 (baseline), t01 .929/.8, t02 .925/.45,
    # t03 .85/.3, t04 .70/.15, t05 .80/.7; t05 alone is dominated (by t02). A failed and a
    # diverged row are left out before the dominance test.
    assert list(front.table["trial_id"]) == ["t00", "t01", "t02", "t03", "t04"]
    assert front.objectives == [("acc_final", "max"), ("params_ratio", "min")]
    assert front.usable == 6 and front.baselines == 1
    assert sum(front.excluded.values()) == 2


def test_objectives_given_then_sweep_json_then_defaults(tmp_path):
    assert objectives_of(tmp_path) == [("acc_final", "max"), ("params_ratio", "min")]
    objectives = [{"name": "acc_final", "direction": "maximize"},
                  {"name": "macs_ratio", "direction": "min"}]
    (tmp_path / "sweep.json").write_text(json.dumps({"objectives": objectives}))
    assert objectives_of(tmp_path) == [("acc_final", "max"), ("macs_ratio", "min")]
    assert objectives_of(tmp_path, "params_ratio:min") == [("params_ratio", "min")]


def test_unreadable_row_files_are_passed_on_before_the_error(tmp_path):
    (tmp_path / "trials").mkdir()
    (tmp_path / "trials" / "zz.parquet").write_bytes(b"PAR1 half a file")
    seen = []
    with pytest.raises(UserError, match="no trial rows"):
        read_rows(tmp_path, on_skipped=lambda file, reason: seen.append(file))
    assert [s.rsplit("/", 1)[-1] for s in seen] == ["zz.parquet"]


def test_a_skipped_file_is_said_even_when_the_command_then_fails(tmp_path, capsys):
    write_results(tmp_path, models=False)
    (tmp_path / "trials" / "zz.parquet").write_bytes(b"PAR1 half a file")
    assert main(["select", str(tmp_path), "--rule", "budget", "--budget", "0.01"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("hgsearch: warning: skipped ")
    assert "zz.parquet" in err[0] and err[1].startswith("hgsearch: error: ")


def test_select_rewrites_the_report_only_when_there_is_one(tmp_path):
    write_results(tmp_path)
    done = select_and_export(tmp_path, rule="budget", budget=0.5, onnx=False)
    assert done.selection.trial_id == "t02"   # the most accurate with params_ratio <= 0.5
    assert done.folder == tmp_path / "selected" and done.report is None
    assert not (tmp_path / "report").exists()
    page = report_of(tmp_path)
    assert page == tmp_path / "report" / "index.html" and "<b>t02</b>" in page.read_text()
    done = select_and_export(tmp_path, rule="budget", budget=0.2, onnx=False)
    assert done.selection.trial_id == "t04" and done.report == page
    assert "<b>t04</b>" in page.read_text()
