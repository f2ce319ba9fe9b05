"""The ``hgsearch`` parser: every usage error is one line and exit 2; --help stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hgsearch import __version__
from hgsearch.cli import main
from tests.cli.helpers import run_cli


def _commands() -> list[str]:
    from hgsearch.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(sub.choices)


@pytest.mark.parametrize("argv", [
    [], ["nope"], ["--bogus"],
    ["select", "somewhere", "--rule", "knees"],
    ["sweep", "--num-samples", "two"],
    *[[command, "--no-such-option"] for command in _commands()],
])
def test_every_usage_error_is_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith("hgsearch: error: ") and "--help" in err


def test_usage_errors_of_the_installed_command_exit_2_without_usage_text():
    done = run_cli("select", "x", "--rule", "knees")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "hgsearch: error: select: argument --rule: invalid choice: 'knees' (choose from 'knee', "
        "'budget', 'max-drop'); see `hgsearch select --help`"]


# What no command may import before it runs: `hgsearch --help` answers in a fraction of a second.
HEAVY = ("torch", "ray", "optuna", "pandas", "numpy", "pyarrow", "onnx", "onnxruntime", "yaml")
_IMPORTS_OF_HELP = """
import json, sys
from hgsearch.cli import main
try:
    main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
print(json.dumps([code, sorted({m.split(".")[0] for m in sys.modules})]))
"""


@pytest.mark.parametrize("argv", [["--help"], *[[c, "--help"] for c in _commands()]])
def test_help_imports_no_heavy_library(argv):
    done = subprocess.run([sys.executable, "-c", _IMPORTS_OF_HELP, *argv], capture_output=True,
                          text=True, timeout=120)
    code, modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 0, done.stderr
    assert [m for m in HEAVY if m in modules] == []


@pytest.mark.parametrize("module", ["hgsearch", "hgsearch.cli"])
def test_python_dash_m_runs_the_command(module):
    done = run_cli("--version", module=module, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"hgsearch {__version__}", done.stderr
    done = run_cli("nope", module=module, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_the_entry_point_of_pyproject_is_main():
    import importlib
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")   # Python 3.11+

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    target = tomllib.loads(pyproject.read_text())["project"]["scripts"]["hgsearch"]
    module, _, name = target.partition(":")
    assert getattr(importlib.import_module(module), name) is main
