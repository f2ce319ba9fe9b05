"""``hgsearch trial`` and ``hgsearch keys``: one trial, and the keys that configure it."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``trial`` and ``keys`` to the ``hgsearch`` command."""
    p = subparsers.add_parser("trial", help="run one trial: HGSR training, pruning, "
                              "fine-tuning -> a row")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML mapping of trial keys")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="trial keys (after --config); `hgsearch keys` lists them")
    p.add_argument("--out", metavar="DIR", help="results folder (the key out_dir; default results)")
    p.set_defaults(func=trial_command)

    p = subparsers.add_parser("keys", help="list every trial key with its type, default and "
                              "meaning")
    p.set_defaults(func=keys_command)


def trial_command(args: argparse.Namespace) -> int:
    """Run the trial; exit 1 when it did not end ``ok`` (its row is written all the same)."""
    from hgsearch.config import compose_config

    cfg = compose_config(config_file=args.config, assignments=args.set or [], out_dir=args.out)
    from hgsearch.results_layout import ResultsFolder
    from hgsearch.trial import run_trial  # torch is imported only once the input is valid

    row = run_trial(cfg)
    print(f"row written to {ResultsFolder(row['out_dir']).row(row['trial_id'])}")
    return 0 if row["status"] == "ok" else 1


def keys_command(args: argparse.Namespace) -> int:
    """Print one aligned line per trial key: name, type, default, meaning."""
    from hgsearch.config import key_table

    rows = key_table()
    width = max(len(k) for k, *_ in rows)
    type_width = max(len(t) for _, t, *_ in rows)
    for key, kind, default, meaning in rows:
        print(f"{key:<{width}}  {kind:<{type_width}}  {default:<12}  {meaning}")
    return 0
