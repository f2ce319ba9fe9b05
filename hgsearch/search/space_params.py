"""The ``search:`` section of a space file: each searched key's distribution and condition.

``SearchParser`` turns ``{lam: {loguniform: [1e-6, 1e-2]}, reg_outer: {choice: [sqrt, square],
when: {reg_levels: 2}}, ...}`` into ``Param``s, checking every value against the trial key's
type and range (hgsearch.config). Problems go to the ``bad(where, message)`` callback of the
file's parser, so one read reports all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from hgsearch import config
from hgsearch.search.ladder import parse_ladder
from hgsearch.search.space import DISTRIBUTIONS, MODIFIERS, SET_BY_SWEEP, Param
from hgsearch.search.space import key_problem as _key_problem


class SearchParser:
    """Parses the searched keys in file order (a ``when:`` may name only keys above it)."""

    def __init__(self, bad: Callable[[str, str], None]) -> None:
        self.bad = bad
        self.failed: set[str] = set()     # searched keys already reported as wrong

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
