"""The code map (docs/development.md, "Where things are") names files that exist and say what
the map says they hold, and leaves no module of the package out."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _map_lines() -> list[str]:
    text = (ROOT / "docs" / "development.md").read_text()
    block = text.split("## Where things are", 1)[1].split("```", 2)[1]
    return [line for line in block.splitlines() if "hgsearch/" in line]


def _named_files(line: str) -> list[Path]:
    """Every file a map line names: full paths, and bare names beside the last folder named."""
    files, folder = [], None
    for token in re.findall(r"[\w/.]+\.py", line):
        path = ROOT / token if "/" in token else (folder / token if folder else None)
        assert path is not None, f"{token}: a bare file name before any folder in {line!r}"
        files.append(path)
        folder = path.parent
    return files


def test_every_file_the_map_names_exists():
    lines = _map_lines()
    assert len(lines) >= 30   # the map, not an empty block
    missing = [str(p.relative_to(ROOT)) for line in lines for p in _named_files(line)
               if not p.is_file()]
    assert not missing


def test_every_module_of_the_package_is_on_the_map_or_under_a_named_folder():
    named = {p for line in _map_lines() for p in _named_files(line)}
    # a subpackage named once covers its other modules; the package's own modules are each named
    folders = {p.parent for p in named} - {ROOT / "hgsearch"}
    for path in (ROOT / "hgsearch").rglob("*.py"):
        if path.name == "__main__.py" or path == ROOT / "hgsearch" / "__init__.py":
            continue   # entry points and the package's public names, not stages
        assert path in named or path.parent in folders, f"{path.relative_to(ROOT)} not on the map"


def test_the_phases_the_map_names_are_functions_of_phases_py():
    line = next(x for x in _map_lines() if "hgsearch/phases.py" in x)
    phases = re.search(r"\(([^)]*)\)", line).group(1).replace(" ", "").split(",")
    tree = ast.parse((ROOT / "hgsearch" / "phases.py").read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert phases and set(phases) <= functions
