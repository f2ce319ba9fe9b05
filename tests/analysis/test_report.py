"""Export of the selected model, the HTML report and the front/select/report commands."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hgsearch.analysis.export import export_selection, input_size
from hgsearch.analysis.report import write_report
from hgsearch.analysis.select_trial import select_trial
from hgsearch.cli import main
from hgsearch.errors import UserError
from hgsearch.models import load_model
from tests.results_fixtures import FEED, ROWS, write_results


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One results folder with the knee exported, ONNX included (the slow part, done once)."""
    folder = tmp_path_factory.mktemp("results")
    df = write_results(folder)
    choice = select_trial(df, rule="knee")
    pytest.importorskip("onnxscript")
    export_selection(folder, choice, onnx=True)
    return folder, df, choice


def test_exported_model_reproduces_the_trial_logits(exported):
    folder, df, choice = exported
    assert choice.trial_id == "t02"
    original = load_model(folder / "models" / "t02.pt")
    copy = load_model(folder / "selected" / "model.pt")
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(original(x), copy(x))
    arch = json.loads((folder / "selected" / "arch.json").read_text())
    pre = arch.pop("preprocessing")
    assert arch == {"arch": "resnet20", "num_classes": 10, "widths": original.widths,
                    "input_size": 32, "classes": FEED["classes"]}
    assert (pre["mean"], pre["std"], pre["image_size"]) == (FEED["mean"], FEED["std"], 32)
    assert pre["channel_order"] == "RGB" and pre["input_dtype"] == "float32"
    assert arch["widths"] == df.loc[2, "kept_channels"]


def test_model_card_holds_config_metrics_rule_and_reason(exported):
    folder, df, choice = exported
    card = json.loads((folder / "selected" / "model_card.json").read_text())
    assert card["trial_id"] == "t02" and card["rule"] == "knee"
    assert card["reason"] == choice.reason
    assert card["config"]["lam"] == pytest.approx(df.loc[2, "lam"])
    assert card["config"]["reg"] == "group_l12"
    assert card["metrics"]["acc_final"] == pytest.approx(0.925)
    assert card["metrics"]["kept_channels"] == df.loc[2, "kept_channels"]
    assert set(card["files"]) == {p.name for p in (folder / "selected").iterdir()}
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_onnx_file_runs_like_the_model(exported):
    folder, _, _ = exported
    path = folder / "selected" / "model.onnx"
    assert path.is_file() and path.stat().st_size > 0
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))  # a free batch
    (logits,) = ReferenceEvaluator(graph).run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = load_model(folder / "selected" / "model.pt")(x).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_onnx_export_names_both_exporters_when_both_fail(tmp_path, monkeypatch):
    pytest.importorskip("onnxscript")
    from hgsearch.analysis.export import export_onnx
    from hgsearch.models import build_model

    def failing(*args, dynamo=False, **kwargs):
        raise ValueError("dynamo fails" if dynamo else "torchscript fails")

    monkeypatch.setattr(torch.onnx, "export", failing)
    with pytest.raises(RuntimeError, match="TorchScript: ValueError.'torchscript fails'.*"
                                           "torch.export: ValueError.'dynamo fails'"):
        export_onnx(build_model("resnet20", 3), tmp_path / "m.onnx", size=32)


def test_export_replaces_a_previous_selection_and_writes_nothing_on_error(tmp_path):
    df = write_results(tmp_path)
    export_selection(tmp_path, select_trial(df, rule="budget", budget=0.2), onnx=False)
    card = json.loads((tmp_path / "selected" / "model_card.json").read_text())
    assert card["trial_id"] == "t04" and "model.onnx" not in card["files"]
    export_selection(tmp_path, select_trial(df, rule="max-drop", max_drop=0.5), onnx=False)
    card = json.loads((tmp_path / "selected" / "model_card.json").read_text())
    assert card["trial_id"] == "t02" and card["settings"]["max_drop"] == 0.5
    (tmp_path / "models" / "t03.pt").unlink()
    with pytest.raises(UserError, match="t03.pt"):
        export_selection(tmp_path, select_trial(df, rule="budget", budget=0.3), onnx=False)
    assert json.loads((tmp_path / "selected" / "model_card.json").read_text())["trial_id"] == "t02"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "selected", "trials"]


@pytest.mark.parametrize("dataset, image_size, expected", [
    ("synthetic", 32, 32), ("cifar10", 32, 32), ("cifar100", 99, 32),
    ("tinyimagenet", 32, 64), ("imagefolder", 96, 96)])
def test_input_size_per_dataset(dataset, image_size, expected):
    assert input_size(pd.Series({"dataset": dataset, "image_size": image_size})) == expected


# --- report -------------------------------------------------------------------------------


class Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []
        self.plots: list[str] = []
        self.script_src: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        self.refs += [v for k, v in attrs.items() if k in ("src", "href") and v]
        if tag == "figure" and "data-plot" in attrs:
            self.plots.append(attrs["data-plot"])
        if tag == "script" and attrs.get("src"):
            self.script_src.append(attrs["src"])


def parse_report(path: Path) -> tuple[str, Refs]:
    text = path.read_text(encoding="utf-8")
    parser = Refs()
    parser.feed(text)
    parser.close()
    return text, parser


def test_report_is_self_contained_and_labelled(tmp_path):
    df = write_results(tmp_path)
    path = write_report(tmp_path, df)
    assert path == tmp_path / "report" / "index.html"
    text, refs = parse_report(path)
    assert refs.plots == ["params_ratio", "macs_ratio", "val_test", "hypervolume", "channels",
                          "parallel", "importance"]
    assert not refs.script_src            # plotly.js is inlined, nothing is fetched
    for ref in refs.refs:
        assert not ref.startswith(("http:", "https:", "//")), ref
        assert (path.parent / ref).exists(), ref
    for label in ("validation accuracy (%)", "parameters (fraction of the dense network)",
                  "MACs (multiply-accumulates, fraction of the dense network)",
                  "hypervolume", "test accuracy (%)", "Pareto front", "All trials"):
        assert label in text
    # no selection exported yet: the report marks the knee
    assert "<b>t02</b>" in text and "knee" in text
    front = text[text.index("<h2>Pareto front</h2>"):text.index("<h2>All trials</h2>")]
    assert all(f"t0{i}" in front for i in (0, 1, 2, 3, 4)) and "t05" not in front
    ok = [(acc, ratio) for acc, ratio, status, _ in ROWS if status == "ok"]
    n = sum(not any(b != a and b[0] >= a[0] and b[1] <= a[1] for b in ok) for a in ok)
    assert f"{n} trials on the Pareto front, the baseline among them." in text   # t00 is
    # every trial is in the table of all trials, the failed ones shaded
    trials = text[text.index("<h2>All trials</h2>"):]
    assert all(f"<td>t0{i}</td>" in trials for i in range(8))
    assert trials.count('<tr class="bad">') == 2
    # points are labelled with their trial: the hover text is in the figure data
    figure = text[text.index('data-plot="params_ratio"'):text.index('data-plot="macs_ratio"')]
    assert "\\u003cb\\u003et03\\u003c" in figure     # plotly escapes "<b>t03</b>" in JSON


def test_report_names_errors_curves_and_latency(tmp_path):
    from hgsearch.results import write_curve

    write_results(tmp_path)
    row = pd.read_parquet(tmp_path / "trials" / "t06.parquet")
    row["error"] = "RuntimeError: CUDA out of memory"
    row.to_parquet(tmp_path / "trials" / "t06.parquet")
    for i in range(6):
        write_curve(tmp_path, f"t0{i}", [{"phase": "train", "epoch": e, "val_acc": 0.1 * e}
                                         for e in (1, 2)] + [{"phase": "finetune", "epoch": 1,
                                                              "val_acc": 0.3}])
    from hgsearch.results import load_results

    df = load_results(tmp_path)
    df["latency_final_b1_ms"] = np.linspace(1.0, 2.0, len(df))
    text, refs = parse_report(write_report(tmp_path, df))
    assert "latency" in refs.plots and "curves" in refs.plots
    assert "RuntimeError: CUDA out of memory" in text[text.index("<h2>All trials</h2>"):]
    curves = text[text.index('data-plot="curves"'):]
    assert "t00 finetune epoch 1: 30.00%" in curves


def test_report_marks_the_exported_selection_and_links_its_files(tmp_path):
    df = write_results(tmp_path)
    export_selection(tmp_path, select_trial(df, rule="budget", budget=0.2), onnx=False)
    path = write_report(tmp_path, df)
    text, refs = parse_report(path)
    assert "<b>t04</b> (exported by hgsearch select at" in text
    assert {"../selected/model_card.json", "../selected/model.pt"} <= set(refs.refs)
    for ref in refs.refs:
        assert (path.parent / ref).is_file(), ref


def test_report_with_nothing_to_select_and_three_objectives(tmp_path):
    df = write_results(tmp_path, [(0.93, 1.0, "ok", True), (None, 0.5, "failed", False)],
                       models=False)
    path = write_report(tmp_path, df, objectives="acc_final:max,params_ratio:min,macs_ratio:min")
    text, refs = parse_report(path)
    assert refs.plots == ["params_ratio", "macs_ratio", "val_test", "hypervolume"]
    assert "no model selected" in text and "baselines" in text
    assert "1 failed" in text


def test_the_header_counts_the_front_and_says_when_the_baseline_is_on_it(tmp_path):
    # the pruned trial is better and smaller: it alone is the front, the baseline is not on it
    df = write_results(tmp_path, [(0.90, 1.0, "ok", True), (0.95, 0.5, "ok", False)],
                       models=False)
    text, _ = parse_report(write_report(tmp_path, df))
    assert "1 trial on the Pareto front." in text and "baseline among them" not in text


def test_sweep_json_objectives_are_the_default(tmp_path, capsys):
    write_results(tmp_path, models=False)
    (tmp_path / "sweep.json").write_text(json.dumps({"objectives": [
        {"name": "acc_final", "direction": "max"}, {"name": "macs_ratio", "direction": "min"}]}))
    assert main(["front", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.split()[:4] == ["trial_id", "acc_final", "%", "macs_ratio"]
    assert "(acc_final max, macs_ratio min)" in out


# --- commands -----------------------------------------------------------------------------


def test_commands_end_to_end(tmp_path, capsys):
    write_results(tmp_path)
    assert main(["front", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["trial_id", "acc_final", "%"]
    assert [ln.split()[0] for ln in lines[1:6]] == ["t00", "t01", "t02", "t03", "t04"]
    assert "left out: 1 failed, 1 diverged" in out

    assert main(["select", str(tmp_path), "--rule", "budget", "--budget", "0.5",
                 "--no-onnx"]) == 0
    out = capsys.readouterr().out
    assert "selected t02" in out and "92.50%" in out and "92.00%" in out
    assert json.loads((tmp_path / "selected" / "arch.json").read_text())["input_size"] == 32

    assert main(["front", str(tmp_path), "--objectives", "acc_final:max,macs_ratio:min"]) == 0
    assert "macs_ratio" in capsys.readouterr().out
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report" / "index.html").is_file()


def test_front_and_select_say_the_same_numbers_in_the_same_words(tmp_path, capsys):
    write_results(tmp_path)
    assert main(["front", str(tmp_path)]) == 0
    front = capsys.readouterr().out
    # 6 ok rows, 1 of them the baseline: 5 candidates; the same phrase in both commands
    phrase = "5 candidate trials (the 6 usable trials less 1 baseline)"
    assert phrase in front and "6 usable trials" in front
    for rule in (["knee"], ["budget", "--budget", "0.5"]):
        assert main(["select", str(tmp_path), "--rule", *rule, "--no-onnx"]) == 0
        assert phrase in capsys.readouterr().out


def test_a_corrupt_row_file_is_reported_and_skipped(tmp_path, capsys):
    write_results(tmp_path, models=False)
    (tmp_path / "trials" / "zz.parquet").write_bytes(b"PAR1 half a file")
    assert main(["front", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "zz.parquet" in captured.err
    assert "left out: 1 failed, 1 diverged" in captured.out
    assert main(["report", str(tmp_path)]) == 0
    assert "zz.parquet" in (tmp_path / "report" / "index.html").read_text()


def test_select_updates_an_existing_report(tmp_path, capsys):
    write_results(tmp_path)
    assert main(["report", str(tmp_path)]) == 0
    assert "<b>t02</b> (chosen by the knee rule" in (tmp_path / "report" / "index.html").read_text()
    assert main(["select", str(tmp_path), "--rule", "budget", "--budget", "0.2",
                 "--no-onnx"]) == 0
    assert "updated" in capsys.readouterr().out
    assert "<b>t04</b> (exported" in (tmp_path / "report" / "index.html").read_text()


@pytest.mark.parametrize("args, message", [
    (["select", "{R}", "--rule", "budget", "--budget", "50"], "--budget 0.5"),
    (["select", "{R}", "--rule", "budget", "--budget", "0.5", "--budget-column", "reg"],
     "'reg': not numeric"),
    (["select", "{R}", "--rule", "budget", "--budget", "1.5", "--budget-column", "macs_ratio"],
     "in (0, 1]"),
    (["select", "{R}", "--rule", "knee", "--budget", "0.5"], "--budget does not apply"),
    (["select", "{R}", "--rule", "max-drop"], "max-drop needs"),
    (["select", "{R}", "--rule", "budget", "--budget", "0.01", "--no-onnx"], "no trial has"),
    (["front", "{R}", "--objectives", "acc_final:up"], "direction 'up'"),
    (["front", "{R}/nowhere"], "no such results folder"),
])
def test_command_errors_exit_2_with_one_line(tmp_path, capsys, args, message):
    write_results(tmp_path, models=False)
    assert main([a.replace("{R}", str(tmp_path)) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "selected").exists() and not (tmp_path / "report").exists()


@pytest.mark.parametrize("command", ["front", "select", "report"])
@pytest.mark.parametrize("rows", [[], [(None, 0.5, "failed", False), (0.1, 0.4, "diverged",
                                                                      False)]])
def test_empty_or_all_failed_folder_is_one_line_error(tmp_path, capsys, command, rows):
    write_results(tmp_path, rows, models=False)
    (tmp_path / "trials").mkdir(exist_ok=True)
    extra = ["--rule", "knee"] if command == "select" else []
    assert main([command, str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert ("no trial rows" in err[0]) if not rows else ("no usable trial" in err[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trials"]
