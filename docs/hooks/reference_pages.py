"""MkDocs hook: the reference pages written from the code at build time, so they cannot drift.

- ``reference/trial-keys.md`` from ``hgsearch.config`` (``TrialConfig``'s field metadata: type,
  default, allowed values, meaning, group, whether the key changes the dense network) and
  ``INAPPLICABLE_RULES`` (when a key does not apply);
- ``reference/cli.md`` from the argparse parser that ``hgsearch`` itself runs
  (``hgsearch.cli.build_parser``).

Neither page exists as a file in ``docs/``: ``on_files`` adds them to the build. The functions
``trial_keys_page`` and ``cli_page`` return the Markdown, so tests can read it without MkDocs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:   # this checkout's hgsearch, not another one installed elsewhere
    sys.path.insert(0, str(ROOT))

TRIAL_KEYS = "reference/trial-keys.md"
CLI = "reference/cli.md"

# Headings of TrialConfig's key groups (metadata ``group``), in the order the dataclass uses.
GROUP_TITLES = {
    "run": "Identity, device and reproducibility",
    "data": "Data",
    "train": "Network and dense training",
    "hgsr": "The regularizer (method part 1)",
    "stop": "Early stopping of the dense phase",
    "prune": "Scoring and pruning (method parts 2 and 3)",
    "finetune": "Fine-tuning the compact network",
    "measure": "Measurement",
}


def _cell(text: object) -> str:
    """Text safe inside one Markdown table cell: no HTML outside code spans, no column breaks."""
    parts = str(text).replace("\n", " ").split("`")
    for i in range(0, len(parts), 2):   # the parts outside `code spans`
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).replace("|", "\\|")


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _code(text: object) -> str:
    return f"`{text}`" if str(text) else ""


def _allowed(meta: dict) -> str:
    if meta["choices"]:
        return ", ".join(_code(c) for c in meta["choices"])
    if meta["lo"] is not None:
        return f"{_number(meta['lo'])} to {_number(meta['hi'])}"
    return ""


def trial_keys_page() -> str:
    """Every trial key, grouped as ``TrialConfig`` declares them, and when each does not apply."""
    from hgsearch.config import FIELDS, type_name
    from hgsearch.inapplicable import INAPPLICABLE_RULES

    lines = [
        "# Trial keys",
        "",
        "Every key of a trial, as `hgsearch.config.TrialConfig` declares it; this page is",
        "generated from that class when the site is built (`hgsearch keys` prints the same",
        "list). One key means one thing everywhere: `hgsearch trial --set KEY=VALUE`, a YAML",
        "config, a search space's `fixed` and `search` sections, and a column of every row.",
        "",
        "*Dense* marks the keys that change the network HGSR training produces: trials equal in",
        "all of them share one trained network ([economy](../guides/economy.md)).",
        "",
    ]
    groups: dict[str, list[str]] = {}
    for name, f in FIELDS.items():
        groups.setdefault(f.metadata["group"], []).append(name)
    unknown = set(groups) - set(GROUP_TITLES)
    if unknown:   # a new group in config.py must get a heading here, not vanish
        raise ValueError(f"trial-key groups without a heading: {sorted(unknown)}")
    for group, title in GROUP_TITLES.items():
        if group not in groups:
            continue
        lines += [f"## {title}", "", "| key | type | default | allowed | dense | meaning |",
                  "|---|---|---|---|---|---|"]
        for name in groups[group]:
            f = FIELDS[name]
            meta = f.metadata
            lines.append("| " + " | ".join([
                f"`{name}`", type_name(name), _code(repr(f.default)), _cell(_allowed(meta)),
                "yes" if meta["dense"] else "", _cell(meta["help"])]) + " |")
        lines.append("")
    lines += [
        "## When a key does not apply",
        "",
        "A key that has no effect on a trial, given its other keys, is null in the trial's row",
        "(never an unused default) and is not proposed by a search. The rules",
        "(`hgsearch.inapplicable.INAPPLICABLE_RULES`):",
        "",
        "| keys that do not apply | why |",
        "|---|---|",
    ]
    for _applies, keys, why in INAPPLICABLE_RULES:
        lines.append(f"| {', '.join(_code(k) for k in keys)} | {_cell(why)} |")
    return "\n".join(lines) + "\n"


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand, in the order ``--help`` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                name += " " + (action.metavar or action.dest.upper())
        else:
            name = action.metavar or action.dest
        detail = action.help or ""
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            detail += " (one of: " + ", ".join(str(c) for c in action.choices) + ")"
        if action.required and action.option_strings:
            detail += " (required)"
        rows.append(f"| `{name}` | {_cell(detail)} |")
    return rows


def cli_page() -> str:
    """Every ``hgsearch`` command with its usage and options, read from the real parser."""
    import os

    from hgsearch.cli import build_parser

    os.environ.setdefault("COLUMNS", "100")   # argparse wraps usage lines at the terminal width
    parser = build_parser()
    lines = [
        "# Command line",
        "",
        "Every `hgsearch` command, generated from the parser the command runs",
        "(`hgsearch.cli.build_parser`) when the site is built; `hgsearch COMMAND --help` prints",
        "the same. A usage error, like every user error, is one line on stderr and exit status",
        "2.",
        "",
        "```text",
        parser.format_usage().strip(),
        "```",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    commands = _subcommands(parser)
    lines += [f"| [`{name}`](#{name}) | {_cell(help_)} |" for name, help_, _ in commands]
    lines.append("")
    for name, help_, sub in commands:
        lines += [f"## {name}", "", _cell(sub.description or help_), "", "```text",
                  sub.format_usage().strip(), "```", ""]
        rows = _option_rows(sub)
        if rows:
            lines += ["| argument | meaning |", "|---|---|", *rows, ""]
    return "\n".join(lines) + "\n"


PAGES = {TRIAL_KEYS: trial_keys_page, CLI: cli_page}


def on_files(files, config):   # MkDocs calls it with its Files and config
    """Add the generated pages to the build (they are not files in docs/)."""
    from mkdocs.structure.files import File

    for src_uri, make in PAGES.items():
        files.append(File.generated(config, src_uri, content=make()))
    return files
