"""The bench harness against hand computations: ABBA order, paired ratios, the CPU/wall
comparison, the thread count left by the load average, the report file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from hgsearch.bench import harness

pytestmark = pytest.mark.usefixtures("one_thread")   # see harness.auto_threads


def _strict_json(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path}: {name} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.parametrize("rounds", [1, 2, 3, 4])
def test_interleave_runs_abba_after_warmup(rounds):
    seen: list[str] = []
    calls = {name: (lambda n=name: seen.append(n)) for name in "ABC"}
    times = harness.interleave(calls, rounds=rounds, warmup=1)
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
    assert harness.paired_ratio(num, den) == pytest.approx(expected)


@pytest.mark.parametrize("num, den", [([], []), ([1.0], [1.0, 2.0])])
def test_paired_ratio_refuses_unpaired(num, den):
    with pytest.raises(ValueError):
        harness.paired_ratio(num, den)


def test_compare_by_hand():
    subject = [(1.1, 2.0), (1.3, 2.2), (0.9, 1.0)]
    reference = [(1.0, 2.0), (1.0, 2.0), (1.0, 0.5)]
    got = harness.compare(subject, reference)
    assert got["subject_s"] == pytest.approx(1.1) and got["reference_s"] == pytest.approx(1.0)
    assert got["ratio"] == pytest.approx(1.1)        # median of 1.1, 1.3, 0.9
    assert got["cpu_ratio"] == pytest.approx(1.1)    # median of 1.0, 1.1, 2.0


@pytest.mark.parametrize("load, cores, torch_threads, expected", [
    (5.4, 2, 2, 1), (0.2, 2, 2, 2), (1.0, 4, 4, 3), (0.0, 16, 8, 8), (40.0, 8, 8, 1),
])
def test_auto_threads_leaves_busy_cores_alone(monkeypatch, load, cores, torch_threads,
                                              expected):
    monkeypatch.setattr(harness.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(harness, "_usable_cores", lambda: cores)
    monkeypatch.setattr(torch, "get_num_threads", lambda: torch_threads)
    assert harness.auto_threads() == expected


def test_report_is_written_atomically_as_strict_json(tmp_path):
    report = {"machine": {"host": "node 7/a"}, "started_at": "2026-01-02T03:04:05+00:00",
              "figures": {"x": math.nan, "y": [1.0, math.inf], "z": 2}}
    path = harness.write_report(report, tmp_path / "deep" / "bench")
    assert path.name == "node_7_a-20260102-030405.json"
    assert _strict_json(path)["figures"] == {"x": None, "y": [1.0, None], "z": 2}
    assert [p.name for p in path.parent.iterdir()] == [path.name]
