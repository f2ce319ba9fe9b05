"""``hgsearch sweep`` and ``hgsearch validate``: run a search, check search-space files."""

from __future__ import annotations

import argparse

from hgsearch.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sweep`` and ``validate`` to the ``hgsearch`` command."""
    p = subparsers.add_parser(
        "sweep", help="run a hyperparameter search (Ray Tune + Optuna) from a search-space file",
        description="Run, or with --resume continue, the sweep NAME of a search-space file. "
                    "Rows go to RESULTS/NAME/trials/, the Optuna study to RESULTS/NAME/optuna.db.")
    p.add_argument("space", nargs="?", metavar="SPACE",
                   help="search-space YAML (default: search_spaces/demo.yaml)")
    p.add_argument("--name", help="sweep name and folder under --results (default: SPACE's "
                   "file name without .yaml)")
    p.add_argument("--num-samples", type=int, metavar="N", help="searched trials (overrides "
                   "num_samples of SPACE; the baseline comes on top)")
    p.add_argument("--max-concurrent", type=int, metavar="K", help="trials running at once "
                   "(overrides max_concurrent of SPACE)")
    p.add_argument("--address", metavar="ADDR", help="join the Ray cluster at ADDR "
                   "(host:port); default: start Ray on this machine with all its cores")
    p.add_argument("--results", default="results", metavar="DIR",
                   help="folder holding the sweeps (default: results)")
    p.add_argument("--storage", metavar="URI", help="where Ray Tune keeps trial checkpoints and "
                   "its state: a folder every node shares or a URI Ray and pyarrow accept "
                   "(s3://..., gs://...); default: $HGSEARCH_STORAGE, else the results folder")
    p.add_argument("--resume", action="store_true", help="continue the sweep --name after an "
                   "interruption; finished trials are kept, not rerun")
    p.add_argument("--mlflow", metavar="DIR_OR_URI", help="also log each trial as an MLflow run "
                   "(a folder: a local SQLite store, no server; or a tracking URI)")
    p.add_argument("--tensorboard", metavar="DIR", help="also write each trial's per-epoch "
                   "curves as TensorBoard event files under DIR")
    p.add_argument("--progress-every", type=float, metavar="SECONDS",
                   help="how often the running trials' phase, epoch and accuracy are shown: "
                   "the table's refresh in a terminal (default 2); otherwise (a pipe, a file) "
                   "the most often a running trial gets a line besides one at each phase "
                   "change (default 30)")
    p.add_argument("--plain", action="store_true", help="plain lines even in a terminal (no "
                   "table redrawn in place)")
    p.set_defaults(func=sweep_command)

    p = subparsers.add_parser(
        "validate", help="check search-space files; every problem is reported, one line each")
    p.add_argument("files", nargs="+", metavar="FILE", help="search-space YAML files")
    p.set_defaults(func=validate_command)


def sweep_command(args: argparse.Namespace) -> int:
    """Run or resume the sweep; exit 1 when it stopped with trials not ended."""
    from hgsearch.search.driver import run_sweep  # Ray and Optuna load only for this command
    from hgsearch.trackers import make_trackers

    result = run_sweep(args.space, name=args.name, results=args.results,
                       num_samples=args.num_samples, max_concurrent=args.max_concurrent,
                       address=args.address, resume=args.resume,
                       storage=args.storage,
                       trackers=make_trackers(mlflow=args.mlflow, tensorboard=args.tensorboard),
                       live=False if args.plain else None, progress_every=args.progress_every)
    return 0 if result.complete else 1


def validate_command(args: argparse.Namespace) -> int:
    """Describe each valid file; then raise every problem of the others, one line each."""
    from hgsearch.search.cost import describe_cost
    from hgsearch.search.space_file import load_space

    problems: list[str] = []
    for path in args.files:
        try:
            space = load_space(path)
        except UserError as err:
            problems.extend(err.problems)
            continue
        print("\n".join([*space.describe(), describe_cost(space)]))
    if problems:
        raise UserError(*problems)
    return 0
