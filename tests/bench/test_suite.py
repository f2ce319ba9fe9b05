"""`hgsearch bench`: a tiny run of every benchmark writes complete, strict JSON and a table;
the targets are judged as written.

Targets are not asserted: they are figures of a machine, not properties of the code.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest

from hgsearch.bench import harness, suite
from hgsearch.cli import main

# Every figure each benchmark must report: a figure that silently disappears fails here.
FIGURES = {
    "hgsr": {"ratio", "cpu_ratio", "plain_step_s", "hgsr_step_s", "penalty_s", "penalty_share"},
    "scoring": {"speedup", "speedup_cpu", "fast_s", "reference_s", "max_diff_rel_to_max_delta",
                "forward_s", "inference_images_per_s", "pairs_per_s", "filters_per_forward",
                "ideal_filters_per_forward", "efficiency"},
    "data": {"data_share_of_step", "loader_share_of_step", "device_batch_s", "loader_batch_s",
             "step_s", "speedup", "speedup_cpu"},
    "streaming": {"stream_share_of_step", "wait_s", "step_s", "first_wait_s",
                  "loader_images_per_s", "step_images_per_s"},
    "trial": {"subject_s", "reference_s", "ratio", "cpu_ratio", "steps_per_epoch"},
    "pruning": {f"{kind}_{net}" for kind in ("params_ratio", "macs_ratio")
                for net in ("round1", "round8")}
               | {f"latency_{net}_{b}_ms" for net in ("dense", "round1", "round8")
                  for b in ("b1", "bN")}
               | {f"speedup_{net}_{b}" for net in ("round1", "round8") for b in ("b1", "bN")},
    "sweep": {"ratio", "sweep_s", "ideal_s", "trial_alone_s", "fixed_cost_per_trial_s",
              "ray_start_s", "ray_stop_s", "trial_in_sweep_s", "contention_ratio",
              "outside_trial_per_trial_s"},
    "sweep_scale": {"cpu_per_trial_ratio"} | {f"{size}_{k}" for size in ("small", "large")
                                              for k in ("cpu_per_trial_s", "wall_per_trial_s",
                                                        "run_cpu_s", "run_wall_s")},
}


pytestmark = pytest.mark.usefixtures("one_thread")   # see harness.auto_threads


def _strict_json(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path}: {name} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[int, dict, str, Path]:
    """``hgsearch bench --quick`` with the quick sizes shrunk to the tiny ones, one thread."""
    out = tmp_path_factory.mktemp("bench")
    patch = pytest.MonkeyPatch()
    patch.setattr(harness, "QUICK", harness.TINY)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            code = main(["bench", "--quick", "--device", "cpu", "--threads", "1",
                         "--out", str(out)])
    finally:
        patch.undo()
    files = sorted(out.iterdir())
    assert len(files) == 1 and files[0].suffix == ".json", files   # no temp file left behind
    return code, _strict_json(files[0]), printed.getvalue(), files[0]


@pytest.mark.slow
def test_tiny_run_reports_every_figure_finite(tiny_run):
    code, report, _, _ = tiny_run
    assert code == 0
    assert report["format"] == suite.FORMAT and report["quick"] is True
    assert list(report["benchmarks"]) == list(suite.BENCHMARKS)
    for name, section in report["benchmarks"].items():
        assert section["status"] == "ok", (name, section["status"])
        assert set(section["figures"]) == FIGURES[name], name
        for key, value in section["figures"].items():
            assert isinstance(value, (int, float)) and math.isfinite(value), (name, key, value)
        assert section["headline"] in section["figures"]
        assert section["seconds"] > 0 and section["definition"]


@pytest.mark.slow
def test_tiny_run_records_machine_versions_and_settings(tiny_run):
    _, report, table, path = tiny_run
    machine = report["machine"]
    assert machine["torch_threads"] == 1 and machine["cores"] >= 1 and machine["cpu_model"]
    assert "gpu" in machine and len(machine["load_average_start"]) == 3
    assert set(report["versions"]) >= {"torch", "ray", "optuna", "python", "hgsearch"}
    assert report["device"] == "cpu" and report["precision"] == "float32"
    assert report["scale"] == json.loads(json.dumps(asdict(harness.TINY)))
    assert path.name.startswith(machine["host"].replace("/", "_") + "-")
    # the fast scorer's deltas equal the reference's on the timed filters
    assert report["benchmarks"]["scoring"]["figures"]["max_diff_rel_to_max_delta"] < 1e-4
    for name in suite.BENCHMARKS:
        assert f"\n{name} " in "\n" + table


@pytest.mark.parametrize("name, value, met", [
    ("hgsr", 1.05, True), ("hgsr", 1.0501, False), ("scoring", 2.0, True),
    ("scoring", 1.99, False), ("data", 0.049, True), ("trial", 1.2, False),
    ("hgsr", math.nan, None), ("sweep", 1.5, None), ("pruning", 2.0, None),
])
def test_judge_against_targets(name, value, met):
    figure = suite.TARGETS[name][0]
    judged = suite.judge(name, {"status": "ok", "figures": {figure: value}})
    assert judged["met"] is met and judged["headline"] == figure


def test_failed_benchmark_has_no_verdict():
    judged = suite.judge("hgsr", {"status": "failed: RuntimeError: x"})
    assert judged["met"] is None and judged["status"].startswith("failed")
