"""``hgsearch bench``: the command line of the suites (hot paths, gpu, quality, sweep-cost)."""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hgsearch.bench.harness import write_report
from hgsearch.bench.suite import BENCHMARKS, format_table, run_benchmarks
from hgsearch.errors import UserError

SUITES = ("hot", "gpu", "quality", "sweep-cost")
_SWEEP_COST_ONLY = ("seeds", "space", "num_samples")   # the options of sweep-cost alone


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``hgsearch bench`` to the command line."""
    p = subparsers.add_parser("bench", help="time the hot paths against their references; "
                                            "writes results/bench/<host>-<time>.json")
    p.add_argument("--device", choices=("cpu", "cuda"),
                   help="where to run (default: cuda when present, else cpu)")
    p.add_argument("--quick", action="store_true",
                   help="smaller networks and fewer repeats: 1-2 minutes on two CPU cores")
    p.add_argument("--out", metavar="DIR", default="results/bench",
                   help="folder of the JSON report (default results/bench)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch intra-op threads (default: one per core that the load "
                        "average leaves free, at least 1)")
    p.add_argument("--only", metavar="NAME[,NAME]",
                   help="run only these benchmarks: " + ", ".join(BENCHMARKS))
    # --suite: which measurements. gpu: hgsearch/bench/gpu/ (cluster/gpu_check.sh calls it);
    # quality: hgsearch/bench/quality.py (accuracy, not time; it takes long); sweep-cost:
    # hgsearch/bench/sweep_cost.py (real sweeps, plain against economical; takes long).
    p.add_argument("--suite", choices=SUITES, default="hot",
                   help="hot: the hot paths against their references (default); gpu: "
                        "throughput per precision and compile, trials sharing a GPU, scoring "
                        "against float64, pruned latency, a real sweep (--only: their parts); "
                        "quality: criteria x regularizers, accuracy after pruning (takes long); "
                        "sweep-cost: hypervolume against compute of a plain and an economical "
                        "sweep per sampler seed (takes long; --quick: 4 trials on less data)")
    p.add_argument("--seeds", metavar="N[,N]",
                   help="sweep-cost: the sampler seeds, one pair of sweeps each (default 0,1,2)")
    p.add_argument("--space", metavar="FILE",
                   help="sweep-cost: the search space (default search_spaces/demo.yaml)")
    p.add_argument("--num-samples", type=int, metavar="N",
                   help="sweep-cost: searched trials per sweep (default: the space's)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="quality: (seed, setting) pairs run at once, a process on one thread "
                        "each (default 1)")
    p.set_defaults(func=bench_command)


def bench_command(args: argparse.Namespace) -> int:
    """Run, print the table, write the report; exit 1 when a benchmark failed."""
    suite = getattr(args, "suite", "hot")
    if suite != "sweep-cost":
        for name in _SWEEP_COST_ONLY:
            if getattr(args, name, None) is not None:
                raise UserError(f"--{name.replace('_', '-')}: applies to --suite sweep-cost only")
    if suite != "quality" and getattr(args, "jobs", None) is not None:
        raise UserError("--jobs: applies to --suite quality only")
    if suite == "sweep-cost":
        return sweep_cost_command(args)
    if suite == "gpu":
        return gpu_command(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    only = BENCHMARKS if not args.only else tuple(s.strip() for s in args.only.split(","))
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if suite == "quality":
        return quality_command(device=device, quick=args.quick, out=out, threads=args.threads,
                               jobs=1 if args.jobs is None else args.jobs)
    report = run_benchmarks(device=device, quick=args.quick, only=only, threads=args.threads)
    for line in format_table(report):
        print(line)
    path = write_report(report, out)
    load = report["machine"]["load_average_start"]
    threads = report["machine"]["torch_threads"]
    print(f"{report['seconds']:.0f} s on {report['machine']['cpu_model']} ({threads} torch "
          f"thread{'s' if threads != 1 else ''}, load average {load}); written to {path}")
    failed = [n for n, b in report["benchmarks"].items() if b["status"].startswith("failed")]
    return 1 if failed else 0


def gpu_command(args: argparse.Namespace) -> int:
    """``hgsearch bench --suite gpu``: run, print the table, write both; exit 1 on a failure."""
    from hgsearch.bench.gpu.suite import (
        PARTS,
        format_gpu_table,
        run_gpu_suite,
        succeeded,
        write_outputs,
    )

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    only = PARTS if not args.only else tuple(s.strip() for s in args.only.split(","))

    def save(report: dict[str, Any]) -> Path:
        return write_outputs(report, format_gpu_table(report), out)

    report = run_gpu_suite(device=args.device or "cuda", size="quick" if args.quick else "full",
                           only=only, threads=args.threads, on_part=save)
    path = save(report)
    print(path.with_suffix(".txt").read_text(), end="")
    m = report["machine"]
    print(f"{report['seconds']:.0f} s on {m['gpu'] or m['cpu_model']} (load average "
          f"{m['load_average_start']}); written to {path} and {path.with_suffix('.txt').name}")
    return 0 if succeeded(report) else 1


def quality_command(*, device: str, quick: bool, out: str | Path,
                    threads: int | None, jobs: int = 1) -> int:
    """``hgsearch bench --suite quality``: run, print the table, write the JSON report."""
    import torch

    from hgsearch.bench import quality
    from hgsearch.bench.quality_controls import format_controls

    torch.set_num_threads(threads or 1)   # one thread: fastest on a shared, loaded CPU
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = Path(out) / f"quality-{'tiny-' if quick else ''}{stamp}.json"
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: expected a number of processes >= 1")
    scale = quality.TINY if quick else quality.FULL
    print(f"quality: {len(scale.seeds) * len(scale.settings)} (seed, setting) pairs, then the "
          f"controls, {jobs} at a time; the report is kept up to date in {path}", flush=True)
    report = quality.run_quality(scale, device=device, out=path, jobs=jobs)
    for line in [*quality.format_dense(report), "", *quality.format_quality(report), "",
                 *format_controls(report)]:
        print(line)
    print(f"{report['seconds']:.0f} s; written to {path}")
    return 0


def parse_seeds(text: str) -> tuple[int, ...]:
    """``--seeds 0,1,2`` as a tuple of distinct integers >= 0; UserError otherwise."""
    items = [item.strip() for item in text.split(",")]
    if not all(re.fullmatch(r"\d+", item) for item in items):
        raise UserError(f"--seeds {text}: expected sampler seeds as integers >= 0 separated by "
                        "commas, e.g. 0,1,2")
    seeds = tuple(int(item) for item in items)
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text}: each seed once (the sweeps would be the same)")
    return seeds


def sweep_cost_command(args: argparse.Namespace) -> int:
    """``hgsearch bench --suite sweep-cost``: run the sweeps, print and write the table."""
    from dataclasses import replace

    from hgsearch.bench import sweep_cost

    for flag, value in (("--only", args.only), ("--device", args.device),
                        ("--threads", args.threads)):
        if value is not None:
            raise UserError(f"{flag}: does not apply to --suite sweep-cost (the space file "
                            "sets the trials' device and resources)")
    seeds = parse_seeds(args.seeds if args.seeds is not None else "0,1,2")
    if args.num_samples is not None and args.num_samples < 1:
        raise UserError(f"--num-samples {args.num_samples}: expected an integer >= 1")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if args.space is not None and not Path(args.space).is_file():
        raise UserError(f"--space {args.space}: no such file")
    scale = sweep_cost.QUICK if args.quick else sweep_cost.FULL
    if args.num_samples is not None:
        scale = replace(scale, num_samples=args.num_samples)
    report, path = sweep_cost.run_sweep_cost(args.space, seeds=seeds, out=out, scale=scale)
    for line in sweep_cost.format_sweep_cost(report):
        print(line)
    failed = [n for n, s in report["sweeps"].items() if s["status"] != "ok"]
    extra = "" if not path.with_suffix(".png").exists() else f", {path.with_suffix('.png').name}"
    print(f"{report['seconds']:.0f} s on {report['machine']['cpu_model']}; written to {path} "
          f"(table {path.with_suffix('.txt').name}{extra}; sweeps in {path.with_suffix('')})")
    for note in report.get("notes", []):
        print(f"note: {note}")
    return 1 if failed else 0
