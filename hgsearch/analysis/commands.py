"""The ``hgsearch front``, ``hgsearch select`` and ``hgsearch report`` subcommands."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from hgsearch.errors import UserError

if TYPE_CHECKING:  # pandas is imported by the handlers, not when the CLI builds its parser
    import pandas as pd

UNITS = ("accuracy: top-1 in % (acc_* validation, test_acc_* test); ratios: fraction of the "
         "dense network; MACs: multiply-accumulates")


def register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add front, select and report to the ``hgsearch`` command's subparsers."""
    objectives_help = ("objectives as COLUMN:max|min,...; default: RESULTS/sweep.json's, "
                       "else acc_final:max,params_ratio:min")

    p = subparsers.add_parser("front", help="print the Pareto front of a results folder",
                              description="Print the non-dominated trials of RESULTS with their "
                              "objectives, key hyperparameters and test accuracy.")
    p.add_argument("results", metavar="RESULTS", help="results folder (holds trials/)")
    p.add_argument("--objectives", help=objectives_help)
    p.set_defaults(func=front_command)

    p = subparsers.add_parser("select", help="choose one trial and export its model",
                              description="Choose one trial by a rule on validation accuracy, "
                              "print why, and export it to RESULTS/selected/.")
    p.add_argument("results", metavar="RESULTS", help="results folder (holds trials/, models/)")
    p.add_argument("--rule", required=True, choices=("knee", "budget", "max-drop"),
                   help="knee: best trade-off on the front; budget: most accurate with "
                   "--budget-column <= --budget; max-drop: smallest within --max-drop points "
                   "of the baseline")
    p.add_argument("--budget", type=float, help="rule budget: the largest allowed value, "
                   "e.g. 0.5 for half the dense parameters")
    p.add_argument("--budget-column", help="rule budget: params_ratio (default), macs_ratio "
                   "or another numeric column")
    p.add_argument("--max-drop", type=float, help="rule max-drop: allowed accuracy drop below "
                   "the baseline, in percentage points")
    p.add_argument("--objectives", help=objectives_help + " (rule knee)")
    p.add_argument("--no-onnx", action="store_true", help="do not write model.onnx")
    p.set_defaults(func=select_command)

    p = subparsers.add_parser("report", help="write RESULTS/report/index.html",
                              description="Write a self-contained HTML report of RESULTS.")
    p.add_argument("results", metavar="RESULTS", help="results folder (holds trials/)")
    p.add_argument("--objectives", help=objectives_help)
    p.set_defaults(func=report_command)


def load(results: str | Path) -> pd.DataFrame:
    """The trial rows of a results folder; UserError when there is no folder or no row."""
    from hgsearch.results import load_results

    path = Path(results)
    if not path.is_dir():
        raise UserError(f"{path}: no such results folder")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # said below, once, on stderr
        df = load_results(path)
    for file, reason in df.attrs.get("skipped", []):
        print(f"hgsearch: warning: skipped {file}: {reason}", file=sys.stderr)
    if df is None or len(df) == 0:
        raise UserError(f"{path}: no trial rows (expected {path / 'trials'}/*.parquet)")
    return df


def _objectives(args: argparse.Namespace) -> list[tuple[str, str]]:
    from hgsearch.analysis.front import parse_objectives, read_objectives

    if args.objectives:
        return parse_objectives(args.objectives)
    return read_objectives(args.results)


def front_command(args: argparse.Namespace) -> int:
    from hgsearch.analysis.front import format_table, front_table, pareto_front

    df = load(args.results)
    objs = _objectives(args)
    from hgsearch.analysis.front import left_out
    from hgsearch.analysis.select import baseline_count, candidates_text

    front = pareto_front(df, objs)
    print(format_table(front_table(front, objs)).to_string(index=False))
    names = ", ".join(f"{n} {d}" for n, d in objs)
    n_usable = front.attrs["usable"]
    print(f"\n{left_out(n_usable, front.attrs['excluded'])} {len(front)} of them on the Pareto "
          f"front ({names}); `hgsearch select` chooses among "
          f"{candidates_text(n_usable, baseline_count(df, objs))}.\n{UNITS}")
    return 0


def select_command(args: argparse.Namespace) -> int:
    from hgsearch.analysis.export import export_selection
    from hgsearch.analysis.select import baseline_of, select

    misplaced = [flag for flag, value, rule in (
        ("--budget", args.budget, "budget"), ("--budget-column", args.budget_column, "budget"),
        ("--max-drop", args.max_drop, "max-drop"), ("--objectives", args.objectives, "knee"))
        if value is not None and args.rule != rule]
    if misplaced:
        raise UserError(f"{misplaced[0]} does not apply to --rule {args.rule}")
    df = load(args.results)
    selection = select(df, rule=args.rule, objectives=_objectives(args), budget=args.budget,
                       budget_column=args.budget_column or "params_ratio",
                       max_drop=args.max_drop)
    folder = export_selection(args.results, selection, onnx=not args.no_onnx,
                              baseline=baseline_of(df, selection.row))
    report = Path(args.results) / "report" / "index.html"
    if report.is_file():   # a report shows the current selection, not the one it was made with
        from hgsearch.analysis.report import write_report

        write_report(args.results, df, objectives=_objectives(args))
    row = selection.row
    print(f"selected {selection.trial_id} (rule {selection.rule})")
    print(f"  validation accuracy {_pct(row.get('acc_final'))}, "
          f"test accuracy {_pct(row.get('test_acc_final'))}")
    print(f"  parameters {_ratio(row.get('params_ratio'))} of dense, "
          f"MACs {_ratio(row.get('macs_ratio'))} of dense (multiply-accumulates)")
    print(f"  why: {selection.reason}")
    files = ", ".join(sorted(p.name for p in folder.iterdir()))
    print(f"  exported to {folder}/ ({files})")
    if report.is_file():
        print(f"  updated {report}")
    return 0


def report_command(args: argparse.Namespace) -> int:
    from hgsearch.analysis.report import write_report

    df = load(args.results)
    path = write_report(args.results, df, objectives=_objectives(args))
    print(f"wrote {path}")
    return 0


def _pct(value: object) -> str:
    import pandas as pd

    v = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return "-" if pd.isna(v) else f"{float(v) * 100:.2f}%"


def _ratio(value: object) -> str:
    import pandas as pd

    v = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return "-" if pd.isna(v) else f"{float(v):.3f}"
