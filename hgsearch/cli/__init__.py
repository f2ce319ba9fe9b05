"""The ``hgsearch`` command: one parser, one module per command group.

Each command parses its arguments, calls one library function and prints; a user error (a
``UserError`` or a usage error) is one line on stderr and exit status 2, never a traceback.
The command modules import only argparse at the top: ``hgsearch --help`` loads neither torch
nor Ray, and each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from hgsearch import __version__
from hgsearch.cli import analysis, bench, predict, search, trial
from hgsearch.errors import UserError

# The order `hgsearch --help` lists them in: the pipeline a user follows.
_GROUPS = (trial.register, search.register, analysis.register, predict.register,
           bench.register)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2 like every other user error.

    Subcommand parsers are made of the same class (argparse's default parser_class).
    """

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("hgsearch").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"hgsearch: error: {where}{' '.join(message.split())}; see "
                  f"`{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``hgsearch`` parser with every command; each sets ``func`` to its handler."""
    parser = Parser(
        prog="hgsearch",
        description="Hyperparameter search for filter pruning with hierarchical group sparse "
                    "regularization (Mitsuno & Kurita, ICPR 2020).")
    parser.add_argument("--version", action="version", version=f"hgsearch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _GROUPS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default: ``sys.argv[1:]``); return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        for line in err.problems or [str(err)]:
            print(f"hgsearch: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hgsearch: interrupted", file=sys.stderr)
        return 130
