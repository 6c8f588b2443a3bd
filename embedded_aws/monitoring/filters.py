"""Metric filters: their pattern syntax (``parse_filter_pattern``) and their application to
the new events of their log groups (``apply_metric_filters``, ``LogMetricFilters``)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jukinet.clock import system_clock

from ._base import UTC, ClientFactory, UnsupportedFilterPattern, _client, _factory_and_locations, _paginate
from .emf import MetricDatum, put_metric_data

# -- metric filter patterns ----------------------------------------------------------------------

_JSON_TOKEN = re.compile(r"""
    \s*(?:
      (?P<andop>&&) | (?P<orop>\|\|) | (?P<lparen>\() | (?P<rparen>\)) |
      (?P<op>!=|<=|>=|=|<|>) |
      (?P<string>"(?:[^"\\]|\\.)*") |
      (?P<regex>%[^%]*%) |
      (?P<selector>\$(?:\.[A-Za-z0-9_@:\-]+|\[\d+\]|\[\*\])*) |
      (?P<word>[^\s()&|=!<>"]+)
    )""", re.VERBOSE)
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_MISSING = object()


@dataclass(frozen=True)
class _Comparison:
    path: tuple[str | int, ...]
    op: str  # = != < > <= >= exists notexists null true false
    value: Any = None  # float, or str (may contain * wildcards)

    def matches(self, document: Any) -> bool:
        value = _select(document, self.path)
        if self.op == "exists":
            return value is not _MISSING
        if self.op == "notexists":
            return value is _MISSING
        if value is _MISSING:
            return False  # a condition on an absent field is false, for = and != alike
        if self.op == "null":
            return value is None
        if self.op in ("true", "false"):
            return value is (self.op == "true")
        if isinstance(self.value, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False  # a numeric comparison matches JSON numbers only
            return _compare(float(value), self.op, self.value)
        if not isinstance(value, str):
            return False  # a string comparison matches JSON strings only
        hit = _wildcard(self.value).fullmatch(value) is not None
        return hit if self.op == "=" else not hit


def _compare(left: float, op: str, right: float) -> bool:
    return {"=": left == right, "!=": left != right, "<": left < right, ">": left > right,
            "<=": left <= right, ">=": left >= right}[op]


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _select(document: Any, path: tuple[str | int, ...]) -> Any:
    current = document
    for step in path:
        if isinstance(step, int):
            if not isinstance(current, list) or step >= len(current):
                return _MISSING
            current = current[step]
        else:
            if not isinstance(current, dict) or step not in current:
                return _MISSING
            current = current[step]
    return current


def _parse_selector(text: str, pattern: str) -> tuple[str | int, ...]:
    path: list[str | int] = []
    for part in re.findall(r"\.([^.\[]+)|\[(\d+|\*)\]", text[1:]):
        name, index = part
        if index == "*":
            raise UnsupportedFilterPattern(f"array wildcard selectors ([*]) are not evaluated locally: {pattern!r}")
        path.append(int(index) if index else name)
    return tuple(path)


@dataclass(frozen=True)
class FilterPattern:
    """A parsed CloudWatch Logs filter pattern; ``matches(message)``.

    Supported: the empty pattern (every event); term patterns - ``ERROR``, ``"exact
    phrase"``, ``A B`` (all), ``?A ?B`` (any), ``-A`` (none of), matched as case-sensitive
    substrings; JSON patterns ``{ ... }`` with selectors ``$.a.b[0]``, ``= != < > <= >=``,
    quoted or bare strings with ``*`` wildcards (whole-value match), numbers (compared with
    JSON numbers only), ``IS NULL``, ``IS TRUE``, ``IS FALSE``, ``EXISTS``, ``NOT EXISTS``,
    ``&&``, ``||`` and parentheses. Anything else (space-delimited ``[...]`` patterns,
    ``%regex%``, ``[*]``) raises ``UnsupportedFilterPattern`` when parsed."""

    text: str
    kind: str  # all | terms | json | delimited
    _json: Any = None
    _columns: tuple[tuple[tuple[str, str | float], ...], ...] = ()  # per column: (op, value) joined by &&
    _all: tuple[str, ...] = ()
    _any: tuple[str, ...] = ()
    _none: tuple[str, ...] = ()

    def matches(self, message: str, document: Any = _MISSING) -> bool:
        if self.kind == "all":
            return True
        if self.kind == "terms":
            if any(term in message for term in self._none):
                return False
            if self._any and not any(term in message for term in self._any):
                return False
            return all(term in message for term in self._all)
        if self.kind == "delimited":
            return _match_delimited(self._columns, message)
        if document is _MISSING:
            document = _json_document(message)
        if document is None:
            return False
        return _eval_json(self._json, document)

    @property
    def is_json(self) -> bool:
        return self.kind == "json"


def _json_document(message: str) -> Any:
    """The event as a JSON object, or None (a JSON pattern never matches a non-JSON event)."""
    stripped = message.strip()
    if not stripped.startswith("{"):
        return None
    try:
        document = json.loads(stripped)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _eval_json(node: Any, document: Any) -> bool:
    if isinstance(node, _Comparison):
        return node.matches(document)
    op, left, right = node
    if op == "&&":
        return _eval_json(left, document) and _eval_json(right, document)
    return _eval_json(left, document) or _eval_json(right, document)


def parse_filter_pattern(pattern: str) -> FilterPattern:
    """Parse a CloudWatch Logs filter pattern (see ``FilterPattern``)."""
    text = (pattern or "").strip()
    if not text or text == '""':
        return FilterPattern(pattern, "all")
    if text.startswith("{"):
        if not text.endswith("}"):
            raise UnsupportedFilterPattern(f"JSON pattern without closing brace: {pattern!r}")
        return FilterPattern(pattern, "json", _json=_JsonParser(text[1:-1], pattern).parse())
    if text.startswith("["):
        return _parse_delimited(text, pattern)
    if "%" in text:
        raise UnsupportedFilterPattern(f"regular expressions (%...%) are not evaluated locally: {pattern!r}")
    all_terms, any_terms, none_terms = [], [], []
    for match in re.finditer(r'\s*([?-]?)(?:"((?:[^"\\]|\\.)*)"|(\S+))', text):
        prefix, quoted, bare = match.groups()
        term = quoted.replace('\\"', '"') if quoted is not None else bare
        if not term:
            continue
        {"?": any_terms, "-": none_terms, "": all_terms}[prefix].append(term)
    if any_terms and all_terms:
        raise UnsupportedFilterPattern(f"mixing ?term (any) with plain terms is not evaluated locally: {pattern!r}")
    return FilterPattern(pattern, "terms", _all=tuple(all_terms), _any=tuple(any_terms), _none=tuple(none_terms))


_DELIMITED_CONDITION = re.compile(r"""^\s*(?P<op>!=|<=|>=|=|<|>)\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>\S+))\s*$""")


def _parse_delimited(text: str, pattern: str) -> FilterPattern:
    """``[a, b != "10.1.*" && b != "x", c = REJECT]``: one entry per space-separated field of
    the event, each a name with optional conditions joined by ``&&`` (``=``/``!=`` with ``*``
    wildcards, numeric ``< > <= >= = !=``). Not evaluated: ``...``, ``||``, regular expressions."""
    if not text.endswith("]"):
        raise UnsupportedFilterPattern(f"space-delimited pattern without closing bracket: {pattern!r}")
    columns: list[tuple[tuple[str, str | float], ...]] = []
    for entry in text[1:-1].split(","):
        entry = entry.strip()
        if entry == "..." or "||" in entry or "%" in entry:
            raise UnsupportedFilterPattern(f"space-delimited '...', '||' and regular expressions are not evaluated "
                                           f"locally: {pattern!r}")
        conditions: list[tuple[str, str | float]] = []
        for i, part in enumerate(entry.split("&&")):
            if i == 0:
                match = re.match(r"^\s*([A-Za-z_][\w]*)\s*(.*)$", part, re.DOTALL)
                if match is None:
                    raise UnsupportedFilterPattern(f"bad field {part!r}: {pattern!r}")
                part = match.group(2)
                if not part.strip():
                    continue
            else:  # "b != x && b != y": each later condition repeats the field name
                match = re.match(r"^\s*[A-Za-z_][\w]*\s*(.*)$", part, re.DOTALL)
                part = match.group(1) if match else part
            cond = _DELIMITED_CONDITION.match(part)
            if cond is None:
                raise UnsupportedFilterPattern(f"cannot parse condition {part!r}: {pattern!r}")
            op, quoted, bare = cond.group("op"), cond.group("quoted"), cond.group("bare")
            value: str | float = quoted if quoted is not None else bare
            if op in ("<", ">", "<=", ">=") or (quoted is None and _NUMBER.match(bare or "")):
                if not _NUMBER.match(str(value)):
                    raise UnsupportedFilterPattern(f"{op} needs a number: {pattern!r}")
                value = float(value)
            conditions.append((op, value))
        columns.append(tuple(conditions))
    return FilterPattern(pattern, "delimited", _columns=tuple(columns))


def _match_delimited(columns: tuple[tuple[tuple[str, str | float], ...], ...], message: str) -> bool:
    fields = message.split()
    if len(fields) != len(columns):
        return False
    for value, conditions in zip(fields, columns, strict=True):
        for op, expected in conditions:
            if isinstance(expected, float):
                if not _NUMBER.match(value) or not _compare(float(value), op, expected):
                    return False
            else:
                hit = _wildcard(expected).fullmatch(value) is not None
                if hit != (op == "="):
                    return False
    return True


class _JsonParser:
    def __init__(self, body: str, pattern: str) -> None:
        self.pattern = pattern
        self.tokens: list[tuple[str, str]] = []
        position = 0
        body = body.rstrip()
        while position < len(body):
            match = _JSON_TOKEN.match(body, position)
            if match is None or match.end() == position:
                raise UnsupportedFilterPattern(f"cannot parse JSON pattern at {body[position:]!r}: {pattern!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
            while position < len(body) and body[position].isspace():
                position += 1
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (kind is not None and token[0] != kind):
            raise UnsupportedFilterPattern(f"expected {kind or 'more'} at token {self.i}: {self.pattern!r}")
        self.i += 1
        return token

    def parse(self) -> Any:
        node = self.expression()
        if self.peek() is not None:
            raise UnsupportedFilterPattern(f"unexpected {self.peek()[1]!r}: {self.pattern!r}")  # type: ignore[index]
        return node

    def expression(self) -> Any:
        node = self.conjunction()
        while self.peek() and self.peek()[0] == "orop":  # type: ignore[index]
            self.take()
            node = ("||", node, self.conjunction())
        return node

    def conjunction(self) -> Any:
        node = self.term()
        while self.peek() and self.peek()[0] == "andop":  # type: ignore[index]
            self.take()
            node = ("&&", node, self.term())
        return node

    def term(self) -> Any:
        token = self.peek()
        if token is None:
            raise UnsupportedFilterPattern(f"empty condition: {self.pattern!r}")
        if token[0] == "lparen":
            self.take()
            node = self.expression()
            self.take("rparen")
            return node
        selector = self.take("selector")[1]
        path = _parse_selector(selector, self.pattern)
        token = self.take()
        if token[0] == "word":
            keyword = token[1].upper()
            following = self.peek()
            if keyword == "EXISTS":
                return _Comparison(path, "exists")
            if keyword == "NOT" and following and following[1].upper() == "EXISTS":
                self.take()
                return _Comparison(path, "notexists")
            if keyword == "IS" and following and following[1].upper() in ("NULL", "TRUE", "FALSE"):
                self.take()
                return _Comparison(path, following[1].lower())
            raise UnsupportedFilterPattern(f"unsupported condition {selector} {token[1]}: {self.pattern!r}")
        if token[0] != "op":
            raise UnsupportedFilterPattern(f"expected an operator after {selector}: {self.pattern!r}")
        op = token[1]
        kind, raw = self.take()
        if kind == "regex":
            raise UnsupportedFilterPattern(f"regular expressions (%...%) are not evaluated locally: {self.pattern!r}")
        value: Any
        if kind == "string":
            value = json.loads(raw) if "\\" in raw else raw[1:-1]
        elif kind == "word":
            value = float(raw) if _NUMBER.match(raw) else raw
        else:
            raise UnsupportedFilterPattern(f"expected a value after {selector} {op}: {self.pattern!r}")
        if op in ("<", ">", "<=", ">=") and not isinstance(value, float):
            raise UnsupportedFilterPattern(f"{op} needs a number ({selector} {op} {raw}): {self.pattern!r}")
        return _Comparison(path, op, value)


# -- applying metric filters ---------------------------------------------------------------------


@dataclass
class MetricFilterReport:
    """What one pass of ``apply_metric_filters`` did."""

    since_ms: int
    until_ms: int
    events: int = 0  # log events read (of groups that have filters)
    matches: dict[str, int] = field(default_factory=dict)  # "<log group>:<filter name>" -> matching events
    datums: int = 0  # metric data put (defaults included)

    @property
    def next_since(self) -> int:
        return self.until_ms + 1


def _epoch_ms(value: dt.datetime | float | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    return int(value)


def _metric_value(expression: str, document: Any, filter_name: str) -> float | None:
    text = str(expression).strip()
    if text.startswith("$"):
        value = _select(document, _parse_selector(text, text)) if document is not None else _MISSING
        if isinstance(value, bool) or value is _MISSING or value is None:
            return None
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            return float(value)
        return None
    if _NUMBER.match(text):
        return float(text)
    raise UnsupportedFilterPattern(f"metric filter {filter_name}: metricValue {expression!r} is not evaluated locally")


def apply_metric_filters(client_factory: ClientFactory | Any, since: dt.datetime | int,
                         until: dt.datetime | int | None = None, *,
                         locations: Iterable[tuple[str | None, str | None]] | None = None,
                         _seen: set[tuple[str, str, str]] | None = None) -> MetricFilterReport:
    """Evaluate every deployed metric filter on the events of its log group with a
    timestamp in [``since``, ``until``] (datetimes or epoch milliseconds; ``until`` defaults
    to now) and put the resulting metric data: for each matching event and transformation
    ``metricValue`` (a number or ``$.selector``) with its dimensions (``$.selector`` values;
    an event without one of them yields nothing) and unit at the event's timestamp; for each
    minute with events but no match, ``defaultValue`` if the transformation has one.

    Call it with consecutive, non-overlapping windows (``report.next_since``), or use
    ``LogMetricFilters``, which keeps track. Raises ``UnsupportedFilterPattern`` for a
    pattern (or metric value) the local evaluator does not implement."""
    factory, where = _factory_and_locations(client_factory, locations)
    since_ms = _epoch_ms(since, 0)
    until_ms = _epoch_ms(until, int(system_clock().timestamp() * 1000))
    report = MetricFilterReport(since_ms, until_ms)
    for region, account in where:
        logs = _client(factory, "logs", region, account)
        filters = _paginate(logs.describe_metric_filters, "metricFilters", "nextToken")
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for f in filters:  # moto appends on every put: the last one is the filter
            latest[(f["logGroupName"], f["filterName"])] = f
        by_group: dict[str, list[tuple[dict[str, Any], FilterPattern]]] = defaultdict(list)
        for (group, _name), f in sorted(latest.items()):
            by_group[group].append((f, parse_filter_pattern(f.get("filterPattern", ""))))
        data: list[MetricDatum] = []
        for group, group_filters in by_group.items():
            try:
                events = _paginate(logs.filter_log_events, "events", "nextToken", logGroupName=group,
                                   startTime=since_ms, endTime=until_ms, interleaved=True)
            except logs.exceptions.ResourceNotFoundException:
                continue
            if _seen is not None:
                fresh = []
                for e in events:
                    key = (group, e.get("logStreamName", ""), e.get("eventId", ""))
                    if key not in _seen:
                        _seen.add(key)
                        fresh.append(e)
                events = fresh
            report.events += len(events)
            documents = [_json_document(e.get("message", "")) for e in events]
            for f, pattern in group_filters:
                count, produced = _filter_events(f, pattern, events, documents)
                label = f"{group}:{f['filterName']}"
                report.matches[label] = report.matches.get(label, 0) + count
                data += produced
        if data:
            report.datums += put_metric_data(_client(factory, "cloudwatch", region, account), data)
    return report


def _filter_events(f: Mapping[str, Any], pattern: FilterPattern, events: Sequence[Mapping[str, Any]],
                   documents: Sequence[Any]) -> tuple[int, list[MetricDatum]]:
    """The matching events of one metric filter and the metric data they produce."""
    data: list[MetricDatum] = []
    matched_minutes: set[int] = set()
    count = 0
    transformations = f.get("metricTransformations") or []
    for event, document in zip(events, documents, strict=True):
        if not pattern.matches(event.get("message", ""), document if pattern.is_json else _MISSING):
            continue
        count += 1
        matched_minutes.add(event["timestamp"] // 60_000)
        when = dt.datetime.fromtimestamp(event["timestamp"] / 1000, UTC)
        for t in transformations:
            value = _metric_value(t["metricValue"], document, f["filterName"])
            dims = _filter_dimensions(t.get("dimensions") or {}, document)
            if value is not None and dims is not None:
                data.append(MetricDatum(t["metricNamespace"], t["metricName"], dims, (value,), when,
                                        t.get("unit") or None))
    minutes = sorted({e["timestamp"] // 60_000 for e in events} - matched_minutes)
    for t in transformations:
        if t.get("defaultValue") is not None:
            data += [MetricDatum(t["metricNamespace"], t["metricName"], (), (float(t["defaultValue"]),),
                                 dt.datetime.fromtimestamp(minute * 60, UTC), t.get("unit") or None)
                     for minute in minutes]
    return count, data


def _filter_dimensions(selectors: Mapping[str, str], document: Any) -> tuple[tuple[str, str], ...] | None:
    """A transformation's dimensions from the event, or None if one is absent (no metric)."""
    dims = []
    for name, selector in sorted(selectors.items()):
        if document is None or not str(selector).startswith("$"):
            return None
        value = _select(document, _parse_selector(selector, selector))
        if value is _MISSING or value is None or value == "":
            return None
        dims.append((name, value if isinstance(value, str) else json.dumps(value)))
    return tuple(dims)


class LogMetricFilters:
    """``apply_metric_filters`` over consecutive windows: the first ``apply()`` reads from
    ``since`` (default: every event already in the log groups), each later one from where the
    last stopped minus ``overlap`` (to catch events put late with an earlier timestamp, as the
    access log's are: they carry the request time), never counting an event twice."""

    def __init__(self, client_factory: ClientFactory | Any, *, since: dt.datetime | int | None = None,
                 overlap: dt.timedelta = dt.timedelta(minutes=5),
                 locations: Iterable[tuple[str | None, str | None]] | None = None) -> None:
        self.client_factory = client_factory
        self.locations = list(locations) if locations is not None else None
        self.overlap_ms = int(overlap.total_seconds() * 1000)
        self._since = _epoch_ms(since, 0)  # default: every event already there
        self._seen: set[tuple[str, str, str]] = set()

    def apply(self, now: dt.datetime | int | None = None) -> MetricFilterReport:
        report = apply_metric_filters(self.client_factory, self._since, now, locations=self.locations,
                                      _seen=self._seen)
        self._since = max(self._since, report.until_ms - self.overlap_ms)
        return report
