"""``hgsearch bench --device cuda --suite gpu``: what hgsearch's CUDA path costs, measured.

Six parts (``PARTS``), each one module of this package, each sized by a ``GpuScale`` so that the
test suite runs the very same code on the CPU at a tiny size:

- ``training`` (training.py): ResNet-56 training images/s per batch size, fp32 eager, bf16 +
  channels_last, and the same + torch.compile, whose compile time is given apart;
- ``sharing`` (sharing.py, worker.py): aggregate training images/s of 1, 2, 4, 8 trials sharing
  the GPU as separate processes (as Ray runs them), and each process's peak memory;
- ``sweep`` (sweep.py): a real ``hgsearch sweep`` of short trials sharing the GPU;
- ``data`` (training.py): the device-resident data path's share of a training step (the hot
  suite's ``data`` benchmark at every training batch size);
- ``pruning`` (latency.py): latency of a 50%-pruned network vs the dense one, batch 1 and a large
  batch, round_to 1, 8, 16;
- ``scoring`` (scoring.py): fast vs reference scorer with TF32 off, and the largest delta
  difference against the same scoring on the CPU in float64.

The run writes ``<out>/gpu-<host>-<UTC time>.json`` (atomically; every figure) and the printed
table beside it (``.txt``; table.py: a few lines per part). A part that raises is recorded as
``failed: ...`` and the others still run. Figures are never targets here: they are what the
machine did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hgsearch.bench.gpu.table import format_gpu_table
from hgsearch.bench.harness import (
    QUICK_SWEEP_TRIAL,
    TINY_SWEEP_TRIAL,
    load_average,
    machine_info,
    run_sections,
    torch_threads,
    write_report,
)
from hgsearch.errors import UserError
from hgsearch.fileio import utc_now, versions

FORMAT = "hgsearch-bench-gpu-v1"
# What the shipped spaces' gpu, compile and batch_size need comes first; scoring, whose float64
# check on the CPU costs the most where a machine's CPU is slow, last (the JSON is rewritten
# after every part, so a run cut short keeps what finished).
PARTS = ("training", "sharing", "sweep", "data", "pruning", "scoring")
__all__ = ["FORMAT", "PARTS", "GpuScale", "format_gpu_table", "run_gpu_suite", "scale_of",
           "succeeded", "write_outputs"]
Log = Callable[[str], None]


@dataclass(frozen=True)
class GpuScale:
    """How big each part is. The full size is meant to finish in under 8 minutes on one H200."""

    arch: str = "resnet56"
    train_batches: tuple[int, ...] = (128, 512)   # images per SGD step
    train_steps: int = 20             # SGD steps per timed epoch
    train_rounds: int = 5             # timed epochs per variant (ABBA order), after one warm-up
    compile_backend: str = "inductor"   # torch.compile backend of the compiled variant
    share_counts: tuple[int, ...] = (1, 2, 4, 8)   # trials (processes) sharing the device
    share_batch: int = 128            # the shipped spaces' batch size
    share_steps: int = 10             # SGD steps per epoch inside a sharing process
    share_seconds: float = 8.0        # the timed window every process trains through
    share_timeout_s: float = 300.0    # a process that is not ready by then fails the part
    data_batches: int = 8             # batches per timed block of the data path
    data_rounds: int = 8
    score_samples: int = 512
    score_batch: int = 512            # images per forward of the scorers
    score_rounds: int = 3
    score_reference_filters: int | None = None   # None: the reference scores every filter
    cpu64_filters: int = 16           # filters scored again on the CPU in float64 (512 samples)
    latency_batches: tuple[int, ...] = (1, 256)
    latency_round_to: tuple[int, ...] = (1, 8, 16)
    latency_repeats: int = 20         # forwards per latency figure (median); x5 at batch 1
    latency_rounds: int = 5
    sweep_trials: int = 4             # all at once: max_concurrent = sweep_trials
    sweep_gpu: float = 0.25           # resources.gpu per trial (on CUDA; 0 on the CPU)
    sweep_trial: dict = field(default_factory=lambda: {
        "dataset": "synthetic", "synthetic_train_size": 5000, "synthetic_test_size": 1000,
        "arch": "resnet56", "epochs": 2, "finetune_epochs": 1, "batch_size": 128,
        "eval_batch_size": 512, "score_samples": 128, "latency_batch": 256,
        "latency_repeats": 5})


FULL = GpuScale()
# A few minutes on two CPU cores, about a minute on a GPU: every part, small networks.
QUICK = GpuScale(arch="resnet20", train_batches=(32,), train_steps=4, train_rounds=3,
                 share_counts=(1, 2), share_batch=32, share_steps=4, share_seconds=2.0,
                 data_batches=4, data_rounds=4, score_samples=64, score_batch=64, score_rounds=2,
                 score_reference_filters=8, cpu64_filters=4, latency_batches=(1, 32),
                 latency_repeats=5, latency_rounds=3, sweep_trials=2,
                 sweep_trial=QUICK_SWEEP_TRIAL)
# For the test suite only: every code path in seconds. torch.compile's "eager" backend traces
# with TorchDynamo but generates no code (inductor's C++ build alone takes a minute on a CPU).
TINY = replace(QUICK, train_batches=(8,), train_steps=1, train_rounds=2, compile_backend="eager",
               share_batch=8, share_steps=1, share_seconds=0.5, share_timeout_s=120.0,
               data_batches=2, data_rounds=2, score_samples=8, score_rounds=1,
               score_reference_filters=3, cpu64_filters=3, latency_batches=(1, 4),
               latency_repeats=1, latency_rounds=2, sweep_trial=TINY_SWEEP_TRIAL)
SIZES = ("full", "quick", "tiny")


def scale_of(size: str) -> GpuScale:
    """The GpuScale called ``size`` (looked up when called, so a test may swap one)."""
    if size not in SIZES:
        raise ValueError(f"size={size!r}: one of {', '.join(SIZES)}")
    return {"full": FULL, "quick": QUICK, "tiny": TINY}[size]


def _functions() -> dict[str, Callable[[GpuScale, Any, Log], dict[str, Any]]]:
    from hgsearch.bench.gpu import latency, scoring, sharing, sweep, training

    return {"training": training.bench_training, "sharing": sharing.bench_sharing,
            "data": training.bench_data_share, "scoring": scoring.bench_scoring_cuda,
            "pruning": latency.bench_pruned_latency, "sweep": sweep.bench_gpu_sweep}


def run_gpu_suite(*, device: str = "cuda", size: str = "full", only: Sequence[str] = PARTS,
                  threads: int | None = None, log: Log | None = print,
                  on_part: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the parts named in ``only`` (in PARTS order) at ``size`` and return the report.

    ``on_part(report)`` is called after every part with the report so far (``complete``
    false), so that a run cut short still leaves the parts that finished.
    """
    import torch

    from hgsearch.runtime import resolve_runtime

    unknown = [name for name in only if name not in PARTS]
    if unknown:
        raise UserError(f"--only {','.join(unknown)}: the gpu suite's parts are "
                        f"{', '.join(PARTS)}")
    runtime = resolve_runtime(device)   # UserError when CUDA is asked for and absent
    scale = scale_of(size)
    log = log or (lambda _line: None)
    t0 = time.perf_counter()
    report: dict[str, Any] = {"format": FORMAT, "suite": "gpu", "size": size,
                              "device": str(runtime.device), "started_at": utc_now("seconds"),
                              "complete": False, "scale": asdict(scale)}
    functions = _functions()
    with torch_threads(threads):
        report["machine"] = {**machine_info(runtime.device), **gpu_info(runtime.device)}
        report["versions"] = {**versions(), "cuda": torch.version.cuda,
                              "cudnn": str(torch.backends.cudnn.version())}
        report["parts"] = {}
        for name, section, ran in run_sections(
                PARTS, only, lambda n: functions[n](scale, runtime, log), label="gpu suite",
                log=log, error_chars=800):
            report["parts"][name] = section
            if not ran:
                continue
            if runtime.device.type == "cuda":
                torch.cuda.empty_cache()   # the next part (or its processes) starts clean
            if on_part is not None:
                on_part(report)
    report["machine"]["load_average_end"] = load_average()
    report["finished_at"] = utc_now("seconds")
    report["seconds"] = time.perf_counter() - t0
    report["complete"] = True
    return report


def gpu_info(device: Any) -> dict[str, Any]:
    """The GPU's name, memory, multiprocessors and compute capability; nulls on the CPU."""
    import torch

    if device.type != "cuda":
        return {"gpu_memory_mib": None, "gpu_multiprocessors": None, "gpu_capability": None}
    props = torch.cuda.get_device_properties(device)
    return {"gpu_memory_mib": props.total_memory / 2**20,
            "gpu_multiprocessors": props.multi_processor_count,
            "gpu_capability": f"{props.major}.{props.minor}"}


def write_outputs(report: dict[str, Any], table: list[str], folder: str | Path) -> Path:
    """``folder/gpu-<host>-<time>.json`` and ``.txt`` (the table), each atomically."""
    return write_report(report, folder, prefix="gpu-", table=table)


def succeeded(report: dict[str, Any]) -> bool:
    """No part failed and every check held."""
    return all(not p["status"].startswith("failed") and all(p.get("checks", {}).values())
               for p in report["parts"].values())
