"""The ``hgsearch`` command: parse, call one function, print; user errors exit 2, no traceback."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from hgsearch import __version__
from hgsearch.errors import UserError

# Subcommands that other modules register: (module, function). A module that is missing in a
# partial install simply contributes no commands.
_REGISTRARS = (
    ("hgsearch.sweep_cli", "register_commands"),
    ("hgsearch.analysis.commands", "register_commands"),
    ("hgsearch.bench.command", "register_commands"),
    ("hgsearch.predict", "register"),
)


def _cmd_keys(args: argparse.Namespace) -> int:
    from hgsearch.config import key_table

    rows = key_table()
    width = max(len(k) for k, *_ in rows)
    type_width = max(len(t) for _, t, *_ in rows)
    for key, kind, default, meaning in rows:
        print(f"{key:<{width}}  {kind:<{type_width}}  {default:<12}  {meaning}")
    return 0


def _cmd_trial(args: argparse.Namespace) -> int:
    from hgsearch.config import make_config, parse_assignments, read_config_file

    values = read_config_file(args.config) if args.config else {}
    values.update(parse_assignments(args.set or []))
    if args.out:
        values["out_dir"] = args.out
    cfg = make_config(values)  # every problem reported before any work starts

    from hgsearch.trial import run_trial  # torch is imported only once the input is valid

    row = run_trial(cfg)
    out = f"{row['out_dir']}/trials/{row['trial_id']}.parquet"
    print(f"row written to {out}")
    return 0 if row["status"] == "ok" else 1


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2 like every other user error.

    Subcommand parsers are made of the same class (argparse's default parser_class).
    """

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("hgsearch").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"hgsearch: error: {where}{' '.join(message.split())}; see "
                  f"`{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hgsearch",
        description="Hyperparameter search for filter pruning with hierarchical group sparse "
                    "regularization (Mitsuno & Kurita, ICPR 2020).")
    parser.add_argument("--version", action="version", version=f"hgsearch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("trial", help="run one trial: HGSR training, pruning, fine-tuning -> a row")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML mapping of trial keys")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="trial keys (after --config); `hgsearch keys` lists them")
    p.add_argument("--out", metavar="DIR", help="results folder (the key out_dir; default results)")
    p.set_defaults(func=_cmd_trial)

    p = sub.add_parser("keys", help="list every trial key with its type, default and meaning")
    p.set_defaults(func=_cmd_keys)

    for module, function in _REGISTRARS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue
        getattr(mod, function)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        for line in err.problems or [str(err)]:
            print(f"hgsearch: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hgsearch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
