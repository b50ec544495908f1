"""Loading and validating `slo.yaml` into a `Spec`.

A gate is only as trustworthy as its spec: a typo that silently disables an objective is a
gate that passes forever. So every key is checked, every mistake is collected (not just the
first) and reported as `file:line: what was wrong; what was expected`, with a did-you-mean for
misspelt keys. Line numbers come from PyYAML's node marks (we compose the node tree ourselves
rather than using `safe_load`, which throws them away).

A spec is also untrusted input (it may come from the pull request under test), so loading is
bounded: file size, YAML nodes counted with every alias expanded (a "billion laughs" bomb is
refused after a few thousand, not expanded to gigabytes), nesting depth, recursive aliases and
the number of SLOs; each is refused with file:line before the work is done.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from slo.errors import SpecError
from slo.ingest.kinds import KIND_NAMES

LATENCY_PERCENTILES = {
    "latency_p50": 50.0,
    "latency_p90": 90.0,
    "latency_p95": 95.0,
    "latency_p99": 99.0,
    "latency_max": 100.0,
}
COUNT_OBJECTIVES = ("db_queries", "repeated_queries", "span_count")
OBJECTIVES = (*LATENCY_PERCENTILES, "error_rate", *COUNT_OBJECTIVES)
UNITS = {**dict.fromkeys(LATENCY_PERCENTILES, "ms"), "error_rate": "ratio",
         **dict.fromkeys(COUNT_OBJECTIVES, "count")}

SELECT_KEYS = ("service", "span", "span_regex", "root", "kind", "attributes")
SLO_KEYS = ("name", "select", "objectives", "regression", "description")
TOP_KEYS = ("version", "slos", "regression", "detectors", "gate")
REGRESSION_KEYS = ("latency", "latency_min", "alpha", "min_samples", "error_rate",
                   "db_queries", "repeated_queries")

MAX_SPEC_BYTES = 1 << 20  # a 2,000-SLO spec is ~0.5 MiB
MAX_SLOS = 2000
MAX_NODES = 100_000  # YAML nodes with aliases expanded; ~25 per SLO
MAX_DEPTH = 32  # a spec needs 6 levels

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s)\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_MS_PER = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class Selector:
    """Which spans an SLO is about. Every given field must match (AND)."""

    service: str | None = None
    span: str | None = None
    span_regex: str | None = None
    root: bool | None = None
    kind: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in SELECT_KEYS[:-1]
                             if getattr(self, k) is not None}
        if self.attributes:
            d["attributes"] = dict(self.attributes)
        return d


@dataclass(frozen=True)
class Objective:
    name: str  # one of OBJECTIVES
    budget: float  # ms for latency, 0..1 for error_rate, a count otherwise
    line: int = 0

    @property
    def unit(self) -> str:
        return UNITS[self.name]

    @property
    def percentile(self) -> float | None:
        return LATENCY_PERCENTILES.get(self.name)


@dataclass(frozen=True)
class Regression:
    """Thresholds against a baseline; None switches a comparison off.

    latency: relative slow-down (0.2 = 20%) of the median that fails, only when also
    statistically significant (Mann-Whitney U at `alpha`) and larger than `latency_min_ms`
    in absolute terms, so micro-jitter of sub-millisecond spans never fails a build.
    error_rate: absolute increase (0.01 = one percentage point), also tested for significance.
    db_queries / repeated_queries: increase of the per-request median or maximum count.
    """

    latency: float | None = 0.2
    latency_min_ms: float = 1.0
    alpha: float = 0.01
    min_samples: int = 20
    error_rate: float | None = 0.0
    db_queries: float | None = 0.0
    repeated_queries: float | None = 0.0


@dataclass(frozen=True)
class SLO:
    name: str
    select: Selector
    objectives: tuple[Objective, ...]
    regression: Regression
    description: str = ""
    line: int = 0


@dataclass(frozen=True)
class Spec:
    slos: tuple[SLO, ...]
    detectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: str = "<spec>"
    version: int = 1
    #: `slo gate` settings kept in the spec (see `_gate_settings`); flags override them
    gate: dict[str, Any] = field(default_factory=dict)

    def slo(self, name: str) -> SLO:
        for s in self.slos:
            if s.name == name:
                return s
        raise KeyError(name)


def parse_duration_ms(value: Any) -> float | None:
    """'400ms' -> 400.0, '1.5s' -> 1500.0, '250us' -> 0.25; None when not a duration."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _MS_PER[m.group(2)]
    if value == 0 and not isinstance(value, bool):
        return 0.0
    return None


def parse_percent(value: Any) -> float | None:
    """'1%' -> 0.01; None when not a percentage (a bare 0 is accepted: it is unambiguous)."""
    if isinstance(value, str):
        m = _PERCENT.match(value)
        if m:
            return float(m.group(1)) / 100.0
    if value == 0 and not isinstance(value, bool):
        return 0.0
    return None


# ---------------------------------------------------------------------------------------------
# YAML with line numbers


class _Map(dict[Any, Any]):
    """A mapping that remembers the line of each key (1-based) and its own line."""

    line: int = 0
    key_lines: dict[Any, int]


class _Seq(list[Any]):
    line: int = 0
    item_lines: list[int]


def _plain(node: yaml.Node, constructor: SafeConstructor, problems: list[tuple[int, str]]) -> Any:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)
        out = _Map()
        out.line, out.key_lines = line, {}
        for knode, vnode in node.value:
            key = _plain(knode, constructor, problems)
            if not isinstance(key, str | int | float | bool) and key is not None:
                problems.append((knode.start_mark.line + 1, "a key must be a plain scalar"))
                continue
            if key in out:
                problems.append((knode.start_mark.line + 1,
                                 f"duplicate key {key!r} (first on line {out.key_lines[key]})"))
                continue
            out[key] = _plain(vnode, constructor, problems)
            out.key_lines[key] = knode.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = _Seq(_plain(v, constructor, problems) for v in node.value)
        seq.line, seq.item_lines = line, [v.start_mark.line + 1 for v in node.value]
        return seq
    return constructor.construct_object(node, deep=True)


class _LimitExceeded(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


class _BoundedComposer(Composer):
    """PyYAML's composer, counting what the tree will cost once aliases are expanded.

    `yaml.compose` shares an aliased node, but anything that walks the tree (our `_plain`,
    `safe_load`'s constructor for lists) pays for every expansion: nine levels of nine aliases
    are 387 million nodes from a few hundred bytes. Here each node counts once and each alias
    counts the expanded size and height of what it names, so a bomb, a recursive alias or a
    too deep nesting is refused at its line while composing.
    """

    peek_event: Callable[[], Any]  # from the parser it is mixed with (see `_Loader`)

    def __init__(self) -> None:
        Composer.__init__(self)
        self._nodes = 0
        self._depth = 0
        self._deepest = 0
        self._open: set[str] = set()  # anchors whose node is being composed
        self._cost: dict[str, tuple[int, int]] = {}  # anchor -> (expanded nodes, height)

    def _charge(self, nodes: int, deepest: int, mark: Any) -> None:
        self._nodes += nodes
        self._deepest = max(self._deepest, deepest)
        if self._nodes > MAX_NODES:
            raise _LimitExceeded(mark.line + 1, f"the spec expands to more than {MAX_NODES:,} "
                                 "YAML nodes (counting every alias expanded); a spec needs "
                                 "far fewer: remove the aliases or split the spec")
        if self._deepest > MAX_DEPTH:
            raise _LimitExceeded(mark.line + 1, f"nested more than {MAX_DEPTH} levels deep "
                                 "(counting aliases expanded); a spec needs about 6")

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            assert event.anchor is not None and event.start_mark is not None  # (parser sets both)
            if event.anchor in self._open:
                raise _LimitExceeded(event.start_mark.line + 1, f"recursive alias "
                                     f"*{event.anchor}: it refers to a node that contains it")
            nodes, height = self._cost.get(event.anchor, (1, 1))
            self._charge(nodes, self._depth + height, event.start_mark)
            return super().compose_node(parent, index)  # (an undefined alias is an error)
        anchor = getattr(event, "anchor", None)
        before, outer = self._nodes, self._deepest
        self._depth += 1
        self._charge(1, self._depth, event.start_mark)
        if anchor is not None:
            self._open.add(anchor)
            self._deepest = self._depth
        node = super().compose_node(parent, index)
        if anchor is not None:
            self._open.discard(anchor)
            self._cost[anchor] = (self._nodes - before, self._deepest - self._depth + 1)
            self._deepest = max(outer, self._deepest)
        self._depth -= 1
        return node


try:  # libyaml's event parser when PyYAML was built with it (3x faster)
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover
    _Parser = None  # type: ignore[assignment, misc]  # PyYAML built without libyaml
if _Parser is not None:
    class _Loader(_BoundedComposer, _Parser, SafeConstructor, Resolver):
        """libyaml's event parser under our composer (Composer first: its node methods win)."""

        def __init__(self, text: str):
            _Parser.__init__(self, text)
            _BoundedComposer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
else:  # pragma: no cover - PyYAML without libyaml
    class _Loader(_BoundedComposer, yaml.SafeLoader):  # type: ignore[no-redef]
        def __init__(self, text: str):
            yaml.SafeLoader.__init__(self, text)
            _BoundedComposer.__init__(self)


def _compose(text: str, path: str) -> tuple[Any, list[tuple[int, str]]]:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SPEC_BYTES:
        raise SpecError(f"{path}:1: the spec is {size:,} bytes; at most {MAX_SPEC_BYTES:,} "
                        "are read (a spec of 2,000 SLOs needs about half that): split it")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except _LimitExceeded as e:
        raise SpecError(f"{path}:{e.line}: {e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}" if mark else path
        context = ""
        if e.context and e.context_mark and e.context_mark is not mark:
            context = f" ({e.context} started on line {e.context_mark.line + 1})"
        raise SpecError(f"{where}: not valid YAML: {e.problem or e}{context}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None
    finally:
        loader.dispose()
    if node is None:
        return None, []
    problems: list[tuple[int, str]] = []
    try:
        return _plain(node, SafeConstructor(), problems), problems
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None


# ---------------------------------------------------------------------------------------------
# Validation


class _Validator:
    def __init__(self, path: str):
        self.path = path
        self.problems: list[tuple[int, str]] = []

    def err(self, line: int, message: str) -> None:
        self.problems.append((line, message))

    def unknown_keys(self, m: _Map, allowed: tuple[str, ...] | list[str], where: str) -> None:
        for key in m:
            if key not in allowed:
                guess = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
                hint = f" (did you mean {guess[0]!r}?)" if guess else ""
                self.err(m.key_lines[key], f"unknown key {key!r} in {where}{hint}; "
                         f"expected one of: {', '.join(allowed)}")

    def mapping(self, value: Any, line: int, what: str) -> _Map | None:
        if not isinstance(value, _Map):
            self.err(line, f"{what} must be a mapping, got {_describe(value)}")
            return None
        return value

    # -- parts --------------------------------------------------------------------------------

    def regression(self, m: _Map, base: Regression, where: str) -> Regression:
        self.unknown_keys(m, REGRESSION_KEYS, where)
        values: dict[str, Any] = {}
        for key, raw in m.items():
            line = m.key_lines[key]
            if key == "latency":
                v = None if _is_off(raw) else parse_percent(raw)
                if v is None and not _is_off(raw):
                    self.err(line, f"regression latency: expected a percentage like 20% "
                             f"(or off), got {raw!r}")
                    continue
                values["latency"] = v
            elif key == "error_rate":
                v = None if _is_off(raw) else parse_percent(raw)
                if v is None and not _is_off(raw):
                    self.err(line, f"regression error_rate: expected a percentage like 1% "
                             f"(percentage points of increase, or off), got {raw!r}")
                    continue
                values["error_rate"] = v
            elif key == "latency_min":
                v = parse_duration_ms(raw)
                if v is None:
                    self.err(line, f"regression latency_min: expected a duration like 1ms, "
                             f"got {raw!r}")
                    continue
                values["latency_min_ms"] = v
            elif key == "alpha":
                if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw < 1:
                    self.err(line, f"regression alpha: expected a number between 0 and 1 "
                             f"like 0.01, got {raw!r}")
                    continue
                values["alpha"] = float(raw)
            elif key == "min_samples":
                if isinstance(raw, bool) or not isinstance(raw, int) or raw < 2:
                    self.err(line, f"regression min_samples: expected an integer >= 2, "
                             f"got {raw!r}")
                    continue
                values["min_samples"] = raw
            elif key in ("db_queries", "repeated_queries"):
                if _is_off(raw):
                    values[key] = None
                elif isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
                    self.err(line, f"regression {key}: expected a non-negative number of "
                             f"queries (0: any increase fails), got {raw!r}")
                else:
                    values[key] = float(raw)
        return Regression(**{**base.__dict__, **values})

    def selector(self, raw: Any, line: int, slo: str) -> Selector | None:
        m = self.mapping(raw, line, f"slo {slo!r}: select")
        if m is None:
            return None
        self.unknown_keys(m, SELECT_KEYS, f"select of slo {slo!r}")
        values: dict[str, Any] = {}
        for key in ("service", "span", "span_regex", "kind"):
            if key not in m:
                continue
            v = m[key]
            if not isinstance(v, str) or not v.strip():
                self.err(m.key_lines[key], f"select {key}: expected a non-empty string, "
                         f"got {_describe(v)}")
                continue
            values[key] = v
        if "span" in values and "span_regex" in values:
            self.err(m.key_lines["span_regex"], "select: give either span or span_regex, "
                     "not both")
        if "span_regex" in values:
            try:
                re.compile(values["span_regex"])
            except re.error as e:
                self.err(m.key_lines["span_regex"], f"select span_regex: not a valid regular "
                         f"expression ({e})")
        if "kind" in values and values["kind"] not in KIND_NAMES:
            self.err(m.key_lines["kind"], f"select kind: expected one of "
                     f"{', '.join(sorted(KIND_NAMES))}, got {values['kind']!r}")
        if "root" in m:
            if not isinstance(m["root"], bool):
                self.err(m.key_lines["root"], f"select root: expected true or false, "
                         f"got {m['root']!r}")
            else:
                values["root"] = m["root"]
        if "attributes" in m:
            a = self.mapping(m["attributes"], m.key_lines["attributes"], "select attributes")
            if a is not None:
                attrs = []
                for k, v in a.items():
                    if isinstance(v, _Map | _Seq) or v is None:
                        self.err(a.key_lines[k], f"select attribute {k!r}: expected a scalar "
                                 f"value, got {_describe(v)}")
                    else:
                        attrs.append((str(k), _scalar_text(v)))
                if not attrs:
                    self.err(a.line, "select attributes: empty mapping; give at least one "
                             "attribute or remove the key")
                values["attributes"] = tuple(attrs)
        if not values:
            self.err(m.line, f"slo {slo!r}: empty selector; give at least service and span "
                     "(or span_regex)")
            return None
        return Selector(**values)

    def objectives(self, raw: Any, line: int, slo: str) -> tuple[Objective, ...]:
        m = self.mapping(raw, line, f"slo {slo!r}: objectives")
        if m is None:
            return ()
        self.unknown_keys(m, OBJECTIVES, f"objectives of slo {slo!r}")
        out = []
        for key, v in m.items():
            if key not in OBJECTIVES:
                continue
            kl = m.key_lines[key]
            if key in LATENCY_PERCENTILES:
                budget = parse_duration_ms(v)
                if budget is None:
                    self.err(kl, f"objective {key}: expected a duration like 400ms, 1.5s or "
                             f"250us, got {v!r}")
                    continue
            elif key == "error_rate":
                budget = parse_percent(v)
                if budget is None or budget > 1:
                    self.err(kl, f"objective error_rate: expected a percentage like 1%, "
                             f"got {v!r}")
                    continue
            else:
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    self.err(kl, f"objective {key}: expected a non-negative integer count, "
                             f"got {v!r}")
                    continue
                budget = float(v)
            out.append(Objective(key, budget, kl))
        if not out and not self.problems:
            self.err(m.line, f"slo {slo!r}: no objectives; expected at least one of "
                     f"{', '.join(OBJECTIVES)}")
        return tuple(out)

    def detectors(self, raw: Any, line: int) -> dict[str, dict[str, Any]]:
        from slo.judge.detectors import DEFAULTS

        m = self.mapping(raw, line, "detectors")
        if m is None:
            return {}
        self.unknown_keys(m, sorted(DEFAULTS), "detectors")
        out: dict[str, dict[str, Any]] = {}
        for name, opts in m.items():
            if name not in DEFAULTS:
                continue
            if opts is None:
                out[name] = {}
                continue
            if isinstance(opts, bool):  # `n_plus_one: true` is short for fail: true
                out[name] = {"fail": opts}
                continue
            o = self.mapping(opts, m.key_lines[name], f"detector {name}")
            if o is None:
                continue
            defaults = DEFAULTS[name]
            self.unknown_keys(o, sorted(defaults), f"options of detector {name}")
            conf: dict[str, Any] = {}
            for key, v in o.items():
                if key not in defaults:
                    continue
                parsed, expected = _detector_option(key, v, defaults[key])
                if expected:
                    self.err(o.key_lines[key], f"detector {name} {key}: expected {expected}, "
                             f"got {v!r}")
                else:
                    conf[key] = parsed
            out[name] = conf
        return out


def _detector_option(key: str, value: Any, default: Any) -> tuple[Any, str | None]:
    """(parsed value, None) or (None, what was expected): the one check of detector options.

    The type comes from the option's default in `slo.judge.detectors.DEFAULTS`; `_ms` options are
    durations, `_share` options percentages, counts and numbers are never negative.
    """
    if key.endswith("_ms"):
        v = parse_duration_ms(value)
        return (v, None) if v is not None else (None, "a duration like 20ms")
    if key.endswith("_share"):
        v = parse_percent(value)
        return (v, None) if v is not None and v <= 1 else (None, "a percentage like 50%")
    if isinstance(default, bool):
        return (value, None) if isinstance(value, bool) else (None, "true or false")
    if isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return (value, None) if ok else (None, "a whole number >= 0")
    if isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        return (float(value), None) if ok else (None, "a number >= 0")
    if isinstance(default, list | tuple):
        ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
        return (list(value), None) if ok else (None, "a list of strings")
    if isinstance(default, str) or default is None:
        return (value, None) if isinstance(value, str) else (None, "a string")
    return value, None


def _is_off(v: Any) -> bool:
    return v is None or v is False or (isinstance(v, str) and v.strip().lower() == "off")


def _scalar_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _describe(v: Any) -> str:
    if isinstance(v, _Map | dict):
        return "a mapping"
    if isinstance(v, _Seq | list):
        return "a list"
    if v is None:
        return "nothing"
    return repr(v)


def parse_spec(text: str, path: str = "<spec>") -> Spec:
    """Validate spec text; `SpecError` listing every mistake as `path:line: message`."""
    doc, problems = _compose(text, path)
    v = _Validator(path)
    v.problems.extend(problems)
    if doc is None:
        raise SpecError(f"{path}:1: the spec is empty; expected a mapping with 'version: 1' "
                        "and 'slos:'")
    top = v.mapping(doc, 1, "the spec")
    if top is None:
        _raise(v)
    assert top is not None  # (mapping() recorded why it is None, so _raise raised)
    v.unknown_keys(top, TOP_KEYS, "the spec")
    version = top.get("version")
    if "version" not in top:
        v.err(top.line, "missing 'version: 1' at the top")
    elif version != 1:
        v.err(top.key_lines["version"], f"unsupported spec version {version!r}; expected 1")
    defaults = Regression()
    if "regression" in top:
        r = v.mapping(top["regression"], top.key_lines["regression"], "regression")
        if r is not None:
            defaults = v.regression(r, defaults, "the top-level regression")
    detectors: dict[str, dict[str, Any]] = {}
    if "detectors" in top:
        detectors = v.detectors(top["detectors"], top.key_lines["detectors"])
    gate = _gate_settings(v, top["gate"], top.key_lines["gate"]) if "gate" in top else {}
    slos: list[SLO] = []
    raw_slos = top.get("slos")
    if "slos" not in top:
        v.err(top.line, "missing 'slos:', a list of SLOs each with name, select and objectives")
    elif not isinstance(raw_slos, _Seq) or not raw_slos:
        v.err(top.key_lines["slos"], f"slos: expected a non-empty list, got "
              f"{_describe(raw_slos)}")
    elif len(raw_slos) > MAX_SLOS:
        v.err(top.key_lines["slos"], f"slos: {len(raw_slos):,} SLOs; at most {MAX_SLOS:,} "
              "in one spec: split it")
    else:
        seen: dict[str, int] = {}
        for item, line in zip(raw_slos, raw_slos.item_lines, strict=True):
            s = v.mapping(item, line, "each slo")
            if s is None:
                continue
            v.unknown_keys(s, SLO_KEYS, "an slo")
            name = s.get("name")
            if not isinstance(name, str) or not name.strip():
                v.err(s.key_lines.get("name", s.line), "slo: expected a non-empty 'name'")
                name = f"#{len(slos) + 1}"
            elif name in seen:
                v.err(s.key_lines["name"], f"duplicate slo name {name!r} (first on line "
                      f"{seen[name]})")
            else:
                seen[name] = s.key_lines["name"]
            if "select" not in s:
                v.err(s.line, f"slo {name!r}: missing 'select'")
                sel = None
            else:
                sel = v.selector(s["select"], s.key_lines["select"], name)
            if "objectives" not in s:
                v.err(s.line, f"slo {name!r}: missing 'objectives'")
                objs: tuple[Objective, ...] = ()
            else:
                objs = v.objectives(s["objectives"], s.key_lines["objectives"], name)
            reg = defaults
            if "regression" in s:
                r = v.mapping(s["regression"], s.key_lines["regression"], "regression")
                if r is not None:
                    reg = v.regression(r, defaults, f"regression of slo {name!r}")
            desc = s.get("description") or ""
            if sel is not None:
                slos.append(SLO(name, sel, objs, reg, str(desc), s.line))
    _raise(v)
    return Spec(tuple(slos), detectors, path, 1, gate)


#: `gate:` keys -> kind of value: str (non-empty text), path (relative to the spec's folder),
#: url, route (starts with /), int (>= 1), seconds (a duration: 10s, 500ms, or a number of s)
GATE_KEYS = {
    "locustfile": "path", "baseline_cmd": "str", "candidate_cmd": "str",
    "baseline_url": "url", "candidate_url": "url", "health": "route", "users": "int",
    "duration": "seconds", "slice": "seconds", "warmup": "seconds", "otlp_port": "int",
}


def _gate_settings(v: _Validator, raw: Any, line: int) -> dict[str, Any]:
    """The `gate:` mapping: `slo gate` settings for a repository, validated like the rest.

    Paths are made relative to the spec's folder, so `slo gate` works from anywhere.
    """
    m = v.mapping(raw, line, "gate")
    if m is None:
        return {}
    v.unknown_keys(m, tuple(GATE_KEYS), "gate")
    out: dict[str, Any] = {}
    for key, value in m.items():
        kind, at = GATE_KEYS.get(key), m.key_lines[key]
        if kind is None:
            continue
        if kind in ("str", "path", "url", "route"):
            if not isinstance(value, str) or not value.strip():
                v.err(at, f"gate {key}: expected a non-empty string, got {_describe(value)}")
            elif kind == "url" and not value.startswith(("http://", "https://")):
                v.err(at, f"gate {key}: expected an http(s) URL, got {value!r}")
            elif kind == "route" and not value.startswith("/"):
                v.err(at, f"gate {key}: expected a path starting with '/', got {value!r}")
            elif kind == "path":
                out[key] = str(Path(v.path).parent / value) if v.path != "<spec>" else value
            else:
                out[key] = value
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                v.err(at, f"gate {key}: expected a whole number >= 1, got {_describe(value)}")
            else:
                out[key] = value
        else:
            ms = parse_duration_ms(value) if not isinstance(value, int | float) else value * 1000
            if ms is None or isinstance(value, bool) or ms <= 0:
                v.err(at, f"gate {key}: expected a duration such as 10s or 500ms, "
                      f"got {_describe(value)}")
            else:
                out[key] = ms / 1000.0
    return out


def _raise(v: _Validator) -> None:
    if v.problems:
        lines = sorted(set(v.problems))
        raise SpecError("\n".join(f"{v.path}:{line}: {msg}" for line, msg in lines))


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file."""
    p = Path(path)
    try:
        if p.stat().st_size > 4 * MAX_SPEC_BYTES:  # do not even read a huge file
            raise SpecError(f"{p}:1: the spec is {p.stat().st_size:,} bytes; at most "
                            f"{MAX_SPEC_BYTES:,} are read: split it")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: spec file not found; pass --spec PATH") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{p}: cannot read the spec: {e}") from None
    return parse_spec(text, str(p))
