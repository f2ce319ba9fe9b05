"""Benchmark ``sweep_scale``: the driver's own CPU time per finished trial, at two sweep sizes.

Trials are a fake that sleeps briefly and writes a row (``sleeping_trial``), so what is
timed is the driver: Tune's loop, the searcher (Optuna on SQLite), the progress callback and
the experiment-state saves. The figure is CPU seconds of the driver process (all its threads,
``time.process_time``) between its first and its last progress line, per trial in between;
Ray's start and stop are outside it. A driver whose work per trial grows with the number of
trials so far (state saves carrying every row, a study re-read in full per proposal) shows it
as a ratio above 1. Target (issue #10): the large sweep's figure within 1.5x of the small's.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from hgsearch.bench.harness import FULL, Benchmark, Scale, Target

SLEEP_S = 0.05            # a fake trial's sleep


def sleeping_trial(config: dict, *, extra: dict | None = None, log: Any = None) -> dict:
    """A trial that sleeps SLEEP_S and writes a row (runs in a Ray worker)."""
    from hgsearch.results import empty_metrics, write_row

    time.sleep(SLEEP_S)
    row = {**config, **empty_metrics(), **(extra or {}), "status": "ok",
           "acc_final": float(config["lam"]), "params_ratio": 1.0 - float(config["lam"])}
    write_row(config["out_dir"], row)
    return row


def _one(n: int, concurrency: int, tmp: Path) -> dict[str, float]:
    import yaml

    from hgsearch.search.driver import run_sweep

    space = {"fixed": {"dataset": "synthetic", "arch": "resnet20", "epochs": 1},
             "search": {"lam": {"uniform": [0.0, 1.0]}},
             "objectives": {"acc_final": "max", "params_ratio": "min"},
             "sampler": {"name": "tpe", "seed": 0}, "num_samples": n,
             "max_concurrent": concurrency, "retries": 0, "baseline": False,
             "resources": {"cpu": 1}}
    path = tmp / f"scale{n}.yaml"
    path.write_text(yaml.safe_dump(space))
    stamps: list[tuple[float, float]] = []

    def log(line: str) -> None:
        if line.startswith("["):            # one progress line per finished trial
            stamps.append((time.process_time(), time.perf_counter()))

    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = run_sweep(path, name=f"scale{n}", results=tmp / "results", num_cpus=concurrency,
                       log=log, runner="hgsearch.bench.sweep_scale:sleeping_trial")
    cpu1, wall1 = time.process_time(), time.perf_counter()
    if not result.complete or len(result.rows) != n or len(stamps) != n:
        raise RuntimeError(f"sweep of {n} ended with {len(result.rows)} rows, "
                           f"{len(stamps)} progress lines")
    between = n - 1
    return {"cpu_per_trial_s": (stamps[-1][0] - stamps[0][0]) / between,
            "wall_per_trial_s": (stamps[-1][1] - stamps[0][1]) / between,
            "run_cpu_s": cpu1 - cpu0, "run_wall_s": wall1 - wall0}


def bench_sweep_scale(scale: Scale, runtime: Any, *, sizes: tuple[int, int] | None = None
                      ) -> dict[str, Any]:
    """The ``sweep_scale`` section: ``scale.sweep_scale_trials`` (or ``sizes``) trials."""
    small, large = sizes or scale.sweep_scale_trials
    concurrency = max(1, min(2, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="hgsearch-bench-scale-") as tmp:
        a = _one(small, concurrency, Path(tmp))
        b = _one(large, concurrency, Path(tmp))
    figures = {"cpu_per_trial_ratio": b["cpu_per_trial_s"] / a["cpu_per_trial_s"],
               **{f"small_{k}": v for k, v in a.items()},
               **{f"large_{k}": v for k, v in b.items()}}
    return {"status": "ok",
            "settings": {"trials": [small, large], "concurrency": concurrency,
                         "trial_sleep_s": SLEEP_S, "sampler": "tpe"},
            "figures": figures}


def _detail(f: dict[str, float]) -> str:
    return f"driver CPU {f['small_cpu_per_trial_s']:.3g} s/trial small vs " \
           f"{f['large_cpu_per_trial_s']:.3g} s/trial large sweep"


# issue #10: the large sweep's driver CPU per trial within 1.5x of the small's
BENCHMARK = Benchmark("sweep_scale", Target("cpu_per_trial_ratio", "<=", 1.5), bench_sweep_scale,
                      _detail, """
    cpu_per_trial_ratio: driver CPU seconds per finished trial (between its first and last
    progress lines) in the large sweep / in the small one; run_*: the whole run_sweep call, Ray
    start and stop included""")

if __name__ == "__main__":
    import json

    print(json.dumps(bench_sweep_scale(FULL, None), indent=2))
