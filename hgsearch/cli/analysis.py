"""``hgsearch front``, ``select`` and ``report``: a results folder's front, one model, a page."""

from __future__ import annotations

import argparse
import sys

from hgsearch.errors import UserError

UNITS = ("accuracy: top-1 in % (acc_* validation, test_acc_* test); ratios: fraction of the "
         "dense network; MACs: multiply-accumulates")


def register(subparsers: argparse._SubParsersAction) -> None:
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
    p.add_argument("--confirm", type=int, metavar="K", help="first re-run the chosen trial, "
                   "its baseline and its controls with seeds seed+1..seed+K (on a local Ray, "
                   "the sweep's resources; only the seeds not yet run) and report the "
                   "differences paired by seed with their standard errors")
    p.set_defaults(func=select_command)

    p = subparsers.add_parser("report", help="write RESULTS/report/index.html",
                              description="Write a self-contained HTML report of RESULTS.")
    p.add_argument("results", metavar="RESULTS", help="results folder (holds trials/)")
    p.add_argument("--objectives", help=objectives_help)
    p.set_defaults(func=report_command)



def _warn_skipped(file: str, reason: str) -> None:
    print(f"hgsearch: warning: skipped {file}: {reason}", file=sys.stderr)


def front_command(args: argparse.Namespace) -> int:
    """Print the front as a table, then what it was taken from and the units."""
    from hgsearch.analysis.folder import front_of
    from hgsearch.analysis.front import left_out
    from hgsearch.analysis.select_trial import candidates_text

    front = front_of(args.results, objectives=args.objectives, on_skipped=_warn_skipped)
    print(front.table.to_string(index=False))
    names = ", ".join(f"{n} {d}" for n, d in front.objectives)
    print(f"\n{left_out(front.usable, front.excluded)} {len(front.table)} of them on the Pareto "
          f"front ({names}); `hgsearch select` chooses among "
          f"{candidates_text(front.usable, front.baselines)}.")
    print(f"searched keys: {', '.join(front.keys) or 'none'}; acc_dense, acc_pruned, acc_final: "
          "validation accuracy after HGSR training, right after pruning, after fine-tuning")
    if front.controls is not None:
        print("\ncontrols of the front's trials (trained from scratch at its size; never on the "
              "front; +-: binomial standard error of acc_final):")
        print(front.controls.to_string(index=False))
    _print_cautions(front.cautions)
    print(UNITS)
    return 0


def _print_cautions(cautions: list[str]) -> None:
    for line in cautions:
        print(f"warning: {line}")


def select_command(args: argparse.Namespace) -> int:
    """Choose, export and print the chosen trial's figures, the reason and the files."""
    from hgsearch.analysis.folder import select_and_export

    misplaced = [flag for flag, value, rule in (
        ("--budget", args.budget, "budget"), ("--budget-column", args.budget_column, "budget"),
        ("--max-drop", args.max_drop, "max-drop"), ("--objectives", args.objectives, "knee"))
        if value is not None and args.rule != rule]
    if misplaced:
        raise UserError(f"{misplaced[0]} does not apply to --rule {args.rule}")
    settings = {"rule": args.rule, "objectives": args.objectives, "budget": args.budget,
                "budget_column": args.budget_column or "params_ratio",
                "max_drop": args.max_drop}
    if args.confirm is not None:
        from hgsearch.analysis.folder import choose
        from hgsearch.search.confirm import check_count, run_confirmation

        check_count(args.confirm)
        chosen = choose(args.results, **settings, on_skipped=_warn_skipped)
        run_confirmation(args.results, chosen.row, args.confirm)
    done = select_and_export(args.results, **settings, onnx=not args.no_onnx,
                             on_skipped=_warn_skipped)
    selection, row = done.selection, done.selection.row
    print(f"selected {selection.trial_id} (rule {selection.rule})")
    print(f"  validation accuracy {_pct(row.get('acc_final'))}, "
          f"test accuracy {_pct(row.get('test_acc_final'))}")
    print(f"  validation accuracy dense {_pct(row.get('acc_dense'))}, right after pruning "
          f"{_pct(row.get('acc_pruned'))}, after fine-tuning {_pct(row.get('acc_final'))}")
    print(f"  parameters {_ratio(row.get('params_ratio'))} of dense, "
          f"MACs {_ratio(row.get('macs_ratio'))} of dense (multiply-accumulates)")
    print(f"  why: {selection.reason}")
    for line in [*done.controls, *done.confirmation]:
        print(line)
    files = ", ".join(sorted(p.name for p in done.folder.iterdir()))
    print(f"  exported to {done.folder}/ ({files})")
    if done.report is not None:
        print(f"  updated {done.report}")
    _print_cautions(done.cautions)
    return 0


def report_command(args: argparse.Namespace) -> int:
    """Write the report and print its path."""
    from hgsearch.analysis.folder import report_of

    print(f"wrote {report_of(args.results, objectives=args.objectives, on_skipped=_warn_skipped)}")
    return 0


def _number(value: object) -> float | None:
    """``value`` as a float; None when it is missing or not a number (printed as '-')."""
    import pandas as pd

    v = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return None if pd.isna(v) else float(v)


def _pct(value: object) -> str:
    v = _number(value)
    return "-" if v is None else f"{v * 100:.2f}%"


def _ratio(value: object) -> str:
    v = _number(value)
    return "-" if v is None else f"{v:.3f}"
