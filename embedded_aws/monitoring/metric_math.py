"""Metric math over an alarm's grid of periods: the expression subset local mode evaluates
(tokens, parser, evaluator, functions)."""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Callable, Mapping
from typing import Any

from ._base import UnsupportedAlarm
from .alarm_data import _anomaly_band, _Band, _Context, _NoData

# Metric math: tokens and evaluation over the alarm's grid. Values are floats (scalars),
# dicts period-start -> float (time series), lists of time series (arrays) or _Band.
_MATH_TOKEN = re.compile(r"""\s*(?:
    (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?) |
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*') |
    (?P<name>[A-Za-z_][A-Za-z0-9_]*) |
    (?P<op>&&|\|\||==|!=|<=|>=|[-+*/^(),<>])
    )""", re.VERBOSE)
_MATH_FUNCTIONS = ("ABS", "ANOMALY_DETECTION_BAND", "AVG", "CEIL", "FILL", "FLOOR", "IF", "MAX", "METRICS", "MIN",
                   "PERIOD", "STDDEV", "SUM")


class _MathParser:
    """Parses a metric math expression into nested tuples."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens: list[tuple[str, str]] = []
        position = 0
        text = expression.strip()
        while position < len(text):
            match = _MATH_TOKEN.match(text, position)
            if match is None or match.end() == position:
                raise UnsupportedAlarm(f"cannot parse metric math at {text[position:]!r} in {expression!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
            while position < len(text) and text[position].isspace():
                position += 1
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise UnsupportedAlarm(f"metric math ends early: {self.expression!r}")
        token = self.tokens[self.i]
        if expected is not None and token[1] != expected:
            raise UnsupportedAlarm(f"expected {expected!r}, got {token[1]!r} in {self.expression!r}")
        self.i += 1
        return token

    def parse(self) -> Any:
        node = self.logical()
        if self.i != len(self.tokens):
            raise UnsupportedAlarm(f"unexpected {self.peek()!r} in metric math {self.expression!r}")
        return node

    def _binary(self, operators: tuple[str, ...], operand: Callable[[], Any]) -> Any:
        node = operand()
        while self.peek() is not None and self.peek().upper() in operators:  # type: ignore[union-attr]
            op = self.take()[1].upper()
            node = ("op", {"AND": "&&", "OR": "||"}.get(op, op), node, operand())
        return node

    def logical(self) -> Any:
        return self._binary(("||", "OR"), lambda: self._binary(("&&", "AND"), self.comparison))

    def comparison(self) -> Any:
        node = self.additive()
        if self.peek() in ("==", "!=", "<", ">", "<=", ">="):
            op = self.take()[1]
            node = ("op", op, node, self.additive())
        return node

    def additive(self) -> Any:
        return self._binary(("+", "-"), lambda: self._binary(("*", "/"), self.power))

    def power(self) -> Any:
        node = self.unary()
        if self.peek() == "^":
            self.take()
            node = ("op", "^", node, self.power())
        return node

    def unary(self) -> Any:
        if self.peek() == "-":
            self.take()
            return ("neg", self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, text = self.take()
        if kind == "number":
            return ("num", float(text))
        if kind == "string":
            return ("str", text[1:-1])
        if text == "(":
            node = self.logical()
            self.take(")")
            return node
        if kind != "name":
            raise UnsupportedAlarm(f"unexpected {text!r} in metric math {self.expression!r}")
        if self.peek() == "(":
            self.take("(")
            args = []
            if self.peek() != ")":
                args.append(self.logical())
                while self.peek() == ",":
                    self.take(",")
                    args.append(self.logical())
            self.take(")")
            return ("call", text.upper(), args)
        if text.upper() in ("REPEAT", "LINEAR"):
            return ("keyword", text.upper())
        return ("id", text)


class _MathEvaluator:
    def __init__(self, ctx: _Context, queries: Mapping[str, Mapping[str, Any]]) -> None:
        self.ctx = ctx
        self.queries = queries
        self.cache: dict[str, Any] = {}
        self.active: set[str] = set()

    def value_of(self, query_id: str) -> Any:
        if query_id in self.cache:
            return self.cache[query_id]
        if query_id not in self.queries:
            raise UnsupportedAlarm(f"metric math refers to unknown id {query_id!r}")
        if query_id in self.active:
            raise UnsupportedAlarm(f"metric math id {query_id!r} refers to itself")
        self.active.add(query_id)
        query = self.queries[query_id]
        if query_id in self.ctx.stat_queries:
            value: Any = dict(self.ctx.fetched.get(query_id, {}))
        else:
            value = self.eval(_MathParser(query["Expression"]).parse())
        self.active.discard(query_id)
        self.cache[query_id] = value
        return value

    def eval(self, node: Any) -> Any:
        kind = node[0]
        if kind == "num":
            return node[1]
        if kind == "str":
            raise UnsupportedAlarm(f"string {node[1]!r} outside METRICS()")
        if kind == "keyword":
            raise UnsupportedAlarm(f"{node[1]} outside FILL()")
        if kind == "id":
            return self.value_of(node[1])
        if kind == "neg":
            return _apply(lambda a: -a, self.eval(node[1]))
        if kind == "op":
            return _binary(node[1], self.eval(node[2]), self.eval(node[3]))
        return self.call(node[1], node[2])

    def call(self, name: str, args: list[Any]) -> Any:
        grid = self.ctx.grid
        if name == "METRICS":
            wanted = args[0][1] if args and args[0][0] == "str" else None
            if args and wanted is None:
                raise UnsupportedAlarm("METRICS() takes a quoted label filter only")
            ids = [i for i in self.ctx.stat_queries if wanted is None or wanted in self.ctx.labels.get(i, "")]
            return [self.value_of(i) for i in ids]
        if name == "FILL":
            if len(args) != 2:
                raise UnsupportedAlarm("FILL takes two arguments")
            how = args[1][1] if args[1][0] == "keyword" else self.eval(args[1])
            return _map_series(lambda s: _fill(s, how, grid), self.eval(args[0]))
        if name == "IF":
            if len(args) not in (2, 3):
                raise UnsupportedAlarm("IF takes two or three arguments")
            return _if(self.eval(args[0]), self.eval(args[1]), self.eval(args[2]) if len(args) == 3 else None, grid)
        if name in ("SUM", "AVG", "MIN", "MAX", "STDDEV"):
            if len(args) != 1:
                raise UnsupportedAlarm(f"{name} takes one argument")
            return _aggregate(name, self.eval(args[0]))
        if name in ("ABS", "CEIL", "FLOOR"):
            fn = {"ABS": abs, "CEIL": math.ceil, "FLOOR": math.floor}[name]
            return _apply(lambda a: float(fn(a)), self.eval(args[0]))
        if name == "PERIOD":
            return _map_series(lambda s: {t: float(self.ctx.period) for t in s}, self.eval(args[0]))
        if name == "ANOMALY_DETECTION_BAND":
            if not args or args[0][0] != "id" or args[0][1] not in self.ctx.stat_queries:
                raise UnsupportedAlarm("ANOMALY_DETECTION_BAND is evaluated locally on a metric id only")
            width = float(self.eval(args[1])) if len(args) > 1 else 2.0
            return _anomaly_band(self.ctx, self.ctx.stat_queries[args[0][1]], width)
        raise UnsupportedAlarm(f"metric math function {name} is not evaluated locally "
                               f"(supported: {', '.join(_MATH_FUNCTIONS)})")


def _is_series(value: Any) -> bool:
    return isinstance(value, dict)


def _map_series(fn: Callable[[dict[int, float]], Any], value: Any) -> Any:
    if isinstance(value, list):
        return [fn(v) for v in value]
    if _is_series(value):
        return fn(value)
    raise UnsupportedAlarm("a time series was expected")


def _apply(fn: Callable[[float], float], value: Any) -> Any:
    if isinstance(value, float | int):
        return _finite(fn(float(value)))
    if isinstance(value, list):
        return [_apply(fn, v) for v in value]
    if _is_series(value):
        return {t: r for t, v in value.items() if (r := _finite(fn(v))) is not None}
    raise UnsupportedAlarm(f"cannot apply a function to {type(value).__name__}")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _scalar_op(op: str, a: float, b: float) -> float | None:
    try:
        result = {
            "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b, "^": lambda: a ** b,
            "==": lambda: float(a == b), "!=": lambda: float(a != b), "<": lambda: float(a < b),
            ">": lambda: float(a > b), "<=": lambda: float(a <= b), ">=": lambda: float(a >= b),
            "&&": lambda: float(bool(a) and bool(b)), "||": lambda: float(bool(a) or bool(b)),
        }[op]()
    except (ZeroDivisionError, OverflowError):
        return None  # CloudWatch drops such points
    return _finite(float(result))


def _binary(op: str, a: Any, b: Any) -> Any:
    if isinstance(a, _Band) or isinstance(b, _Band):
        raise UnsupportedAlarm("arithmetic on an anomaly band is not evaluated locally")
    if isinstance(a, list):
        if isinstance(b, list):
            raise UnsupportedAlarm("arithmetic between two arrays of time series")
        return [_binary(op, x, b) for x in a]
    if isinstance(b, list):
        return [_binary(op, a, x) for x in b]
    if _is_series(a) and _is_series(b):
        return {t: r for t in a if t in b and (r := _scalar_op(op, a[t], b[t])) is not None}
    if _is_series(a):
        return {t: r for t, v in a.items() if (r := _scalar_op(op, v, float(b))) is not None}
    if _is_series(b):
        return {t: r for t, v in b.items() if (r := _scalar_op(op, float(a), v)) is not None}
    return _scalar_op(op, float(a), float(b))


def _fill(series: dict[int, float], how: Any, grid: list[int]) -> dict[int, float]:
    if how == "REPEAT":
        filled, last = {}, None
        for t in grid:
            last = series.get(t, last)
            if last is not None:
                filled[t] = last
        return filled
    if how == "LINEAR":
        known = sorted(t for t in grid if t in series)
        filled = {t: series[t] for t in known}
        for left, right in itertools.pairwise(known):
            for t in grid:
                if left < t < right:
                    filled[t] = series[left] + (series[right] - series[left]) * (t - left) / (right - left)
        return filled
    if _is_series(how):
        return {t: series[t] if t in series else how[t] for t in grid if t in series or t in how}
    if isinstance(how, float | int):
        return {t: series.get(t, float(how)) for t in grid}
    raise UnsupportedAlarm(f"FILL with {how!r}")


def _if(condition: Any, then: Any, otherwise: Any, grid: list[int]) -> Any:
    if isinstance(condition, list):
        return [_if(c, then, otherwise, grid) for c in condition]
    if not _is_series(condition):
        chosen = then if condition else otherwise
        return chosen if chosen is not None else {}

    def at(value: Any, t: int) -> float | None:
        if value is None:
            return None
        if _is_series(value):
            return value.get(t)
        if isinstance(value, float | int):
            return float(value)
        raise UnsupportedAlarm("IF branches must be scalars or time series")

    result = {}
    for t, c in condition.items():
        picked = at(then, t) if c else at(otherwise, t)
        if picked is not None:
            result[t] = picked
    return result


def _aggregate(name: str, value: Any) -> Any:
    def reduce(values: list[float]) -> float | None:
        if not values:
            return None
        if name == "SUM":
            return sum(values)
        if name == "AVG":
            return sum(values) / len(values)
        if name == "MIN":
            return min(values)
        if name == "MAX":
            return max(values)
        return statistics.pstdev(values)

    if isinstance(value, list):  # an array of series -> one series, per timestamp
        timestamps = sorted({t for s in value for t in s})
        return {t: r for t in timestamps if (r := reduce([s[t] for s in value if t in s])) is not None}
    if _is_series(value):  # one series -> a scalar
        result = reduce(list(value.values()))
        if result is None:
            raise _NoData()
        return result
    raise UnsupportedAlarm(f"{name} of a scalar")
