"""A real ``hgsearch sweep``: short trials that all share the device at once.

The command runs as a user runs it (a new process, its own Ray, ``resources: {gpu: 0.25}`` per
trial on CUDA); the rows it writes then say where each trial ran and when. The checks: every
trial ended ok, all ran at the same time (the latest start before the earliest end), and every
row names the device the suite runs on and, on CUDA, the GPU's name.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import hgsearch

NAME = "gpu-check"


def sweep_space(scale: Any, device: str) -> dict[str, Any]:
    """The search-space mapping: ``sweep_trials`` short trials, all at once."""
    n = scale.sweep_trials
    return {"fixed": {**scale.sweep_trial, "device": device},
            "search": {"prune_ratio": {"uniform": [0.3, 0.7]}},
            "objectives": {"acc_final": "max", "params_ratio": "min"},
            "sampler": {"name": "random", "seed": 0}, "num_samples": n, "max_concurrent": n,
            "retries": 0, "baseline": False,
            "resources": {"cpu": 1, "gpu": scale.sweep_gpu if device == "cuda" else 0}}


def bench_gpu_sweep(scale: Any, runtime: Any, log: Any) -> dict[str, Any]:
    """Run ``hgsearch sweep`` on the space above and summarize its rows."""
    import yaml

    from hgsearch.results import load_results

    device = runtime.device.type
    space = sweep_space(scale, device)
    root = str(Path(hgsearch.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryDirectory(prefix="hgsearch-gpu-sweep-") as tmp:
        path = Path(tmp) / "space.yaml"
        path.write_text(yaml.safe_dump(space))
        command = [sys.executable, "-m", "hgsearch.cli", "sweep", str(path), "--name", NAME,
                   "--results", str(Path(tmp) / "results")]
        t0 = time.perf_counter()
        done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=600)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-4:])
            return {"status": f"failed: hgsearch sweep exited {done.returncode}: {tail}"[:800]}
        rows = load_results(Path(tmp) / "results" / NAME)
    gpu = _gpu_name(runtime.device)
    section = summarize_sweep(rows.to_dict("records"), trials=scale.sweep_trials, device=device,
                              gpu_name=gpu)
    section["figures"]["sweep_s"] = wall
    log(f"  {len(rows)} trials in {wall:.0f} s; checks {section['checks']}")
    section["settings"] = {"space": space, "command": "hgsearch sweep SPACE --name " + NAME +
                                                      " --results TMP"}
    section["definition"] = ("sweep_s: wall seconds of the hgsearch sweep command (Ray's start "
                             "and stop included); all_at_once_s: seconds during which every "
                             "trial ran (earliest end - latest start); max_concurrent_seen: "
                             "most trials running at one time, from the rows' started_at / "
                             "finished_at")
    return section


def _gpu_name(device: Any) -> str | None:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def summarize_sweep(rows: list[dict[str, Any]], *, trials: int, device: str,
                    gpu_name: str | None) -> dict[str, Any]:
    """Figures and checks of a sweep's rows (one dict per trial)."""
    spans = [(_time(r["started_at"]), _time(r["finished_at"])) for r in rows]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                    key=lambda t: (t[0], t[1]))   # an end before a start at the same instant
    running = seen = 0
    for _, step in events:
        running += step
        seen = max(seen, running)
    together = min(e for _, e in spans) - max(s for s, _ in spans) if spans else float("nan")
    seconds = [float(r["seconds_total"]) for r in rows]
    per_row = [{"trial_id": r["trial_id"], "status": r["status"], "device": r["device"],
                "device_name": r["device_name"], "hostname": r["hostname"],
                "cuda_visible_devices": r.get("cuda_visible_devices"),
                "seconds_total": r["seconds_total"], "started_at": r["started_at"],
                "finished_at": r["finished_at"]} for r in rows]
    checks = {
        "all_trials_ok": len(rows) == trials and all(r["status"] == "ok" for r in rows),
        "all_at_once": len(rows) == trials and seen == trials,
        "all_on_device": bool(rows) and all(str(r["device"]).split(":")[0] == device
                                            for r in rows),
        "gpu_named": bool(rows) and (gpu_name is None
                                     or all(r["device_name"] == gpu_name for r in rows)),
    }
    figures = {"trials": float(len(rows)), "max_concurrent_seen": float(seen),
               "all_at_once_s": together,
               "trial_seconds_median": statistics.median(seconds) if seconds else float("nan"),
               "trial_seconds_max": max(seconds) if seconds else float("nan"),
               "first_start_to_last_end_s": (max(e for _, e in spans) - min(s for s, _ in spans)
                                             if spans else float("nan"))}
    return {"figures": figures, "checks": checks, "rows": per_row}


def _time(text: Any) -> float:
    with contextlib.suppress(TypeError, ValueError):
        return datetime.fromisoformat(str(text)).timestamp()
    return float("nan")
