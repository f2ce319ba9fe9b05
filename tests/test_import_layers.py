"""The import-layer contract in pyproject.toml covers every module of the package's top level.

`make lint` runs `lint-imports`, which fails on an import from a lower layer into a higher one;
a module the contract does not name would escape it, so a new one must take its place there.
"""

from __future__ import annotations

from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def _layers() -> set[str]:
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in settings["contracts"] if c["type"] == "layers"]
    return {name.strip() for layer in contract["layers"] for name in layer.split("|")}


def test_every_top_level_module_is_in_a_layer():
    package = REPO / "hgsearch"
    names = {f"hgsearch.{p.stem}" for p in package.glob("*.py") if not p.stem.startswith("__")}
    names |= {f"hgsearch.{p.parent.name}" for p in package.glob("*/__init__.py")}
    assert names - _layers() == set(), "add these to [tool.importlinter]'s layers"
    assert _layers() - names == set(), "the contract names modules that do not exist"
