"""`hgsearch bench --suite gpu`: the GPU check's code, run on the CPU at a tiny size.

One run of every part through the CLI writes strict JSON and a table; the figures are checked
against the raw measurements the JSON carries (epoch seconds, per-process results, rows) and
against independent computations (parameter counts of the pruned widths, a float64 scoring
that must agree with the fp32 one on a CPU). The sweep part's row handling is also checked on
hand-made rows. Speeds are never asserted: they are figures of a machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import statistics
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from hgsearch.bench.gpu import scoring as gpu_scoring
from hgsearch.bench.gpu import suite as bench_gpu
from hgsearch.bench.gpu import sweep as gpu_sweep
from hgsearch.bench.gpu.worker import wait_for
from hgsearch.cli import main
from hgsearch.metrics import count_params
from hgsearch.models import build_model, default_widths
from hgsearch.search.space_file import parse_space

ROOT = Path(__file__).resolve().parents[2]
T = bench_gpu.TINY


def expected_figures(scale: bench_gpu.GpuScale) -> dict[str, set[str]]:
    """Every figure each part must report at ``scale``, written out independently."""
    variants = ("fp32", "bf16_cl", "bf16_cl_compile")
    nets = [f"round{r}" for r in scale.latency_round_to]
    return {
        "training": {f"b{b}_{v}_images_per_s" for b in scale.train_batches for v in variants}
                    | {f"b{b}_{k}" for b in scale.train_batches
                       for k in ("bf16_cl_speedup", "compile_speedup", "compile_s")},
        "sharing": {f"n{n}_{k}" for n in scale.share_counts
                    for k in ("images_per_s", "images_per_s_per_trial", "peak_mib_max",
                              "device_mib_per_trial", "vs_n1")},
        "data": {f"b{b}_{k}" for b in scale.train_batches
                 for k in ("data_share_of_step", "loader_share_of_step", "device_batch_s",
                           "loader_batch_s", "step_s")},
        "scoring": {"speedup", "fast_s", "reference_s", "max_diff_rel_to_max_delta",
                    "pairs_per_s", "filters_per_forward", "max_abs_delta",
                    "low_delta_max_abs_cpu64"}
                   | {f"{t}_{k}_vs_cpu64" for t in ("tf32_off", "tf32_on")
                      for k in ("max_abs_diff", "max_diff_rel_to_max_delta",
                                "low_delta_max_abs_diff")},
        "pruning": {f"{k}_{n}" for k in ("params_ratio", "macs_ratio") for n in nets}
                   | {f"latency_{n}_b{b}_ms" for n in ["dense", *nets]
                      for b in scale.latency_batches}
                   | {f"speedup_{n}_b{b}" for n in nets for b in scale.latency_batches},
        "sweep": {"trials", "max_concurrent_seen", "all_at_once_s", "trial_seconds_median",
                  "trial_seconds_max", "first_start_to_last_end_s", "sweep_s"},
    }


def _strict_json(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path}: {name} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    """``hgsearch bench --suite gpu --quick`` with the quick sizes shrunk to the tiny ones."""
    out = tmp_path_factory.mktemp("gpu-bench")
    patch = pytest.MonkeyPatch()
    patch.setattr(bench_gpu, "QUICK", T)
    printed = io.StringIO()
    old = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(printed):
            code = main(["bench", "--suite", "gpu", "--device", "cpu", "--quick",
                         "--threads", "1", "--out", str(out)])
    finally:
        patch.undo()
        torch.set_num_threads(old)
    files = sorted(out.iterdir())
    return code, files, printed.getvalue()


@pytest.fixture(scope="module")
def report(gpu_run) -> dict:
    _, files, _ = gpu_run
    return _strict_json(next(f for f in files if f.suffix == ".json"))


@pytest.mark.slow
def test_one_json_and_one_table_nothing_else(gpu_run, report):
    code, files, _ = gpu_run
    assert [f.suffix for f in files] == [".json", ".txt"], files   # no temp file left behind
    assert files[0].stem == files[1].stem and files[0].name.startswith("gpu-")
    assert code == (0 if bench_gpu.succeeded(report) else 1)


@pytest.mark.slow
def test_every_part_reports_every_figure_finite(report):
    assert report["format"] == bench_gpu.FORMAT and report["suite"] == "gpu"
    assert report["complete"] is True and report["device"] == "cpu"
    assert report["scale"] == json.loads(json.dumps(asdict(T)))
    assert list(report["parts"]) == list(bench_gpu.PARTS)
    for name, figures in expected_figures(T).items():
        part = report["parts"][name]
        assert part["status"] == "ok", (name, part["status"])
        assert set(part["figures"]) == figures, name
        for key, value in part["figures"].items():
            assert isinstance(value, (int, float)) and math.isfinite(value), (name, key, value)
        assert part["seconds"] > 0 and part["definition"] and part["settings"]
    machine = report["machine"]
    assert machine["torch_threads"] == 1 and len(machine["load_average_start"]) == 3
    assert {"torch", "ray", "optuna", "cuda", "cudnn"} <= set(report["versions"])


@pytest.mark.slow
def test_table_is_printed_and_written(gpu_run, report):
    _, files, printed = gpu_run
    table = files[1].read_text()
    assert table in printed
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["gpu", "suite"]
    for name, part in report["parts"].items():
        assert any(line.split()[0] == name for line in lines), name
        for key, ok in part.get("checks", {}).items():
            assert f"{name.ljust(9)}  check {key}: {'yes' if ok else 'NO'}" in lines
    f = report["parts"]["training"]["figures"]
    b = T.train_batches[0]
    assert f"+compile {f[f'b{b}_bf16_cl_compile_images_per_s']:,.0f} " in table
    f = report["parts"]["sharing"]["figures"]
    assert f"2 trial(s): {f['n2_images_per_s']:,.0f} img/s together" in table


@pytest.mark.slow
def test_training_figures_follow_from_the_epoch_seconds(report):
    part = report["parts"]["training"]
    f, s = part["figures"], part["settings"]
    assert s["compile_backend"] == T.compile_backend and s["tf32_cudnn"] in (True, False)
    for b in T.train_batches:
        epochs = {v: s["epoch_s"][f"b{b}_{v}"] for v in ("fp32", "bf16_cl", "bf16_cl_compile")}
        assert all(len(t) == T.train_rounds for t in epochs.values())
        for v, t in epochs.items():
            assert f[f"b{b}_{v}_images_per_s"] == pytest.approx(
                b * T.train_steps / statistics.median(t))
        ratios = [a / c for a, c in zip(epochs["fp32"], epochs["bf16_cl"])]
        assert f[f"b{b}_bf16_cl_speedup"] == pytest.approx(statistics.median(ratios))
        assert f[f"b{b}_compile_s"] == pytest.approx(
            s["warmup_epoch_s"][f"b{b}_bf16_cl_compile"]
            - statistics.median(epochs["bf16_cl_compile"]))


@pytest.mark.slow
def test_sharing_aggregates_its_processes_and_leaves_none_running(report):
    part = report["parts"]["sharing"]
    for n in T.share_counts:
        procs = part["processes"][str(n)]
        assert sorted(p["index"] for p in procs) == list(range(n))
        assert len({p["pid"] for p in procs}) == n and len({p["start"] for p in procs}) == 1
        assert all(p["epochs"] >= 1 and p["images"] == p["epochs"] * T.share_batch
                   * T.share_steps for p in procs)
        window = max(p["end"] for p in procs) - procs[0]["start"]
        assert part["figures"][f"n{n}_images_per_s"] == pytest.approx(
            sum(p["images"] for p in procs) / window)
        assert part["figures"][f"n{n}_peak_mib_max"] == max(p["peak_reserved_mib"]
                                                             for p in procs) > 0
        for p in procs:   # ended and reaped: the pid is gone
            with pytest.raises(ProcessLookupError):
                os.kill(p["pid"], 0)


@pytest.mark.slow
def test_scoring_fp32_on_the_cpu_agrees_with_float64(report):
    part = report["parts"]["scoring"]
    f = part["figures"]
    assert f["max_diff_rel_to_max_delta"] < 1e-4
    assert f["tf32_off_max_diff_rel_to_max_delta_vs_cpu64"] < 1e-5
    assert f["tf32_off_max_abs_diff_vs_cpu64"] <= f["max_abs_delta"]
    chosen = [tuple(x) for x in part["settings"]["cpu64_filters"]]
    assert len(chosen) == len(set(chosen)) == T.cpu64_filters


@pytest.mark.slow
def test_pruning_ratios_are_those_of_the_recorded_widths(report):
    part = report["parts"]["pruning"]
    dense = build_model(T.arch, 10)
    for r in T.latency_round_to:
        widths = part["settings"][f"widths_round{r}"]
        assert all(w % r == 0 or w == full for w, full in zip(widths,
                                                               default_widths(T.arch)))
        assert part["figures"][f"params_ratio_round{r}"] == pytest.approx(
            count_params(build_model(T.arch, 10, widths)) / count_params(dense))


@pytest.mark.slow
def test_sweep_rows_say_where_they_ran(report):
    part = report["parts"]["sweep"]
    rows = part["rows"]
    assert len(rows) == T.sweep_trials and {r["status"] for r in rows} == {"ok"}
    assert {r["device"] for r in rows} == {"cpu"} and all(r["device_name"] for r in rows)
    assert part["checks"]["all_trials_ok"] and part["checks"]["all_on_device"]
    assert part["settings"]["space"]["resources"] == {"cpu": 1, "gpu": 0}
    # most trials running at one instant, by brute force over the start times
    spans = [(gpu_sweep._time(r["started_at"]), gpu_sweep._time(r["finished_at"]))
             for r in rows]
    most = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert part["figures"]["max_concurrent_seen"] == most
    assert part["checks"]["all_at_once"] == (most == T.sweep_trials)


def _row(i: int, start: str, end: str, **kw) -> dict:
    return {"trial_id": f"t{i}", "status": "ok", "device": "cuda", "device_name": "NVIDIA H200",
            "hostname": "h", "seconds_total": 10.0, "started_at": f"2026-12-01T10:00:{start}+00:00",
            "finished_at": f"2026-12-01T10:00:{end}+00:00", **kw}


@pytest.mark.parametrize("spans, at_once, seen", [
    ([("00", "20"), ("01", "21"), ("02", "19"), ("03", "22")], True, 4),
    ([("00", "10"), ("10", "20"), ("20", "30"), ("30", "40")], False, 1),  # end meets start
    ([("00", "10"), ("05", "15"), ("11", "20"), ("12", "21")], False, 3),
])
def test_summarize_sweep_counts_overlap(spans, at_once, seen):
    rows = [_row(i, s, e) for i, (s, e) in enumerate(spans)]
    got = gpu_sweep.summarize_sweep(rows, trials=4, device="cuda", gpu_name="NVIDIA H200")
    assert got["checks"]["all_at_once"] is at_once
    assert got["figures"]["max_concurrent_seen"] == seen
    assert got["checks"]["all_on_device"] and got["checks"]["gpu_named"]


def test_summarize_sweep_flags_the_wrong_device_and_missing_trials():
    rows = [_row(0, "00", "20"), _row(1, "01", "21", device="cpu", device_name="x86_64")]
    got = gpu_sweep.summarize_sweep(rows, trials=4, device="cuda", gpu_name="NVIDIA H200")
    assert not got["checks"]["all_on_device"] and not got["checks"]["gpu_named"]
    assert not got["checks"]["all_trials_ok"] and not got["checks"]["all_at_once"]
    assert got["figures"]["all_at_once_s"] == pytest.approx(19.0)


@pytest.mark.parametrize("device, gpu", [("cuda", 0.25), ("cpu", 0)])
def test_the_sweep_space_is_valid_and_runs_everything_at_once(device, gpu):
    space = gpu_sweep.sweep_space(bench_gpu.FULL, device)
    sp = parse_space(space, source="gpu-check")
    assert sp.gpu == gpu and sp.num_samples == sp.max_concurrent == 4
    assert sp.fixed["device"] == device and sp.baseline is None


def test_checked_filters_spread_then_smallest():
    deltas = [torch.tensor([5.0, 4.0, 3.0]), torch.tensor([0.5, -0.01, 2.0]),
              torch.tensor([1.0, 0.2])]
    chosen = gpu_scoring.checked_filters(deltas, 4)
    assert chosen[:2] == [(0, 0), (1, 1)]           # every 8/2 = 4th filter
    assert chosen[2:] == [(2, 1), (1, 0)]           # |delta| 0.2, 0.5 (0.01 already chosen)
    assert len(gpu_scoring.checked_filters(deltas, 50)) == 8


def test_tf32_switches_are_restored():
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with gpu_scoring.tf32(not before[0]):
        assert torch.backends.cudnn.allow_tf32 is (not before[0])
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


def test_a_failing_part_is_recorded_and_the_others_run(monkeypatch):
    def broken(*_args):
        raise RuntimeError("boom")

    def fine(*_args):
        return {"settings": {"x": 1}, "figures": {"y": 2.0}, "definition": "d"}

    monkeypatch.setattr(bench_gpu, "_functions", lambda: {"data": broken, "pruning": fine})
    seen: list[list[str]] = []
    report = bench_gpu.run_gpu_suite(device="cpu", size="tiny", only=["data", "pruning"],
                                     threads=1, log=None,
                                     on_part=lambda r: seen.append(list(r["parts"])))
    assert report["parts"]["data"]["status"] == "failed: RuntimeError: boom"
    assert report["parts"]["pruning"]["status"] == "ok"
    assert report["parts"]["sweep"]["status"].startswith("skipped")
    assert not bench_gpu.succeeded(report)
    assert seen == [["training", "sharing", "sweep", "data"],
                    ["training", "sharing", "sweep", "data", "pruning"]]


@pytest.mark.parametrize("args, message", [
    (["--only", "training,bogus"], "--only bogus"),
    (["--threads", "0"], "--threads 0"),
])
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(["bench", "--suite", "gpu", "--device", "cpu", "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_the_gpu_suite_without_a_gpu_is_refused(tmp_path, capsys):
    assert main(["bench", "--suite", "gpu", "--out", str(tmp_path / "o")]) == 2
    assert "device=cuda" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_worker_handshake_times_out(tmp_path):
    with pytest.raises(TimeoutError, match="go"):
        wait_for(tmp_path / "go", timeout_s=0.05)


def test_gpu_check_script_parses_and_installs_only_the_projects_requirements():
    script = ROOT / "cluster" / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "hgsearch.cli bench --suite gpu --device" in text
    installed = set(re.findall(r'\]="([^"]+)"', text))
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps = set(re.findall(r'^\s*"([^"]+)",', pyproject.split("dependencies = [")[1]
                          .split("]\n")[0], flags=re.M))
    # every requirement it may install is the project's own, same version; the export, report
    # and hypervolume tools and the README's static plots aside (the suite uses none of them)
    assert installed <= deps and deps - installed == {
        "onnx>=1.17", "onnxscript>=0.5", "onnxruntime>=1.17", "moocore>=0.1.6", "plotly>=5.20",
        "matplotlib>=3.8", "safetensors>=0.4"}


def test_train_accepts_a_compiled_module_as_step_model():
    from hgsearch.bench.workload import random_data
    from hgsearch.runtime import resolve_runtime
    from hgsearch.train import SGDSettings, train

    runtime = resolve_runtime("cpu")
    model = build_model("resnet20", 10)
    train(model, random_data(8, runtime), settings=SGDSettings(epochs=1, lr=0.1,
                                                               batch_size=8),
          runtime=runtime, generator=torch.Generator().manual_seed(0), log=None,
          step_model=torch.compile(model, backend="eager"))


SWEEP_ONLY = {"ray", "optuna", "pandas", "pyarrow", "yaml", "rich"}


@pytest.fixture
def without_sweep_packages(tmp_path) -> dict:
    """An environment in which Python cannot import the packages only the sweep part needs."""
    blocked = tmp_path / "blocked"
    for name in SWEEP_ONLY:
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} blocked')\n")
    return {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(blocked),
            "DEVICE": "cpu", "VENV": str(tmp_path / "venv"), "WHEELS": str(tmp_path / "none")}


def _gpu_check(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "cluster" / "gpu_check.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_gpu_check_installs_nothing_that_the_parts_asked_for_do_not_need(
        tmp_path, without_sweep_packages):
    # --threads 0 makes hgsearch refuse at once, after the script decided what to install
    done = _gpu_check(without_sweep_packages, "--only", "pruning,scoring", "--threads", "0",
                      "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"using {sys.executable} as it is: nothing to install" in done.stdout
    assert "--threads 0" in done.stdout and not (tmp_path / "venv").exists()
    assert (tmp_path / "out" / "gpu-check.log").read_text() == done.stdout


@pytest.mark.slow
def test_gpu_check_installs_only_what_is_missing_into_a_venv_that_sees_python(
        tmp_path, without_sweep_packages):
    (tmp_path / "none").mkdir()   # an empty wheel folder: every install fails, offline
    done = _gpu_check(without_sweep_packages, "--only", "sweep", "--threads", "0",
                      "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("installing into"))
    assert sorted(line.partition(": ")[2].split()) == sorted(
        ["ray[tune]>=2.40", "optuna>=4.0", "pandas>=2.0", "pyarrow>=15", "pyyaml>=6",
         "rich>=13"])
    # torch came from PYTHON's own packages through the venv's .pth file
    assert "torch " + torch.__version__ in done.stdout
    assert "--threads 0" in done.stdout
