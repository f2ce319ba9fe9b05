"""Trial keys from a YAML file and ``--set KEY=VALUE`` items: the config of ``hgsearch trial``,
and the reader of every YAML mapping the tool takes (a search space too).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hgsearch.config import TrialConfig, make_config
from hgsearch.errors import UserError


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["lam=1e-3", "arch=resnet56"]`` -> ``{"lam": "1e-3", "arch": "resnet56"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lam=1e-3")
        out[key.strip()] = value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a flat mapping of trial keys."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read ({err.__class__.__name__})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} is not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of trial keys, found {type(data).__name__}")
    return data


def compose_config(*, config_file: str | Path | None = None, assignments: Sequence[str] = (),
                   out_dir: str | None = None) -> TrialConfig:
    """The config of ``hgsearch trial``: a YAML file, then ``KEY=VALUE`` items, then ``out_dir``.

    Later sources override earlier ones; every problem is raised as one UserError.
    """
    values = read_config_file(config_file) if config_file else {}
    values.update(parse_assignments(list(assignments)))
    if out_dir:
        values["out_dir"] = out_dir
    return make_config(values)
