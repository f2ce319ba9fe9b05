"""N trials sharing one device as N separate processes, as Ray runs a sweep's trials.

Each process (worker.py) builds its own network and device-resident data, warms up, and waits;
all start on one signal and train whole epochs through the same window of ``share_seconds``.
A process with a share 1/N of a GPU caps its caching allocator to 1/N of the device, as
search/worker.py does for ``resources: {gpu: 1/N}``; Ray's fractions are bookkeeping only, so the
processes time-share the GPU exactly as here.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hgsearch
from hgsearch.bench.gpu.worker import wait_for
from hgsearch.fileio import write_text_atomic


def bench_sharing(scale: Any, runtime: Any, log: Any) -> dict[str, Any]:
    """Aggregate images/s and memory for every count in ``scale.share_counts``."""
    import torch

    figures: dict[str, float] = {}
    processes: dict[str, list[dict[str, Any]]] = {}
    # the suite's torch threads (--threads, else what the load average leaves) split between
    # the processes, as a sweep gives each trial threads for the CPUs it asked for
    threads = torch.get_num_threads()
    for n in scale.share_counts:
        r = run_shared(n, scale, runtime, threads=max(1, threads // n))
        processes[str(n)] = r["processes"]
        figures[f"n{n}_images_per_s"] = r["images_per_s"]
        figures[f"n{n}_images_per_s_per_trial"] = r["images_per_s_per_trial"]
        figures[f"n{n}_peak_mib_max"] = max(p["peak_reserved_mib"] for p in r["processes"])
        figures[f"n{n}_device_mib_per_trial"] = r["device_mib"] / n
        log(f"  {n} process(es): {r['images_per_s']:.0f} images/s together")
    if 1 in scale.share_counts:
        for n in scale.share_counts:
            figures[f"n{n}_vs_n1"] = figures[f"n{n}_images_per_s"] / figures["n1_images_per_s"]
    cuda = runtime.device.type == "cuda"
    settings = {"arch": scale.arch, "batch": scale.share_batch, "counts": list(scale.share_counts),
                "steps_per_epoch": scale.share_steps, "window_s": scale.share_seconds,
                "runtime": "the trial's defaults (bf16 + channels_last on CUDA), eager",
                "memory_fraction": "1/N per process on CUDA (search/worker.py), none for N = 1",
                "peak_memory": "torch.cuda.max_memory_reserved" if cuda
                               else "the process's max RSS",
                "device_memory": "device memory in use with all N processes alive, less before "
                                 "they started (torch.cuda.mem_get_info: CUDA contexts included)"
                                 if cuda else "sum of the processes' RSS (/proc/PID/status)"}
    return {"settings": settings, "figures": figures, "processes": processes,
            "definition": "images_per_s: images trained by all N processes in the window / "
                          "seconds from the common start to the last process's end; "
                          "images_per_s_per_trial: mean of each process's images / its own "
                          "epoch seconds; peak_mib_max: the largest process peak; "
                          "device_mib_per_trial: device memory of the N processes / N; vs_n1: "
                          "aggregate images/s against one process alone"}


def run_shared(n: int, scale: Any, runtime: Any, *, threads: int) -> dict[str, Any]:
    """Start n worker processes, run one common window, measure, and end them."""
    import torch

    cuda = runtime.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(runtime.device)
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info(runtime.device)
        used_before = total - free
    root = str(Path(hgsearch.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="hgsearch-share-") as tmp:
        folder = Path(tmp)
        try:
            for i in range(n):
                spec = {"folder": tmp, "index": i, "arch": scale.arch,
                        "batch": scale.share_batch, "steps": scale.share_steps,
                        "seconds": scale.share_seconds, "device": runtime.device.type,
                        "memory_fraction": 1.0 / n, "threads": threads,
                        "timeout_s": scale.share_timeout_s}
                (folder / f"spec-{i}.json").write_text(json.dumps(spec))
                with open(folder / f"log-{i}.txt", "w") as out:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-m", "hgsearch.bench.gpu.worker",
                         str(folder / f"spec-{i}.json")], env=env, stdout=out,
                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            _wait_all(procs, folder, "ready-{i}", timeout_s=scale.share_timeout_s)
            write_text_atomic(folder / "go", repr(time.time()))
            results = [json.loads(text) for text in _wait_all(
                procs, folder, "done-{i}.json",
                timeout_s=scale.share_seconds * 10 + scale.share_timeout_s)]
            # every process is alive and holds its memory until it sees "exit"
            if cuda:
                free, total = torch.cuda.mem_get_info(runtime.device)
                device_mib = (total - free - used_before) / 2**20
            else:
                device_mib = sum(_rss_mib(p.pid) for p in procs)
            write_text_atomic(folder / "exit", "")
            for p in procs:
                if p.wait(timeout=60) != 0:
                    raise RuntimeError(f"worker {p.pid} exited {p.returncode}: "
                                       f"{_tail(folder, procs.index(p))}")
        finally:
            for p in procs:   # only the processes started here
                if p.poll() is None:
                    p.kill()
                    p.wait()
    start = results[0]["start"]
    window = max(r["end"] for r in results) - start
    return {"processes": results, "device_mib": device_mib,
            "images_per_s": sum(r["images"] for r in results) / window,
            "images_per_s_per_trial": sum(r["images_per_s"] for r in results) / n}


def _wait_all(procs: list[subprocess.Popen], folder: Path, pattern: str, *,
              timeout_s: float) -> list[str]:
    """The text of ``pattern`` for every process, in order; a process that ends first fails."""
    deadline = time.monotonic() + timeout_s
    texts: list[str] = []
    for i, p in enumerate(procs):
        path = folder / pattern.format(i=i)
        while not path.exists():
            if p.poll() is not None:
                raise RuntimeError(f"worker {i} exited {p.returncode} before {path.name}: "
                                   f"{_tail(folder, i)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {i}: no {path.name} within {timeout_s:g} s")
            time.sleep(0.01)
        texts.append(wait_for(path, timeout_s=1))
    return texts


def _tail(folder: Path, i: int) -> str:
    with contextlib.suppress(OSError):
        return " | ".join((folder / f"log-{i}.txt").read_text().strip().splitlines()[-3:])
    return "(no log)"


def _rss_mib(pid: int) -> float:
    """Resident memory of a live process, from /proc (Linux); NaN where there is none."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")
