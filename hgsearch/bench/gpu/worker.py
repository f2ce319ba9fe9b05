"""One process of the sharing part: a trial's training loop, started on a signal, for a window.

    python -m hgsearch.bench.gpu.worker SPEC.json

SPEC.json (written by sharing.py) names the folder of the handshake files: the process warms up,
writes ``ready-<i>``, waits for ``go`` (its content: the window's start, ``time.time()``), trains
whole epochs until the window has passed, writes ``done-<i>.json`` and waits for ``exit`` so that
every process still holds its memory while the parent measures the device's.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from hgsearch.fileio import write_text_atomic


def wait_for(path: Path, *, timeout_s: float) -> str:
    """The file's text once it exists; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} did not appear within {timeout_s:g} s")
        time.sleep(0.005)
    return path.read_text()


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Warm up, signal ready, train through the window, return what was measured."""
    import torch

    from hgsearch.bench.gpu.training import epoch_runner
    from hgsearch.runtime import resolve_runtime

    folder, i = Path(spec["folder"]), spec["index"]
    torch.set_num_threads(spec["threads"])   # as a sweep worker: one thread per CPU asked for
    runtime = resolve_runtime(spec["device"])  # the trial's defaults: bf16 + channels_last on CUDA
    cuda = runtime.device.type == "cuda"
    if cuda and spec["memory_fraction"] < 1:
        # what search/worker.py does for a fractional GPU: cap the caching allocator to the share
        torch.cuda.set_per_process_memory_fraction(spec["memory_fraction"])
    epoch = epoch_runner(spec["arch"], spec["batch"], spec["steps"], runtime)
    epoch()   # warm-up
    write_text_atomic(folder / f"ready-{i}", str(os.getpid()))
    start = float(wait_for(folder / "go", timeout_s=spec["timeout_s"]))
    images, seconds, epochs = 0, 0.0, 0
    while epochs == 0 or time.time() < start + spec["seconds"]:
        record = epoch()
        images += spec["batch"] * spec["steps"]
        seconds += record["seconds"]
        epochs += 1
    end = time.time()
    if cuda:
        peak = torch.cuda.max_memory_reserved(runtime.device) / 2**20
        allocated = torch.cuda.max_memory_allocated(runtime.device) / 2**20
    else:   # Linux: KiB
        peak = allocated = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"index": i, "pid": os.getpid(), "images": images, "train_seconds": seconds,
            "epochs": epochs, "start": start, "end": end,
            "images_per_s": images / seconds if seconds > 0 else float("nan"),
            "peak_reserved_mib": peak, "peak_allocated_mib": allocated,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    folder = Path(spec["folder"])
    result = run(spec)
    write_text_atomic(folder / f"done-{spec['index']}.json", json.dumps(result))
    wait_for(folder / "exit", timeout_s=spec["timeout_s"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
