"""Benchmark ``sweep``: a sweep of N equal trials against N x one trial run alone / concurrency,
and the fixed cost per trial that this leaves (Ray's start and stop, trials slowing each other
down, Tune's work outside ``run_trial``)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from hgsearch.bench.harness import Benchmark, Scale, Target


def bench_sweep(scale: Scale, runtime: Any) -> dict[str, Any]:
    """A sweep of N equal trials against N trials run alone, divided by the concurrency."""
    try:
        from hgsearch.search.driver import run_sweep
    except ImportError as err:
        return {"status": f"skipped: hgsearch.search cannot be imported ({err})"}
    import torch
    import yaml

    from hgsearch.trial import run_trial

    n, c = scale.sweep_trials, scale.sweep_concurrency
    gpu = runtime.device.type == "cuda"
    fixed = {**scale.sweep_trial, "device": runtime.device.type}
    space = {"fixed": fixed, "search": {"seed": {"choice": [0]}},   # N equal trials
             "objectives": {"acc_final": "max"}, "sampler": {"name": "random", "seed": 0},
             "num_samples": n, "max_concurrent": c, "retries": 0, "baseline": False,
             "resources": {"cpu": 1, "gpu": 1 / c if gpu else 0}}
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="hgsearch-bench-") as tmp:
        path = Path(tmp) / "space.yaml"
        path.write_text(yaml.safe_dump(space))

        def alone(tag: str) -> float:
            # as in a sweep worker: one thread per CPU asked for (sweep.py, _trainable)
            torch.set_num_threads(1)
            try:
                row = run_trial({**fixed, "seed": 0, "trial_id": f"alone-{tag}",
                                 "out_dir": str(Path(tmp) / "alone")}, log=None)
            finally:
                torch.set_num_threads(threads)
            return row["seconds_total"]

        before = alone("before")
        stamps: list[float] = []
        start = time.perf_counter()
        result = run_sweep(path, name="bench", results=Path(tmp) / "results", num_cpus=c,
                           log=lambda _line: stamps.append(time.perf_counter()))
        end = time.perf_counter()
        after = alone("after")
    rows = result.rows
    if not result.complete or len(rows) != n or set(rows["status"]) != {"ok"}:
        return {"status": f"failed: the sweep ended incomplete ({list(rows['status'])})"}
    trial_s = (before + after) / 2    # the sweep ran between the two
    in_sweep = float(rows["seconds_total"].median())
    ideal = n * trial_s / c
    wall = end - start
    figures = {
        "ratio": wall / ideal, "sweep_s": wall, "ideal_s": ideal, "trial_alone_s": trial_s,
        "fixed_cost_per_trial_s": (wall - ideal) * c / n,
        # where it goes: Ray's start and stop, concurrent trials slowing each other down, and
        # the rest of Tune's run outside run_trial (workers, imports, bookkeeping)
        "ray_start_s": stamps[0] - start, "ray_stop_s": end - stamps[-1],
        "trial_in_sweep_s": in_sweep, "contention_ratio": in_sweep / trial_s,
        "outside_trial_per_trial_s": ((stamps[-1] - stamps[0]) * c - n * in_sweep) / n,
    }
    return {"settings": {"trials": n, "concurrency": c, "trial": fixed},
            "figures": figures}


def _detail(f: dict[str, float]) -> str:
    return f"sweep {f['sweep_s']:.3g} s vs ideal {f['ideal_s']:.3g} s; fixed cost " \
           f"{f['fixed_cost_per_trial_s']:.3g} s/trial (Ray start {f['ray_start_s']:.3g} s, " \
           f"trials x{f['contention_ratio']:.2f} slower side by side, " \
           f"{f['outside_trial_per_trial_s']:.3g} s/trial outside run_trial)"


BENCHMARK = Benchmark("sweep", Target("ratio", "<=", None), bench_sweep, _detail, """
    ratio: wall seconds of run_sweep (Ray start to shutdown) / (trials x seconds of the same
    trial run alone in this process, 1 thread, before and after the sweep / concurrency);
    fixed_cost_per_trial_s: (sweep_s - ideal_s) x concurrency / trials; contention_ratio:
    seconds of run_trial in the sweep (median) / alone; outside_trial_per_trial_s:
    worker-seconds per trial of Tune's run (first to last progress line) not spent in run_trial""")
