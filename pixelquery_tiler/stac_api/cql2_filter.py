"""CQL2 filters (text and JSON) evaluated as numpy operations over the item columns of one collection.

Why not ``cql2.Expr.matches(item)``: it needs a full item dict per item (~20 us each, plus building the
dicts), parses integers as doubles (Iceberg snapshot ids exceed 2^53, so ``pixelquery:snapshot_id = ...``
would match its neighbours), and compares timestamps with dates as strings. The ``cql2`` package still does
the CQL2-text parsing; JSON is evaluated as given. Evaluation follows SQL three-valued logic: a comparison
with a missing property is *unknown*, and unknown never selects an item, even under ``NOT``.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cql2
import numpy as np
import shapely
from shapely.geometry import shape

from ..temporal import day_bounds, parse_bound, parse_date, us
from .limits import MAX_VERTICES, excerpt, vertex_count
from .properties import Column
from .records import ItemRecords


class FilterError(ValueError):
    """The filter is not valid CQL2 or uses something this server does not evaluate (HTTP 400)."""


# Integer literals longer than a double's 15-16 significant digits, outside quoted strings/identifiers.
_BIG_INT = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|(?<![\w.:])(-?\d{16,})(?![\w.])""")
_BIG_INT_MARK = "\x00pixelquery-int:"

#: longest filter accepted (characters of CQL2 text or JSON): filters are expressions, not data
MAX_FILTER_LENGTH = 20_000
#: deepest nesting accepted: parentheses and prefix operators (NOT, unary minus) in text, arrays and
#: objects in JSON, levels of the parsed tree. The ``cql2`` parser recurses per level and overflows the
#: C stack (SIGSEGV, killing the worker) at ~1,500 parentheses, so the text is measured before parsing.
MAX_FILTER_DEPTH = 64
#: most nodes (operators, operands, list entries) in one filter tree
MAX_FILTER_NODES = 10_000
#: longest LIKE pattern
MAX_LIKE_PATTERN = 256

_TEXT_TOKENS = re.compile(r"""'(?:[^']|'')*'?|"(?:[^"]|"")*"?|[A-Za-z_][\w:.]*|\s+|.""", re.DOTALL)
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]|[^"\[\]{}]+', re.DOTALL)


_excerpt = excerpt


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return excerpt(" ".join(lines[:6]) or type(exc).__name__, 300)


def _too_deep() -> FilterError:
    return FilterError(f"filter is nested more than {MAX_FILTER_DEPTH} levels deep")


def check_text_nesting(text: str) -> None:
    """Reject CQL2 text nested deeper than ``MAX_FILTER_DEPTH`` without parsing it (one linear scan).

    A level is an open parenthesis plus the prefix operators (``NOT``, unary ``-``/``+``) in front of it;
    a run of prefix operators nests as deep as it is long.
    """
    levels: list[int] = []
    depth = pending = 0  # depth: levels of the open parentheses; pending: prefix operators since the last operand
    for match in _TEXT_TOKENS.finditer(text):
        token = match.group()
        if token.isspace():
            continue
        if token.upper() == "NOT" or token in "-+":
            pending += 1
        elif token == "(":
            levels.append(1 + pending)
            depth += 1 + pending
            pending = 0
        elif token == ")":
            depth -= levels.pop() if levels else 0
            pending = 0
        else:
            pending = 0
        if depth + pending > MAX_FILTER_DEPTH:
            raise _too_deep()


def check_json_nesting(text: str) -> None:
    """Reject JSON nested deeper than ``MAX_FILTER_DEPTH`` before ``json.loads`` (which recurses per level)."""
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_FILTER_DEPTH:
                raise _too_deep()
        elif token in "]}":
            depth -= 1


def check_tree(tree: Any) -> None:
    """Bound a parsed filter tree's depth and size (iteratively: a deep tree must not exhaust the stack)."""
    stack = [(tree, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > MAX_FILTER_DEPTH:
            raise _too_deep()
        if nodes > MAX_FILTER_NODES:
            raise FilterError(f"filter has more than {MAX_FILTER_NODES} terms")
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def _big_number(digits: str) -> int | float:
    """An integer literal: exact up to 64 bits and a little beyond, a double (or infinity) when longer."""
    return int(digits) if len(digits) <= 40 else float(digits)


def parse_filter(value: str | dict | bool | None, lang: str | None = None) -> Any:
    """A CQL2 filter as its JSON tree, bounded in size and depth. Raises ``FilterError``.

    CQL2-text goes through the ``cql2`` parser, which reads every number as a double; integer literals
    too long for a double are swapped for placeholders before parsing and put back afterwards.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, dict):
        check_tree(value)
        return value
    if not isinstance(value, str):
        raise FilterError("filter must be a CQL2 expression")
    if len(value) > MAX_FILTER_LENGTH:
        raise FilterError(f"filter is longer than {MAX_FILTER_LENGTH} characters")
    lang = lang or "cql2-text"
    if lang == "cql2-json":
        check_json_nesting(value)
        try:
            tree = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise FilterError(f"filter is not valid CQL2-JSON: {excerpt(str(exc), 200)}") from None
        if not isinstance(tree, (dict, bool)):
            raise FilterError("CQL2-JSON filter must be an object")
        check_tree(tree)
        return tree
    if lang != "cql2-text":
        raise FilterError(f"unsupported filter-lang {excerpt(lang)}; use cql2-text or cql2-json")
    check_text_nesting(value)
    big: list[int | float] = []

    def protect(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return match.group(0)
        big.append(_big_number(match.group(1)))
        return f"'{_BIG_INT_MARK}{len(big) - 1}'"

    try:
        tree = cql2.parse_text(_BIG_INT.sub(protect, value)).to_json()
    except Exception as exc:  # cql2 raises plain Exception (ParseError) with a multi-line caret diagram
        raise FilterError(f"filter is not valid CQL2-text: {_first_line(exc)}") from None
    check_tree(tree)
    return _restore_ints(tree, big) if big else tree


def _restore_ints(node: Any, big: list[int | float]) -> Any:
    if isinstance(node, str) and node.startswith(_BIG_INT_MARK):
        return big[int(node[len(_BIG_INT_MARK) :])]
    if isinstance(node, list):
        return [_restore_ints(n, big) for n in node]
    if isinstance(node, dict):
        return {k: _restore_ints(v, big) for k, v in node.items()}
    return node


@dataclass(frozen=True)
class Tri:
    """A three-valued boolean per item: ``true``, or ``null`` (unknown); otherwise false."""

    true: np.ndarray
    null: np.ndarray


@dataclass(frozen=True)
class Literal:
    """A constant of a CQL2 expression with its kind, so comparisons can check kinds before values."""

    kind: str  # string | number | boolean | null | time | geometry | list
    value: Any


UNKNOWN = "unknown"
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_FLIP = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_SPATIAL = {
    "s_intersects": "intersects",
    "s_disjoint": "disjoint",
    "s_within": "within",
    "s_contains": "contains",
    "s_equals": "equals",
    "s_touches": "touches",
    "s_overlaps": "overlaps",
    "s_crosses": "crosses",
}
_SPATIAL_SWAP = {"within": "contains", "contains": "within"}
_TEMPORAL = {"t_intersects", "t_disjoint", "t_before", "t_after", "t_equals", "t_during", "t_contains"}
_TEMPORAL_SWAP = {"t_before": "t_after", "t_after": "t_before", "t_during": "t_contains", "t_contains": "t_during"}
_GEOJSON = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"}


def _time_range(value: Any) -> tuple[int | None, int | None]:
    """A time literal as inclusive microsecond bounds (``temporal``'s grammar: a date is its whole UTC day)."""
    if isinstance(value, dict):
        if "timestamp" in value:
            value = value["timestamp"]
        elif "date" in value:
            try:
                first, last = day_bounds(parse_date(value["date"] if isinstance(value["date"], str) else ""))
            except ValueError:
                raise FilterError(f"invalid DATE literal {_excerpt(value['date'])}") from None
            return us(first), us(last)
        else:
            raise FilterError(f"not a time literal: {_excerpt(value)}")
    if not isinstance(value, str):
        raise FilterError(f"not a time literal: {_excerpt(value)}")
    if value == "..":
        return None, None
    try:
        first, last = parse_bound(value)
    except ValueError as exc:
        raise FilterError(str(exc)) from None
    return us(first), us(last)


class Evaluator:
    """Evaluates one CQL2 JSON tree over ``records``; only ``active`` items matter (spatial tests run on them only)."""

    def __init__(self, records: ItemRecords, active: np.ndarray):
        self.records = records
        self.active = active
        self.n = len(records)

    def matches(self, tree: Any) -> np.ndarray:
        """Rows (among the active ones) for which the filter is TRUE: UNKNOWN does not match, as CQL2 says."""
        result = self._bool(tree)
        return result.true & self.active

    # -- helpers ----------------------------------------------------------------------------------------------
    def _const(self, value: bool | None) -> Tri:
        if value is None:
            return Tri(np.zeros(self.n, bool), np.ones(self.n, bool))
        return Tri(np.full(self.n, bool(value)), np.zeros(self.n, bool))

    def _unknown(self) -> Tri:
        return self._const(None)

    def _args(self, node: dict[str, Any], count: int | None = None) -> list[Any]:
        args = node.get("args")
        if not isinstance(args, list) or (count is not None and len(args) != count):
            want = f"{count} argument(s)" if count is not None else "an argument list"
            raise FilterError(f"operator {excerpt(node.get('op'))} needs {want}")
        return args

    # -- boolean expressions ------------------------------------------------------------------------------
    def _bool(self, node: Any) -> Tri:
        if isinstance(node, bool):
            return self._const(node)
        if not isinstance(node, dict) or not isinstance(node.get("op"), str):
            raise FilterError(f"not a boolean CQL2 expression: {json.dumps(node)[:120]}")
        op = node["op"].lower()
        if op in ("and", "or"):
            parts = [self._bool(a) for a in self._args(node)]
            if not parts:
                raise FilterError(f"{excerpt(op)} needs arguments")
            return self._and(parts) if op == "and" else self._or(parts)
        if op == "not":
            (inner,) = (self._bool(a) for a in self._args(node, 1))
            return Tri(~inner.true & ~inner.null, inner.null)
        if op in _COMPARE:
            a, b = (self._operand(x) for x in self._args(node, 2))
            return self._compare(op, a, b)
        if op == "isnull":
            (a,) = (self._operand(x) for x in self._args(node, 1))
            if isinstance(a, Column):
                return Tri(a.null.copy(), np.zeros(self.n, bool))
            return self._const(a.kind == "null")
        if op == "like":
            return self._like(*(self._operand(x) for x in self._args(node, 2)))
        if op == "between":
            args = self._args(node)
            bounds = args[1:] if len(args) == 3 else args[1] if len(args) == 2 and isinstance(args[1], list) else None
            if bounds is None or len(bounds) != 2:
                raise FilterError("'between' needs a value, a lower and an upper bound")
            a = self._operand(args[0])
            lo, hi = (self._operand(x) for x in bounds)
            return self._and([self._compare(">=", a, lo), self._compare("<=", a, hi)])
        if op == "in":
            a, values = (self._operand(x) for x in self._args(node, 2))
            if not (isinstance(values, Literal) and values.kind == "list"):
                raise FilterError("'in' needs a list of values")
            if not values.value:
                return self._const(False)
            return self._or([self._compare("=", a, v) for v in values.value])
        if op in _SPATIAL:
            a, b = (self._operand(x) for x in self._args(node, 2))
            return self._spatial(_SPATIAL[op], a, b)
        if op in _TEMPORAL:
            a, b = (self._operand(x) for x in self._args(node, 2))
            return self._temporal(op, a, b)
        raise FilterError(f"unsupported CQL2 operator {excerpt(node['op'])}")

    @staticmethod
    def _and(parts: list[Tri]) -> Tri:
        true = np.logical_and.reduce([p.true for p in parts])
        false = np.logical_or.reduce([~p.true & ~p.null for p in parts])
        return Tri(true, ~true & ~false)

    @staticmethod
    def _or(parts: list[Tri]) -> Tri:
        true = np.logical_or.reduce([p.true for p in parts])
        null = np.logical_or.reduce([p.null for p in parts])
        return Tri(true, ~true & null)

    # -- operands -------------------------------------------------------------------------------------------
    def _operand(self, node: Any) -> Column | Literal:
        if isinstance(node, bool):
            return Literal("boolean", node)
        if isinstance(node, (int, float)):
            if isinstance(node, float) and math.isnan(node):
                raise FilterError("NaN is not a CQL2 number")
            return Literal("number", node)
        if isinstance(node, str):
            return Literal("string", node)
        if node is None:
            return Literal("null", None)
        if isinstance(node, list):
            return Literal("list", [self._operand(x) for x in node])
        if not isinstance(node, dict):
            raise FilterError(f"unexpected CQL2 value {excerpt(node)}")
        if "property" in node:
            name = node["property"]
            if not isinstance(name, str):
                raise FilterError("property name must be a string")
            name = name[len("properties.") :] if name.startswith("properties.") else name
            column = self.records.column(name)
            return column if column is not None else Column(UNKNOWN, np.zeros(self.n), np.ones(self.n, bool))
        if "timestamp" in node or "date" in node or "interval" in node:
            if "interval" in node:
                bounds = node["interval"]
                if not isinstance(bounds, list) or len(bounds) != 2:
                    raise FilterError("INTERVAL needs a start and an end")
                start, end = _time_range(bounds[0])[0], _time_range(bounds[1])[1]
                if start is not None and end is not None and start > end:
                    raise FilterError("INTERVAL ends before it starts")
                return Literal("time", (start, end))
            return Literal("time", _time_range(node))
        if "bbox" in node:
            box = node["bbox"]
            if (
                not isinstance(box, list)
                or len(box) not in (4, 6)
                or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(_to_float(v)) for v in box
                )
            ):
                raise FilterError("BBOX needs 4 or 6 finite numbers")
            w, s, e, n = (box[0], box[1], box[2], box[3]) if len(box) == 4 else (box[0], box[1], box[3], box[4])
            return Literal("geometry", shapely.box(w, s, e, n))
        if node.get("type") in _GEOJSON:
            if vertex_count(node) > MAX_VERTICES:
                raise FilterError(f"geometry literal has more than {MAX_VERTICES} vertices")
            try:
                geom = shape(node)
            except Exception as exc:
                raise FilterError(f"invalid geometry literal: {exc}") from None
            if geom.is_empty:
                raise FilterError("empty geometry literal")
            return Literal("geometry", geom)
        if "op" in node:
            raise FilterError(f"unsupported CQL2 function/operator {excerpt(node['op'])} as a value")
        raise FilterError(f"unexpected CQL2 value {json.dumps(node)[:120]}")

    # -- comparisons ----------------------------------------------------------------------------------------
    def _compare(self, op: str, a: Column | Literal, b: Column | Literal) -> Tri:
        if isinstance(a, Literal) and isinstance(b, Column):
            a, b, op = b, a, _FLIP[op]
        if isinstance(a, Literal):
            return self._const(self._compare_literals(op, a, b))  # type: ignore[arg-type]  # b too: pairs flipped above
        if (
            a.kind == UNKNOWN
            or (isinstance(b, Column) and b.kind == UNKNOWN)
            or (isinstance(b, Literal) and b.kind == "null")
        ):
            return self._unknown()
        if isinstance(b, Column):
            kinds = {a.kind, b.kind}
            if (len(kinds) > 1 and kinds != {"number", "integer"}) or "geometry" in kinds:
                raise FilterError(f"cannot compare {a.kind} with {b.kind} properties")
            result = np.asarray(_COMPARE[op](a.values, b.values), bool)
            null = a.null | b.null
        else:
            result = self._compare_column(op, a, b)
            null = a.null
        return Tri(result & ~null, null)

    def _compare_column(self, op: str, col: Column, lit: Literal) -> np.ndarray:
        if col.kind == "timestamp":
            if lit.kind == "string":
                lit = Literal("time", _time_range(lit.value))
            if lit.kind != "time":
                raise FilterError(f"cannot compare a timestamp with {lit.kind} {excerpt(lit.value)}")
            start, end = lit.value
            if start is None or end is None:
                raise FilterError("comparisons need a time instant or date, not an open interval")
            return _range_compare(op, col.values, start, end)
        if col.kind == "string":
            if lit.kind != "string":
                raise FilterError(f"cannot compare a string property with {lit.kind} {excerpt(lit.value)}")
            return np.asarray(_COMPARE[op](col.values, lit.value), bool)
        if col.kind in ("number", "integer"):
            if lit.kind != "number":
                raise FilterError(f"cannot compare a number property with {lit.kind} {excerpt(lit.value)}")
            value = lit.value
            if isinstance(value, int) and not -(2**63) <= value < 2**63:
                value = _to_float(value)
            return np.asarray(_COMPARE[op](col.values, value), bool)
        raise FilterError(f"{col.kind} properties cannot be compared with {op}")

    @staticmethod
    def _compare_literals(op: str, a: Literal, b: Literal) -> bool | None:
        if a.kind == "null" or b.kind == "null":
            return None
        if a.kind != b.kind or a.kind not in ("string", "number", "boolean"):
            raise FilterError(f"cannot compare {a.kind} {excerpt(a.value)} with {b.kind} {excerpt(b.value)}")
        return bool(_COMPARE[op](a.value, b.value))

    def _like(self, a: Column | Literal, pattern: Column | Literal) -> Tri:
        if not (isinstance(pattern, Literal) and pattern.kind == "string"):
            raise FilterError("LIKE needs a string pattern")
        like = compile_like(pattern.value)
        if isinstance(a, Literal):
            if a.kind == "null":
                return self._unknown()
            if a.kind != "string":
                raise FilterError("LIKE applies to strings")
            return self._const(like(a.value))
        if a.kind == UNKNOWN:
            return self._unknown()
        if a.kind != "string":
            raise FilterError(f"LIKE applies to string properties, not {a.kind}")
        hits = np.fromiter((like(v) for v in a.values), bool, count=self.n)
        return Tri(hits & ~a.null, a.null)

    # -- spatial and temporal -------------------------------------------------------------------------------
    def _spatial(self, predicate: str, a: Column | Literal, b: Column | Literal) -> Tri:
        if isinstance(a, Literal) and isinstance(b, Column):
            a, b, predicate = b, a, _SPATIAL_SWAP.get(predicate, predicate)
        if isinstance(a, Column) and a.kind == UNKNOWN:
            return self._unknown()
        if not (isinstance(a, Column) and a.kind == "geometry" and isinstance(b, Literal) and b.kind == "geometry"):
            raise FilterError("spatial functions compare the 'geometry' property with a geometry literal")
        geom = b.value
        rows = np.flatnonzero(self.active)
        w, s, e, n = geom.bounds
        box = self.records.bbox[rows]
        near = (box[:, 0] <= e) & (box[:, 2] >= w) & (box[:, 1] <= n) & (box[:, 3] >= s)
        test = "intersects" if predicate == "disjoint" else predicate
        hits = np.zeros(self.n, bool)
        candidates = rows[near]
        if len(candidates):
            hits[candidates] = getattr(shapely, test)(self.records.footprints(candidates), geom)
        if predicate == "disjoint":
            hits = ~hits
        return Tri(hits, np.zeros(self.n, bool))

    def _temporal(self, op: str, a: Column | Literal, b: Column | Literal) -> Tri:
        if isinstance(a, Literal) and isinstance(b, Column):
            a, b, op = b, a, _TEMPORAL_SWAP.get(op, op)
        if isinstance(a, Column) and a.kind == UNKNOWN:
            return self._unknown()
        if not (isinstance(a, Column) and a.kind == "timestamp" and isinstance(b, Literal)):
            raise FilterError("temporal functions compare a timestamp property with a time literal")
        if b.kind == "string":
            b = Literal("time", _time_range(b.value))
        if b.kind != "time":
            raise FilterError(f"temporal functions need a TIMESTAMP, DATE or INTERVAL, not {b.kind}")
        start, end = b.value
        t = a.values
        lo = start if start is not None else np.iinfo(np.int64).min
        hi = end if end is not None else np.iinfo(np.int64).max
        if op == "t_intersects":
            hits = (t >= lo) & (t <= hi)
        elif op == "t_disjoint":
            hits = (t < lo) | (t > hi)
        elif op == "t_before":
            hits = t < lo if start is not None else np.zeros(self.n, bool)
        elif op == "t_after":
            hits = t > hi if end is not None else np.zeros(self.n, bool)
        elif op == "t_during":
            hits = (t > lo) & (t < hi)
        else:  # t_equals, t_contains: an instant equals / contains only the same instant
            hits = (t == start) if start is not None and start == end else np.zeros(self.n, bool)
        return Tri(np.asarray(hits, bool) & ~a.null, a.null)


def _to_float(value: int | float) -> float:
    """A number as a double; integers beyond a double's range become infinities (no OverflowError)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _range_compare(op: str, values: np.ndarray, start: int, end: int) -> np.ndarray:
    """Compare instants with a closed range (an instant has start == end, a date spans its day)."""
    if op == "=":
        return (values >= start) & (values <= end)
    if op == "<>":
        return (values < start) | (values > end)
    if op == "<":
        return values < start
    if op == "<=":
        return values <= end
    if op == ">":
        return values > end
    return values >= start


_ANY_ONE, _ANY_RUN = object(), object()


def compile_like(pattern: str) -> Callable[[str], bool]:
    """CQL2 LIKE as a matcher: ``%`` any run, ``_`` one character, ``\\`` escapes the next character.

    Not a regular expression: ``%_%_%_...!`` becomes ``.*..*..*.`` whose backtracking is exponential in the
    number of runs (a worker froze for a minute on one request). This is the classic wildcard matcher
    that only ever backtracks to the last ``%``: O(len(value) * len(pattern)) at worst. Runs of ``%`` are
    collapsed first (``%%`` = ``%``).
    """
    if len(pattern) > MAX_LIKE_PATTERN:
        raise FilterError(f"LIKE pattern is longer than {MAX_LIKE_PATTERN} characters")
    tokens: list[Any] = []
    escaped = False
    for ch in pattern:
        if escaped:
            tokens.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            if not tokens or tokens[-1] is not _ANY_RUN:
                tokens.append(_ANY_RUN)
        else:
            tokens.append(_ANY_ONE if ch == "_" else ch)
    if escaped:
        tokens.append("\\")  # a trailing backslash stands for itself

    def matches(value: str) -> bool:
        i = j = 0
        star, mark = -1, 0
        n, m = len(value), len(tokens)
        while i < n:
            if j < m and tokens[j] is not _ANY_RUN and (tokens[j] is _ANY_ONE or tokens[j] == value[i]):
                i, j = i + 1, j + 1
            elif j < m and tokens[j] is _ANY_RUN:
                star, mark, j = j, i, j + 1
            elif star >= 0:
                mark += 1
                i, j = mark, star + 1
            else:
                return False
        while j < m and tokens[j] is _ANY_RUN:
            j += 1
        return j == m

    return matches
