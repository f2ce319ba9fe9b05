"""Search-space files: read, validate and parse into a ``Space``.

A search space is a YAML file with these sections (``search_spaces/demo.yaml`` is a commented
example)::

    fixed:        {dataset: synthetic, arch: resnet20, epochs: 3}     # trial keys held fixed
    search:                                                           # searched trial keys
      lam:        {loguniform: [1.0e-6, 1.0e-2]}
      mix:        {uniform: [0.0, 1.0]}
      score_samples: {int: [16, 256], log: true}
      reg_levels: {choice: [1, 2]}
      reg_outer:  {choice: [sqrt, square], when: {reg_levels: 2}}   # searched only then
      prune_ratio: {ladder: [0.3, 0.5, 0.7]}   # every trained network at each value (ladder.py)
    objectives:   {acc_final: max, params_ratio: min}                 # numeric row columns
    sampler:      {name: tpe, seed: 0, options: {multivariate: true, group: true}}
    num_samples: 8          # searched trials (the baseline comes on top)
    max_concurrent: 2       # trials running at once
    resources: {cpu: 1, gpu: 0}   # per trial; fractions allowed
    retries: 1              # re-runs of a crashed trial
    baseline: true          # also train the unregularized, unpruned network (docs/method.md part 4)
    keep_checkpoints: false # keep a trial's checkpoints once its row is written
    share_dense: true       # trials whose dense keys are equal reuse one trained network
    controls: {kinds: [scratch, uniform], of: selected, max: 1}   # after the search (controls.py)

A ladder (one at most, on a prune or finetune key): each trained network serves every value,
each its own trial and row, all within num_samples. With a baseline, searched trials get
``early_stop: true`` (the baseline never stops); ``fixed: {early_stop: false}`` turns it off.
Every key is checked against hgsearch.config's trial keys; every problem is reported at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hgsearch import config
from hgsearch.config_file import read_config_file
from hgsearch.errors import UserError
from hgsearch.objectives import DIRECTIONS
from hgsearch.search.baseline import early_stop_default, early_stop_notes, parse_baseline
from hgsearch.search.controls import parse_controls
from hgsearch.search.ladder import ladder_notes
from hgsearch.search.samplers import parse_sampler, sampler_notes
from hgsearch.search.space import (
    SECTIONS,
    SET_BY_SWEEP,
    Param,
    Space,
)
from hgsearch.search.space import key_problem as _key_problem
from hgsearch.search.space_params import SearchParser

# --------------------------------------------------------------------------- loading

def find_default_space() -> Path:
    """search_spaces/demo.yaml in the working directory, else beside the package (a checkout)."""
    here = Path(__file__).resolve().parent.parent     # the hgsearch package
    candidates = [Path.cwd() / "search_spaces" / "demo.yaml",
                  here.parent / "search_spaces" / "demo.yaml",
                  here / "search_spaces" / "demo.yaml"]
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise UserError(f"no SPACE given and no demo.yaml found (looked at {looked}); "
                    "pass a search-space file")


def load_space(path: str | Path, *, overrides: Mapping[str, Any] | None = None) -> Space:
    """Read, validate and parse a search-space file; raise UserError naming every problem.

    ``overrides`` replaces top-level sections (the CLI's --num-samples, --max-concurrent).
    """
    data = read_config_file(path)    # UserError if unreadable or not a mapping
    return parse_space({**data, **(overrides or {})}, source=str(path))


def parse_space(data: Mapping[str, Any], *, source: str) -> Space:
    """Validate a search-space mapping and build a Space; raise UserError naming every problem."""
    parser = _Parser(source)
    space = parser.parse(data)
    if parser.problems:
        raise UserError(*parser.problems)
    assert space is not None
    return space


def space_problems(data: Mapping[str, Any], *, source: str) -> list[str]:
    """Every problem of a search-space mapping, one line each (empty when it is valid)."""
    parser = _Parser(source)
    parser.parse(data)
    return parser.problems


class _Parser:
    """Collects every problem of a file instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source, self.problems = source, []

    def bad(self, where: str, message: str) -> None:  # one problem, one line
        self.problems.append(f"{self.source}: {where}: {message}")

    def parse(self, data: Mapping[str, Any]) -> Space | None:
        if not isinstance(data, Mapping):
            self.bad("file", "expected a mapping with sections " + ", ".join(SECTIONS))
            return None
        for key in data:
            if key not in SECTIONS:
                self.bad(str(key), "unknown section; allowed: " + ", ".join(SECTIONS))
        fixed = self.fixed(data.get("fixed", {}))
        params = SearchParser(self.bad).search(data.get("search", {}), fixed)
        objectives = self.objectives(data.get("objectives"))
        sampler = parse_sampler(data.get("sampler", "tpe"), self.bad)
        num_samples = self.integer(data, "num_samples", 8, lo=1)
        max_concurrent = self.integer(data, "max_concurrent", 1, lo=1)
        cpu, gpu = self.resources(data.get("resources", {}))
        if gpu == 0 and fixed.get("device") == "cuda":
            self.bad("fixed.device", "cuda needs resources.gpu > 0 (Ray gives a trial only the "
                     "devices it asked for)")
        retries = self.integer(data, "retries", 0, lo=0)
        baseline = parse_baseline(data.get("baseline", True), fixed, params, self.bad)
        controls = parse_controls(data.get("controls"), self.bad)
        keep, share = (data.get(k, d) for k, d in (("keep_checkpoints", False),
                                                    ("share_dense", True)))
        for key, value in (("keep_checkpoints", keep), ("share_dense", share)):
            if not isinstance(value, bool):
                self.bad(key, f"{value!r}: expected true or false")
        fixed.update(early_stop_default(fixed, params, baseline))
        self.cross_checks(fixed, params)
        if self.problems:
            return None
        shared = share is not False
        return Space(source=self.source, raw=_plain(dict(data)), fixed=fixed,
                     params=tuple(params), objectives=tuple(objectives), sampler=sampler,
                     num_samples=num_samples, max_concurrent=max_concurrent, cpu=cpu, gpu=gpu,
                     retries=retries, baseline=baseline, keep_checkpoints=keep is True,
                     share_dense=shared, controls=controls,
                     notes=(*sampler_notes(sampler, params, num_samples),
                            *ladder_notes(params, num_samples, shared),
                            *early_stop_notes(fixed, params, shared, baseline)))

    # ----------------------------------------------------------------- sections

    def fixed(self, raw: Any) -> dict:
        if not isinstance(raw, Mapping):
            self.bad("fixed", "expected a mapping of trial keys to values")
            return {}
        out = {}
        for key, value in raw.items():
            if key in SET_BY_SWEEP:
                self.bad(f"fixed.{key}", "is set by the sweep for each trial; remove it")
                continue
            problem = _key_problem(key, value)
            if problem:
                self.bad(f"fixed.{key}", problem)
            else:
                out[key] = config.coerce(key, value)
        return out

    def objectives(self, raw: Any) -> list[tuple[str, str]]:
        columns = metric_columns()
        allowed = "numeric row columns: " + ", ".join(columns)
        if not isinstance(raw, Mapping) or not raw:
            self.bad("objectives", "expected a mapping such as {acc_final: max, params_ratio: "
                     "min}; " + allowed)
            return []
        out = []
        for name, direction in raw.items():
            if name not in columns:
                self.bad(f"objectives.{name}", "not a numeric column of a trial's row; "
                         + allowed)
            elif str(direction).lower() not in DIRECTIONS:
                self.bad(f"objectives.{name}", f"direction {direction!r}: use max or min")
            else:
                out.append((str(name), DIRECTIONS[str(direction).lower()]))
        return out

    def integer(self, data: Mapping, key: str, default: int, *, lo: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            self.bad(key, f"{value!r}: expected an integer >= {lo}")
            return default
        return value

    def resources(self, raw: Any) -> tuple[float, float]:
        if not isinstance(raw, Mapping):
            self.bad("resources", "expected {cpu: N, gpu: N} per trial")
            return 1.0, 0.0
        for key in raw:
            if key not in ("cpu", "gpu"):
                self.bad(f"resources.{key}", "unknown resource; allowed: cpu, gpu")
        values = []
        for key, default in (("cpu", 1.0), ("gpu", 0.0)):
            value = raw.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
                    or value != value:
                self.bad(f"resources.{key}", f"{value!r}: expected a number >= 0")
                value = default
            elif value > 1 and not float(value).is_integer():
                # Ray schedules fractions of one device only.
                self.bad(f"resources.{key}", f"{value!r}: above 1 it must be a whole number")
            values.append(float(value))
        if values == [0.0, 0.0]:
            self.bad("resources", "a trial needs some cpu or gpu")
        return values[0], values[1]

    def cross_checks(self, fixed: dict, params: list[Param]) -> None:
        """Checks between keys (config.problems_of) at every searched key's end points.

        Runs on the keys that passed their own checks, so it adds to the problems found so far.
        """
        base = config.problems_of(fixed)
        for problem in base:
            self.bad("fixed", problem)
        for p in params:
            corners = p.choices if p.kind in ("choice", "ladder") else (p.low, p.high)
            for value in corners:
                for problem in config.problems_of({**fixed, p.key: value}):
                    if problem not in base:
                        self.bad(f"search.{p.key}", f"at {p.key}={value!r}: {problem}")


def metric_columns() -> list[str]:
    """The numeric metric columns of a trial's row (hgsearch.results), any of them an objective."""
    import pyarrow as pa

    from hgsearch.results import METRIC_TYPES

    return [name for name, kind in METRIC_TYPES.items() if kind in (pa.float64(), pa.int64())]


def _plain(value: Any) -> Any:
    """A YAML value as JSON-safe plain data (dates and other scalars become strings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
