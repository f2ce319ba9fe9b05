"""The documentation's generated reference pages hold every key and command, and the hand-written
search-space page names every section, distribution and sampler the parser accepts.

The pages come from docs/hooks/reference_pages.py (an MkDocs hook); `make lint` builds the whole
site with ``mkdocs build --strict``. Here the generators are checked against a second reading of
the same sources: ``hgsearch keys``'s table and the parser's own ``--help`` text.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from hgsearch.cli import build_parser
from hgsearch.config import FIELDS, key_table
from hgsearch.inapplicable import INAPPLICABLE_RULES

ROOT = Path(__file__).resolve().parents[1]


def _hook():
    spec = importlib.util.spec_from_file_location(
        "reference_pages", ROOT / "docs" / "hooks" / "reference_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(page: str) -> dict[str, list[str]]:
    """First cell (code span stripped) -> the row's cells, for every table row of a page."""
    rows: dict[str, list[str]] = {}
    for line in page.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = cells
    return rows


def test_the_trial_keys_page_has_every_key_with_its_default_and_meaning():
    rows = _rows(_hook().trial_keys_page().split("## When a key does not apply")[0])
    table = key_table()
    assert len(table) == len(FIELDS) > 40
    for key, kind, default, meaning in table:
        cells = rows[key]
        assert cells[1] == kind.split(" ")[0]            # bool, int, float or str
        assert cells[2] == f"`{default}`"
        assert cells[4] == ("yes" if FIELDS[key].metadata["dense"] else "")
        assert cells[5].replace("\\|", "|").replace("&lt;", "<").replace("&gt;", ">") \
            .replace("&amp;", "&") == meaning


def test_the_trial_keys_page_lists_every_inapplicability_rule():
    page = _hook().trial_keys_page()
    for _applies, keys, why in INAPPLICABLE_RULES:
        assert f"| {', '.join(f'`{k}`' for k in keys)} |" in page, why


def test_the_cli_page_has_every_command_and_every_option_help_shows():
    page = _hook().cli_page()
    parser = build_parser()
    listing = parser.format_help().split("COMMAND\n", 1)[1].split("\n\n", 1)[0]
    commands = re.findall(r"^ {4}([a-z]+) ", listing, re.M)   # `hgsearch --help`'s own list
    assert len(commands) >= 9
    for command in commands:
        assert f"\n## {command}\n" in page
        section = page.split(f"\n## {command}\n", 1)[1].split("\n## ", 1)[0]
        sub = build_parser()._subparsers._group_actions[0].choices[command]
        options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", sub.format_help())) - {"--help"}
        for option in options:
            assert f"`{option}" in section or f", {option}" in section, (command, option)


def test_the_search_space_page_names_every_section_distribution_and_sampler():
    from hgsearch.search.samplers import BUILT_IN
    from hgsearch.search.space import DISTRIBUTIONS, MODIFIERS, SECTIONS

    page = (ROOT / "docs" / "reference" / "search-space.md").read_text()
    for name in (*SECTIONS, *DISTRIBUTIONS, *MODIFIERS, *BUILT_IN, "auto"):
        assert f"`{name}`" in page, name


def test_no_page_of_the_docs_refers_to_a_path_outside_the_repository():
    for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"),
                 *(ROOT / "search_spaces").glob("*.yaml")]:
        text = path.read_text()
        assert "shared/" not in text and "METHOD.md" not in text, path
