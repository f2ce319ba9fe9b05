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
    baseline: true          # also train the unregularized, unpruned network (METHOD.md part 4)
    keep_checkpoints: false # keep a trial's checkpoints once its row is written
    share_dense: true       # trials whose dense keys are equal reuse one trained network

A ladder (one at most, on a prune or finetune key): each trained network serves every value,
each its own trial and row, all within num_samples. With a baseline, searched trials get
``early_stop: true`` (the baseline never stops); ``fixed: {early_stop: false}`` turns it off.
Every key is checked against hgsearch.config's trial keys; every problem is reported at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hgsearch import config
from hgsearch.errors import UserError
from hgsearch.objectives import DIRECTIONS
from hgsearch.search.baseline import early_stop_default, early_stop_notes, parse_baseline
from hgsearch.search.ladder import ladder_notes, parse_ladder
from hgsearch.search.samplers import parse_sampler, sampler_notes
from hgsearch.search.space import (
    DISTRIBUTIONS,
    MODIFIERS,
    SECTIONS,
    SET_BY_SWEEP,
    Param,
    Space,
)
from hgsearch.search.space import key_problem as _key_problem

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
    data = config.read_config_file(path)    # UserError if unreadable or not a mapping
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
        self.failed: set[str] = set()     # searched keys already reported as wrong

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
        params = self.search(data.get("search", {}), fixed)
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
                     share_dense=shared, notes=(*sampler_notes(sampler, params, num_samples),
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

    def search(self, raw: Any, fixed: dict) -> list[Param]:
        if not isinstance(raw, Mapping) or not raw:
            self.bad("search", "expected a mapping of at least one trial key to its "
                     "distribution, e.g. lam: {loguniform: [1.0e-6, 1.0e-2]}")
            return []
        params: list[Param] = []
        for key, spec in raw.items():
            param = self.param(str(key), spec, fixed, params)
            first = next((p.key for p in params if p.kind == "ladder"), None)
            if param is not None and param.kind == "ladder" and first is not None:
                self.bad(f"search.{key}", f"only one key may be a ladder; {first} is one")
                param = None
            if param is not None:
                params.append(param)
            else:
                self.failed.add(str(key))
        return params

    def param(self, key: str, spec: Any, fixed: dict, earlier: list[Param]) -> Param | None:
        where = f"search.{key}"
        if key not in config.FIELDS:
            self.bad(where, "unknown trial key; `hgsearch keys` lists the allowed keys")
            return None
        if key in SET_BY_SWEEP:
            self.bad(where, "is set by the sweep for each trial; it cannot be searched")
            return None
        if not isinstance(spec, Mapping):
            self.bad(where, "expected a mapping such as {uniform: [low, high]} or "
                     "{choice: [a, b]}; distributions: " + ", ".join(DISTRIBUTIONS))
            return None
        kinds = [k for k in spec if k in DISTRIBUTIONS]
        unknown = [k for k in spec if k not in DISTRIBUTIONS and k not in MODIFIERS]
        for k in unknown:
            self.bad(where, f"unknown entry {k!r}; allowed: "
                     + ", ".join(DISTRIBUTIONS + MODIFIERS))
        if unknown and not kinds:
            return None
        if len(kinds) != 1:
            self.bad(where, "give exactly one distribution of " + ", ".join(DISTRIBUTIONS))
            return None
        kind = kinds[0]
        when = self.when(where, spec.get("when"), fixed, earlier)
        if key in fixed and not when:
            self.bad(where, "is also under fixed; a key may be both only when searched under "
                     "a condition (when:)")
        type_name = config.type_name(key)
        if kind == "ladder":
            if "log" in spec or "step" in spec:
                self.bad(where, "log and step apply to uniform, loguniform and int only")
            return parse_ladder(key, spec["ladder"], when, lambda m: self.bad(where, m))
        if kind == "choice":
            choices = self.choices(where, key, spec["choice"])
            if "log" in spec or "step" in spec:
                self.bad(where, "log and step apply to uniform, loguniform and int only")
            return Param(key, kind, choices=choices, when=when) if choices else None
        wanted = "int" if kind == "int" else "float"
        if type_name != wanted:
            hint = "int" if type_name == "int" else "uniform, loguniform"
            if type_name not in ("int", "float"):
                hint = "choice"
            self.bad(where, f"{kind} needs a {wanted} key; {key} is {type_name}: use {hint}")
            return None
        bounds = self.bounds(where, key, kind, spec[kind])
        if bounds is None:
            return None
        log = kind == "loguniform" or spec.get("log") is True
        if "log" in spec and (kind != "int" or not isinstance(spec["log"], bool)):
            self.bad(where, "log: true|false applies to int only (use loguniform for floats)")
        if log and bounds[0] <= 0:
            self.bad(where, f"a log scale needs low > 0, got {bounds[0]:g}")
            return None
        step = self.step(where, kind, spec.get("step"), bounds, log)
        return Param(key, kind, low=bounds[0], high=bounds[1], log=log, step=step, when=when)

    def bounds(self, where: str, key: str, kind: str, raw: Any) -> tuple | None:
        if not (isinstance(raw, list) and len(raw) == 2):
            self.bad(where, f"{kind} expects [low, high]")
            return None
        values = []
        for bound in raw:
            ok = (isinstance(bound, int) if kind == "int" else isinstance(bound, (int, float)))
            if isinstance(bound, bool) or not ok:
                what = "integers" if kind == "int" else "numbers"
                self.bad(where, f"{kind} bounds must be {what}, got {bound!r}")
                return None
            values.append(int(bound) if kind == "int" else float(bound))
        low, high = values
        problems = [p for p in (config.check(key, low), config.check(key, high)) if p]
        for p in problems:
            self.bad(where, f"range [{low:g}, {high:g}] leaves the key's allowed range: {p}")
        if not low < high:
            self.bad(where, f"{kind} [{low:g}, {high:g}]: low must be below high")
            return None
        return None if problems else (low, high)

    def step(self, where: str, kind: str, raw: Any, bounds: tuple, log: bool) -> Any:
        if raw is None:
            return None
        if kind == "loguniform" or log:
            self.bad(where, "step cannot be combined with a log scale")
            return None
        ok = isinstance(raw, int) if kind == "int" else isinstance(raw, (int, float))
        if isinstance(raw, bool) or not ok or raw <= 0:
            self.bad(where, f"step must be a positive {'integer' if kind == 'int' else 'number'}")
            return None
        span = bounds[1] - bounds[0]
        if not math.isclose(span / raw, round(span / raw), abs_tol=1e-9):
            self.bad(where, f"step {raw:g} must divide high - low = {span:g}")
            return None
        return raw

    def choices(self, where: str, key: str, raw: Any) -> tuple:
        if not isinstance(raw, list) or not raw:
            self.bad(where, "choice expects a non-empty list of values")
            return ()
        out = []
        for value in raw:
            problem = _key_problem(key, value)
            if problem:
                self.bad(where, f"choice {problem}")
                continue
            out.append(config.coerce(key, value))
        if len(set(out)) != len(out):
            self.bad(where, "choice lists a value twice")
            return ()
        return tuple(out) if len(out) == len(raw) else ()

    def when(self, where: str, raw: Any, fixed: dict, earlier: list[Param]) -> tuple:
        if raw is None:
            return ()
        if not isinstance(raw, Mapping) or not raw:
            self.bad(f"{where}.when", "expected a mapping {key: value} or {key: [values]}")
            return ()
        searched = {p.key: p for p in earlier}
        out = []
        for key, allowed in raw.items():
            if key not in config.FIELDS:
                self.bad(f"{where}.when", f"unknown trial key {key!r}")
                continue
            if key not in searched and key not in fixed:
                if key not in self.failed:    # else its own problem is reported already
                    self.bad(f"{where}.when", f"{key} must be searched above this key or fixed")
                continue
            values = allowed if isinstance(allowed, list) else [allowed]
            coerced = []
            for value in values:
                problem = _key_problem(key, value)
                param = searched.get(key)
                if not problem and param is not None and param.kind == "choice" \
                        and config.coerce(key, value) not in param.choices:
                    problem = (f"{key}={value!r} is not among its choices "
                               + ", ".join(str(c) for c in param.choices))
                if problem:
                    self.bad(f"{where}.when", problem)
                else:
                    coerced.append(config.coerce(key, value))
            if coerced:
                out.append((key, tuple(coerced)))
        return tuple(out)

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
