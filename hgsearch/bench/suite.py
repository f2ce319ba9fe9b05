"""``hgsearch bench``'s hot suite: every benchmark, run in order, judged against its target.

The run writes ``<out>/<host>-<UTC time>.json`` (atomically): the machine, the versions, every
setting and figure. A benchmark is one module of this package holding one ``Benchmark``;
``BENCHMARKS`` lists them in the order they run (targets from issue #7):

- ``hgsr`` (hgsr.py): SGD step with the regularizer / without it. <= 1.05.
- ``scoring`` (scoring.py): reference scorer time / fast scorer time, same deltas. >= 2.
- ``data`` (data.py): seconds per batch of ``DeviceData.train_batches`` / seconds of one
  training step. <= 0.05. Beside it, a torchvision Dataset + DataLoader pipeline.
- ``streaming`` (streaming.py): seconds waiting for a streamed batch (224 px JPEGs decoded by
  the DataLoader workers) / seconds of waiting plus a ResNet-50 SGD step. <= 0.10.
- ``trial`` (trial.py): one epoch of ``hgsearch.train.train`` with a trial's settings / the same
  steps in a minimal hand-written loop over ready-made batches. <= 1.10.
- ``pruning`` (pruning.py): latency of the dense network / of a 50%-pruned one (random scores),
  at batch 1 and a large batch, with round_to 1 and 8.
- ``sweep`` (sweep.py): a sweep of N equal trials / (N x one trial run alone / concurrency).
- ``sweep_scale`` (sweep_scale.py): driver CPU per trial, large sweep / small sweep. <= 1.5.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from hgsearch.bench import (
    data,
    hgsr,
    pruning,
    scoring,
    streaming,
    sweep,
    sweep_scale,
    trial,
)
from hgsearch.bench.harness import (
    Benchmark,
    Section,
    load_average,
    machine_info,
    run_sections,
    scale_for,
    torch_threads,
)
from hgsearch.errors import UserError
from hgsearch.fileio import utc_now, versions

FORMAT = "hgsearch-bench-v1"
# The registry: adding a benchmark is its module and one entry here.
REGISTRY: tuple[Benchmark, ...] = tuple(m.BENCHMARK for m in (
    hgsr, scoring, data, streaming, trial, pruning, sweep, sweep_scale))
BY_NAME = {b.name: b for b in REGISTRY}
BENCHMARKS = tuple(BY_NAME)
TARGETS = {b.name: b.target for b in REGISTRY}


def run_benchmarks(*, device: str = "cpu", quick: bool = False, only: Sequence[str] = BENCHMARKS,
                   threads: int | None = None, tiny: bool = False,
                   log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Run the benchmarks named in ``only`` (in BENCHMARKS order) and return the report.

    A benchmark that raises is recorded as ``failed: ...`` and the others still run.
    ``threads``: torch's intra-op threads for the run (None: ``auto_threads()``), restored
    after. ``tiny`` shrinks everything below ``quick`` (the test suite's setting).
    """
    import torch

    from hgsearch.runtime import resolve_runtime

    unknown = [name for name in only if name not in BY_NAME]
    if unknown:
        raise UserError(f"--only {','.join(unknown)}: allowed values are {', '.join(BENCHMARKS)}")
    runtime = resolve_runtime(device)   # UserError when CUDA is asked for and absent
    scale = scale_for(quick=quick, tiny=tiny, device=runtime.device.type)
    log = log or (lambda _line: None)
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "format": FORMAT, "quick": quick or tiny, "tiny": tiny, "device": str(runtime.device),
        "precision": str(runtime.autocast_dtype or torch.float32).removeprefix("torch."),
        "channels_last": runtime.channels_last, "started_at": utc_now("seconds"),
        "scale": asdict(scale), "targets": {k: list(v) for k, v in TARGETS.items()}}
    with torch_threads(threads):
        report["machine"] = machine_info(runtime.device)
        report["versions"] = versions()
        report["benchmarks"] = {}
        for name, section, ran in run_sections(
                BENCHMARKS, only, lambda n: BY_NAME[n].measure(scale, runtime), label="bench",
                log=log):
            report["benchmarks"][name] = judge(name, section) if ran else section
    report["machine"]["load_average_end"] = load_average()
    report["finished_at"] = utc_now("seconds")
    report["seconds"] = time.perf_counter() - t0
    return report


def judge(name: str, section: Section) -> Section:
    """Add headline, target and whether it is met (None without a target or a figure)."""
    figure, op, value = TARGETS[name]
    got = section.get("figures", {}).get(figure)
    met = None
    if value is not None and got is not None and math.isfinite(got):
        met = bool(got <= value if op == "<=" else got >= value)
    return {"status": section["status"], "headline": figure,
            "target": None if value is None else f"{op} {value:g}", "met": met,
            **{k: v for k, v in section.items() if k != "status"}}


def format_table(report: dict[str, Any]) -> list[str]:
    """One line per benchmark: headline figure, target, met, and what it compares."""
    rows = [("benchmark", "figure", "value", "target", "met", "detail")]
    for name, b in report["benchmarks"].items():
        if b["status"] != "ok":
            rows.append((name, "", "", "", "", b["status"]))
            continue
        f = b["figures"]
        value = f[b["headline"]]
        met = "" if b["met"] is None else ("yes" if b["met"] else "NO")
        rows.append((name, b["headline"], f"{value:.4g}", b["target"] or "-", met,
                     BY_NAME[name].detail(f)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[5] for r in rows]
