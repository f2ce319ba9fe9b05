"""What every benchmark shares: its shape, the sizes, paired timing, the machine, the report file.

Every figure is a ratio of two things timed in the same run, alternating (ABBA: A B, then B A,
...) after a warm-up of each, as the median of the rounds' paired ratios; so a figure means the
same on a machine that other jobs slow down unevenly. On CPU the ratio of process CPU time is
given beside the wall-time one.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import socket
import statistics
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from hgsearch.errors import UserError
from hgsearch.fileio import json_text, write_text_atomic

Times = list[tuple[float, float]]   # (wall seconds, process CPU seconds) per timed call
Section = dict[str, Any]            # one benchmark's part of the report


class Target(NamedTuple):
    """The headline figure, how it is judged and the bound (None: reported without a target)."""

    figure: str
    op: str            # "<=" or ">="
    value: float | None


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of ``hgsearch bench``: its name, target, measurement and table line.

    ``run(scale, runtime)`` returns the section: ``settings`` and ``figures`` (and ``status``
    where not ``ok``). ``detail(figures)`` is the table's one-line summary; ``definition`` says
    what the figures are (the report's ``definition``, its white space folded).
    """

    name: str
    target: Target
    run: Callable[[Scale, Any], Section]
    detail: Callable[[dict[str, float]], str]
    definition: str

    def measure(self, scale: Scale, runtime: Any) -> Section:
        """``run``'s section with the definition."""
        section = self.run(scale, runtime)
        section.setdefault("definition", " ".join(self.definition.split()))
        return section


# The sweep trial of the quick sizes, here and in the GPU suite: seconds on two CPU cores.
QUICK_SWEEP_TRIAL = {
    "dataset": "synthetic", "synthetic_train_size": 300, "synthetic_test_size": 50,
    "arch": "resnet20", "epochs": 1, "finetune_epochs": 0, "batch_size": 50,
    "eval_batch_size": 256, "score_samples": 8, "latency_batch": 4, "latency_repeats": 2}
TINY_SWEEP_TRIAL = {**QUICK_SWEEP_TRIAL, "synthetic_train_size": 100, "synthetic_test_size": 20,
                    "latency_batch": 2, "latency_repeats": 1, "score_samples": 4}


@dataclass(frozen=True)
class Scale:
    """How big each benchmark is. ``rounds``: paired rounds per figure, after one warm-up."""

    arch: str = "resnet56"           # the network of every figure but the sweep's
    batch: int = 128                 # images per SGD step
    rounds: int = 8
    score_rounds: int = 3            # the scorers take minutes a round on CPU
    score_samples: int = 512
    score_batch: int = 512           # images per forward of the scorers
    score_reference_filters: int = 3    # per round; the rest is scaled (scoring.py)
    score_fast_samples: int | None = None   # None: the fast scorer scores every sample
    data_batches: int = 8            # batches per timed block of the data path
    epoch_steps: int = 2             # SGD steps in the trial-overhead epoch
    latency_batch: int = 128         # the large batch of the pruning pay-off
    latency_repeats: int = 3         # forwards per latency figure (median); x10 at batch 1
    sweep_trials: int = 4
    sweep_concurrency: int = 2
    sweep_trial: dict = field(default_factory=lambda: {
        "dataset": "synthetic", "synthetic_train_size": 1000, "synthetic_test_size": 200,
        "arch": "resnet20", "epochs": 1, "finetune_epochs": 1, "batch_size": 64,
        "eval_batch_size": 256, "score_samples": 32, "latency_batch": 16,
        "latency_repeats": 3})
    sweep_scale_trials: tuple[int, int] = (20, 200)   # the small and the large sweep_scale sweep


FULL = Scale()
QUICK = Scale(arch="resnet20", batch=32, rounds=4, score_rounds=2, score_samples=64,
              score_batch=64, score_reference_filters=3, score_fast_samples=16, data_batches=4,
              epoch_steps=4, latency_batch=32, latency_repeats=3, sweep_trials=2,
              sweep_trial=QUICK_SWEEP_TRIAL, sweep_scale_trials=(10, 50))
# For the test suite only: every code path, in seconds.
TINY = replace(QUICK, batch=8, rounds=2, score_samples=8, score_batch=64,
               score_reference_filters=2, score_fast_samples=None, data_batches=2, epoch_steps=2,
               latency_batch=4, latency_repeats=1, sweep_trial=TINY_SWEEP_TRIAL,
               sweep_scale_trials=(3, 6))


def scale_for(*, quick: bool, tiny: bool = False, device: str = "cpu") -> Scale:
    """The sizes of a run. On CPU the full run times the fast scorer on 16 of its 512 samples
    (an hour otherwise on two cores; its cost is linear in the samples, scoring.py)."""
    if tiny:
        return TINY
    if quick:
        return QUICK   # looked up when called, so a test may swap it
    return replace(FULL, score_fast_samples=16) if device == "cpu" else FULL


# --------------------------------------------------------------------------- paired timing

class Clock:
    """Wall and process-CPU seconds since the last lap; ``sync`` (waiting for a GPU) first."""

    def __init__(self, sync: Callable[[], None] = lambda: None) -> None:
        self.sync = sync
        self.last = (time.perf_counter(), time.process_time())

    def lap(self) -> tuple[float, float]:
        self.sync()
        now = (time.perf_counter(), time.process_time())
        wall, cpu = now[0] - self.last[0], now[1] - self.last[1]
        self.last = now
        return wall, cpu


def abba(names: Sequence[str], rounds: int) -> Iterator[str]:
    """The names once per round, in order in even rounds and reversed in odd ones."""
    for r in range(rounds):
        yield from (names if r % 2 == 0 else reversed(names))


def interleave(calls: dict[str, Callable[[], object]], *, rounds: int, warmup: int = 1,
               sync: Callable[[], None] = lambda: None) -> dict[str, Times]:
    """Time each call once per round in ABBA order, after ``warmup`` untimed calls of each;
    (wall, CPU) seconds per call."""
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    out: dict[str, Times] = {name: [] for name in names}
    clock = Clock(sync)
    for name in abba(names, rounds):
        clock.lap()
        calls[name]()
        out[name].append(clock.lap())
    return out


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of numerator[i] / denominator[i]."""
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError("paired_ratio: two non-empty sequences of equal length")
    return statistics.median(n / d for n, d in zip(numerator, denominator))


def compare(subject: Times, reference: Times, *, prefix: str = "") -> dict[str, float]:
    """Medians of both sides' wall seconds and the paired ratios subject / reference (wall, and
    process CPU time, which other processes on a shared machine disturb far less)."""
    walls = [w for w, _ in subject], [w for w, _ in reference]
    return {f"{prefix}subject_s": statistics.median(walls[0]),
            f"{prefix}reference_s": statistics.median(walls[1]),
            f"{prefix}ratio": paired_ratio(*walls),
            f"{prefix}cpu_ratio": paired_ratio([c for _, c in subject], [c for _, c in reference])}


def sync_for(device: Any) -> Callable[[], None]:
    """A function that waits for ``device`` (a CUDA synchronize; nothing on the CPU)."""
    import torch

    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


# --------------------------------------------------------------------------- a run of sections

def run_sections(names: Sequence[str], only: Collection[str],
                 run: Callable[[str], Section], *, label: str, log: Callable[[str], None],
                 error_chars: int = 500) -> Iterator[tuple[str, Section, bool]]:
    """(name, section, ran) per name in order; a name not in ``only`` is skipped.

    A section that raises is recorded as ``failed: ...`` and the others still run (a UserError
    stops the run: the user asked for something impossible).
    """
    for name in names:
        if name not in only:
            yield name, {"status": "skipped: not in --only"}, False
            continue
        log(f"{label} {name} ...")
        t0 = time.perf_counter()
        try:
            section = run(name)
        except UserError:
            raise
        except Exception as err:   # one broken benchmark must not lose the others
            section = {"status": f"failed: {err.__class__.__name__}: {err}"[:error_chars]}
        section.setdefault("status", "ok")
        section["seconds"] = time.perf_counter() - t0
        log(f"{label} {name}: {section['status']} ({section['seconds']:.0f} s)")
        yield name, section, True


# --------------------------------------------------------------------------- the machine

def auto_threads() -> int:
    """torch's default thread count, less the cores other processes keep busy (1-minute load
    average), at least 1. More threads than free cores make every parallel region wait for a
    descheduled thread: ResNet-20 at batch 1 measured 111 ms with 2 threads against 2.7 ms with
    1, on 2 cores at load 5.4."""
    import torch

    try:
        busy = round(os.getloadavg()[0])
    except (AttributeError, OSError):
        busy = 0
    return max(1, min(torch.get_num_threads(), _usable_cores() - busy))


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` (None: ``auto_threads()``), restored after."""
    import torch

    old = torch.get_num_threads()
    if n is not None and n < 1:
        raise UserError(f"--threads {n}: expected an integer >= 1")
    torch.set_num_threads(n or auto_threads())
    try:
        yield
    finally:
        torch.set_num_threads(old)


def machine_info(device: Any) -> dict[str, Any]:
    """CPU model, cores, torch threads, GPU name (if any), load average, host, OS."""
    import torch

    gpu = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(device if device.type == "cuda" else 0)
    return {"host": socket.gethostname(), "cpu_model": _cpu_model(), "cores": os.cpu_count(),
            "cores_usable": _usable_cores(), "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(), "gpu": gpu,
            "platform": platform.platform(), "load_average_start": load_average()}


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


# --------------------------------------------------------------------------- the report file

def write_report(report: dict[str, Any], folder: str | Path, *, prefix: str = "",
                 table: list[str] | None = None) -> Path:
    """Write ``folder/<prefix><host>-<UTC start>.json`` (strict JSON: NaN -> null) and, with
    ``table``, the table beside it as ``.txt``; each atomically (a temp file, then a rename)."""
    folder = Path(folder)
    host = re.sub(r"[^A-Za-z0-9._-]", "_", report["machine"]["host"]) or "host"
    stamp = datetime.fromisoformat(report["started_at"]).strftime("%Y%m%d-%H%M%S")
    path = folder / f"{prefix}{host}-{stamp}.json"
    texts = {path: json_text(report, indent=1)}
    if table is not None:
        texts[path.with_suffix(".txt")] = "\n".join(table) + "\n"
    try:
        for target, text in texts.items():
            write_text_atomic(target, text)
    except OSError as err:
        raise UserError(f"--out {folder}: cannot write the report there ({err.strerror})") \
            from None
    return path
