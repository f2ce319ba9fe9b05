"""`hgsearch bench`: a tiny run of every benchmark writes complete, strict JSON; the helpers
(ABBA order, paired ratios, targets, threads, the report file) against hand computations; the
DataLoader reference augments as DeviceData does; the scoring figures' MAC shares in closed form.

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
import torch

from hgsearch import bench
from hgsearch.bench_scoring import measure_scoring_speedup, suffix_shares
from hgsearch.cli import main
from hgsearch.data.device import _crop_flip
from hgsearch.models import build_model
from hgsearch.train import resolve_runtime

# Every figure each benchmark must report: a figure that silently disappears fails here.
FIGURES = {
    "hgsr": {"ratio", "cpu_ratio", "plain_step_s", "hgsr_step_s", "penalty_s", "penalty_share"},
    "scoring": {"speedup", "speedup_cpu", "fast_s", "reference_s", "max_diff_rel_to_max_delta",
                "forward_s", "inference_images_per_s", "pairs_per_s", "filters_per_forward",
                "ideal_filters_per_forward", "efficiency"},
    "data": {"data_share_of_step", "loader_share_of_step", "device_batch_s", "loader_batch_s",
             "step_s", "speedup", "speedup_cpu"},
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


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine a second one makes every op wait for a
    descheduled thread (45x slower measured here at load 7, see bench.auto_threads)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _strict_json(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path}: {name} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[int, dict, str, Path]:
    """``hgsearch bench --quick`` with the quick sizes shrunk to the tiny ones, one thread."""
    out = tmp_path_factory.mktemp("bench")
    patch = pytest.MonkeyPatch()
    patch.setattr(bench, "QUICK", bench.TINY)
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


def test_tiny_run_reports_every_figure_finite(tiny_run):
    code, report, _, _ = tiny_run
    assert code == 0
    assert report["format"] == bench.FORMAT and report["quick"] is True
    assert list(report["benchmarks"]) == list(bench.BENCHMARKS)
    for name, section in report["benchmarks"].items():
        assert section["status"] == "ok", (name, section["status"])
        assert set(section["figures"]) == FIGURES[name], name
        for key, value in section["figures"].items():
            assert isinstance(value, (int, float)) and math.isfinite(value), (name, key, value)
        assert section["headline"] in section["figures"]
        assert section["seconds"] > 0 and section["definition"]


def test_tiny_run_records_machine_versions_and_settings(tiny_run):
    _, report, table, path = tiny_run
    machine = report["machine"]
    assert machine["torch_threads"] == 1 and machine["cores"] >= 1 and machine["cpu_model"]
    assert "gpu" in machine and len(machine["load_average_start"]) == 3
    assert set(report["versions"]) >= {"torch", "ray", "optuna", "python", "hgsearch"}
    assert report["device"] == "cpu" and report["precision"] == "float32"
    assert report["scale"] == json.loads(json.dumps(asdict(bench.TINY)))
    assert path.name.startswith(machine["host"].replace("/", "_") + "-")
    # the fast scorer's deltas equal the reference's on the timed filters
    assert report["benchmarks"]["scoring"]["figures"]["max_diff_rel_to_max_delta"] < 1e-4
    for name in bench.BENCHMARKS:
        assert f"\n{name} " in "\n" + table


@pytest.mark.parametrize("rounds", [1, 2, 3, 4])
def test_interleave_runs_abba_after_warmup(rounds):
    seen: list[str] = []
    calls = {name: (lambda n=name: seen.append(n)) for name in "ABC"}
    times = bench.interleave(calls, rounds=rounds, warmup=1)
    forward, backward = list("ABC"), list("CBA")
    expected = forward + [x for r in range(rounds) for x in (forward if r % 2 == 0 else backward)]
    assert seen == expected
    assert all(len(t) == rounds and all(w >= 0 and c >= 0 for w, c in t)
               for t in times.values())


@pytest.mark.parametrize("num, den, expected", [
    ([2.0, 3.0, 10.0], [1.0, 2.0, 2.0], 2.0),        # ratios 2, 1.5, 5; medians' ratio is 1.5
    ([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0], 2.5),
    ([6.0], [4.0], 1.5),
])
def test_paired_ratio_is_median_of_ratios(num, den, expected):
    assert bench.paired_ratio(num, den) == pytest.approx(expected)


@pytest.mark.parametrize("num, den", [([], []), ([1.0], [1.0, 2.0])])
def test_paired_ratio_refuses_unpaired(num, den):
    with pytest.raises(ValueError):
        bench.paired_ratio(num, den)


def test_compare_by_hand():
    subject = [(1.1, 2.0), (1.3, 2.2), (0.9, 1.0)]
    reference = [(1.0, 2.0), (1.0, 2.0), (1.0, 0.5)]
    got = bench.compare(subject, reference)
    assert got["subject_s"] == pytest.approx(1.1) and got["reference_s"] == pytest.approx(1.0)
    assert got["ratio"] == pytest.approx(1.1)        # median of 1.1, 1.3, 0.9
    assert got["cpu_ratio"] == pytest.approx(1.1)    # median of 1.0, 1.1, 2.0


@pytest.mark.parametrize("name, value, met", [
    ("hgsr", 1.05, True), ("hgsr", 1.0501, False), ("scoring", 2.0, True),
    ("scoring", 1.99, False), ("data", 0.049, True), ("trial", 1.2, False),
    ("hgsr", math.nan, None), ("sweep", 1.5, None), ("pruning", 2.0, None),
])
def test_judge_against_targets(name, value, met):
    figure = bench.TARGETS[name][0]
    judged = bench._judge(name, {"status": "ok", "figures": {figure: value}})
    assert judged["met"] is met and judged["headline"] == figure


def test_failed_benchmark_has_no_verdict():
    judged = bench._judge("hgsr", {"status": "failed: RuntimeError: x"})
    assert judged["met"] is None and judged["status"].startswith("failed")


@pytest.mark.parametrize("load, cores, torch_threads, expected", [
    (5.4, 2, 2, 1), (0.2, 2, 2, 2), (1.0, 4, 4, 3), (0.0, 16, 8, 8), (40.0, 8, 8, 1),
])
def test_auto_threads_leaves_busy_cores_alone(monkeypatch, load, cores, torch_threads,
                                              expected):
    monkeypatch.setattr(bench.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(bench, "_usable_cores", lambda: cores)
    monkeypatch.setattr(torch, "get_num_threads", lambda: torch_threads)
    assert bench.auto_threads() == expected


def test_report_is_written_atomically_as_strict_json(tmp_path):
    report = {"machine": {"host": "node 7/a"}, "started_at": "2026-01-02T03:04:05+00:00",
              "figures": {"x": math.nan, "y": [1.0, math.inf], "z": 2}}
    path = bench.write_report(report, tmp_path / "deep" / "bench")
    assert path.name == "node_7_a-20260102-030405.json"
    assert _strict_json(path)["figures"] == {"x": None, "y": [1.0, None], "z": 2}
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.parametrize("args, message", [
    (["--only", "hgsr,bogus"], "--only bogus"),
    (["--threads", "0"], "--threads 0"),
])
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(["bench", "--quick", "--device", "cpu", "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("x")
    assert main(["bench", "--quick", "--out", str(out)]) == 2
    assert "is not a folder" in capsys.readouterr().err and out.read_text() == "x"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(tmp_path, capsys):
    assert main(["bench", "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    assert "device=cuda" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_loader_reference_augments_like_device_data():
    """Every loader sample equals DeviceData's crop + flip of its image for some offset and
    flip, normalized alike: the two pipelines do the same work."""
    runtime = resolve_runtime("cpu")
    data = bench._random_data(4, runtime, seed=3)
    dataset = bench._PilDataset(data)
    options = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)]
    offsets = torch.tensor([o[:2] for o in options])
    flips = torch.tensor([o[2] for o in options])
    torch.manual_seed(0)
    for i in range(len(dataset)):
        got, label = dataset[i]
        assert label == int(data.y[i])
        images = data.x[i:i + 1].expand(len(options), -1, -1, -1)
        candidates = data.normalize(_crop_flip(images, offsets, flips, pad=4))
        assert float((candidates - got).abs().amax((1, 2, 3)).min()) < 1e-5


@pytest.mark.parametrize("arch", ["resnet20", "resnet32"])
def test_suffix_shares_in_closed_form(arch):
    """MACs per layer from the CIFAR ResNet's shapes (He et al. 2016, 4.2), 32x32 input."""
    model = build_model(arch, 10)
    n = (int(arch[6:]) - 2) // 6
    blocks = []
    for stage, (ch, side) in enumerate(zip((16, 32, 64), (32, 16, 8))):
        for b in range(n):
            cin = ch // 2 if stage > 0 and b == 0 else ch
            macs = side * side * ch * (cin * 9 + ch * 9)          # conv1 + conv2
            if cin != ch:
                macs += side * side * ch * cin                    # 1x1 projection shortcut
            blocks.append(macs)
    stem, head = 32 * 32 * 16 * 3 * 9, 64 * 10
    total = stem + sum(blocks) + head
    expected = [(sum(blocks[b + 1:]) + head) / total for b in range(len(blocks))]
    assert suffix_shares(model, (32, 32)) == pytest.approx(expected, rel=1e-12)


def test_scoring_speedup_scaled_from_a_subset_of_samples():
    r = measure_scoring_speedup("resnet20", 8, batch_size=64, input_size=(8, 8),
                                reference_filters=3, fast_samples=4, rounds=2)
    assert r["fast_estimated"] and r["fast_samples_timed"] == 4 and r["rounds"] == 2
    assert r["max_diff_rel_to_max_delta"] < 1e-4
    assert math.isfinite(r["speedup"]) and r["speedup_cpu"] > 0
    assert r["pairs_per_s"] == pytest.approx(8 * r["filters"] / r["fast_s"])
    assert r["filters_per_forward"] == pytest.approx(r["pairs_per_s"]
                                                     / r["inference_images_per_s"])
