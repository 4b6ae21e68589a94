"""A protocol-faithful loopback fake of Loki's query API, for obsctl's tests and benchmark.

A real HTTP server on 127.0.0.1 in a thread, following Loki's documented behaviour:

* ``GET|POST /loki/api/v1/query_range``: ``start`` inclusive, ``end`` exclusive (ns, s, float s
  or RFC 3339), defaults now-1h..now, ``since``; ``direction`` case-insensitive, default
  backward; ``limit`` default 100, ``<= 0`` and ``> max_entries_limit_per_query`` refused with
  Loki's texts; entries of all matching streams merged by time in ``direction``, cut
  globally at ``limit``, regrouped per label set; ``values`` as ``["<ns string>", "<line>"]``;
  several entries may share one nanosecond (their order across streams is the fake's
  ``tie_order``, because Loki does not promise one).
* Metric queries (``count_over_time`` with ``[range] offset d``, ``sum [by (…)]``, ``topk``,
  comparisons with a number such as ``> 0``, ``and``/``or``/``unless``, as the ruler's alert
  expressions use them) → ``matrix`` on
  ``query_range``, ``vector`` on ``query``; times as float seconds, values as strings. A log
  query on ``/query`` is refused with Loki's text.
* LogQL subset: stream selector (``= != =~ !~``, anchored regexes, the empty-compatible
  rule), line filters (``|= != |~ !~``), ``| json`` (nested keys joined by ``_``, arrays
  skipped, ``_extracted`` on clashes, ``__error__`` on bad JSON), label filters (``= != =~
  !~``). Go string literals and backtick raw strings, with ``invalid char escape`` errors.
* Errors as ``text/plain; charset=utf-8`` bodies without a trailing newline; 401 ``no org id``
  when a tenant is required and ``X-Scope-OrgID`` is missing; scripted faults via ``inject``.
"""

from __future__ import annotations

import bisect
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

NS = 1_000_000_000
_DUR_UNITS = {"ns": 1, "us": 1000, "µs": 1000, "ms": 10**6, "s": NS, "m": 60 * NS, "h": 3600 * NS}
_DUR_UNITS |= {"d": 86400 * NS, "w": 7 * 86400 * NS, "y": 365 * 86400 * NS}
EMPTY_COMPATIBLE = (
    "parse error : queries require at least one regexp or equality matcher that does not have "
    'an empty-compatible value. For instance, app=~".*" does not meet this requirement, but '
    'app=~".+" will'
)


class LokiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------- LogQL subset: model


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True)
class LogQuery:
    matchers: tuple[Matcher, ...]
    stages: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class MetricQuery:
    log: LogQuery
    window_ns: int
    by: tuple[str, ...] | None  # None: count_over_time alone (one series per label set)
    topk: int | None = None
    offset_ns: int = 0  # `[5m] offset 1h`: the range ends that much earlier


@dataclass(frozen=True)
class BinaryQuery:
    """``left OP right`` between metric queries: a comparison with a number keeps the samples
    it holds for (``> 0``); ``and``/``or``/``unless`` match samples on their whole label set."""

    left: MetricQuery | BinaryQuery
    op: str
    right: MetricQuery | BinaryQuery | float


Metric = MetricQuery | BinaryQuery
# LogQL's binary precedence (as PromQL's): comparisons, then and/unless, then or.
_PRECEDENCE = {"==": 3, "!=": 3, ">": 3, "<": 3, ">=": 3, "<=": 3, "and": 2, "unless": 2, "or": 1}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}


# ---------------------------------------------------------------- LogQL subset: parser


class _Parser:
    _TOKEN = re.compile(
        r'\s*(?:(?P<str>"(?:[^"\\\n]|\\.)*")|(?P<raw>`[^`]*`)|(?P<op>\|=|\|~|!=|!~|=~|==|>=|<=|=|>|<|\||'
        r"[{}(),\[\]])|(?P<dur>\d+(?:ns|us|µs|ms|s|m|h|d|w|y))|(?P<num>\d+(?:\.\d+)?)|"
        r"(?P<ident>[A-Za-z_][A-Za-z0-9_]*))"
    )

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            rest = text[pos:]
            if rest.strip() == "":
                break
            match = self._TOKEN.match(text, pos)
            if not match or match.end() == pos:
                col = pos + len(rest) - len(rest.lstrip()) + 1
                raise self._error(col, f"unexpected {rest.strip()[:1]!r}")
            kind = match.lastgroup or ""
            start = match.start(kind)
            self.tokens.append((kind, match.group(kind), start + 1))
            pos = match.end()
        self.index = 0

    def _error(self, col: int, what: str) -> LokiError:
        return LokiError(400, f"parse error at line 1, col {col}: syntax error: {what}")

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, value: str | None = None, kind: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise self._error(len(self.text) + 1, "unexpected $end")
        if (value is not None and token[1] != value) or (kind is not None and token[0] != kind):
            wanted = value or kind
            raise self._error(token[2], f"unexpected {token[1]}, expecting {wanted}")
        self.index += 1
        return token

    def string(self) -> str:
        token = self.peek()
        if token is None or token[0] not in ("str", "raw"):
            col = token[2] if token else len(self.text) + 1
            raise self._error(col, f"unexpected {token[1] if token else '$end'}, expecting STRING")
        self.index += 1
        if token[0] == "raw":
            return token[1][1:-1]
        return go_unquote(token[1][1:-1], token[2])

    def parse(self) -> LogQuery | Metric:
        query = self._binary(1)
        if self.peek() is not None:
            token = self.peek()
            assert token is not None
            raise self._error(token[2], f"unexpected {token[1]}")
        return query

    def _binary(self, min_precedence: int) -> LogQuery | Metric:
        left: LogQuery | Metric = self._expr()
        while (token := self.peek()) is not None and _PRECEDENCE.get(token[1], 0) >= min_precedence:
            if isinstance(left, LogQuery):
                # A log query's `!=` is a line filter, already taken by _log.
                raise self._error(token[2], f"unexpected {token[1]}")
            op = self.take()[1]
            right: Metric | float
            nxt = self.peek()
            if op in _COMPARE and nxt is not None and nxt[0] == "num":
                right = float(self.take()[1])
            else:
                inner = self._binary(_PRECEDENCE[op] + 1)
                if isinstance(inner, LogQuery):
                    raise LokiError(400, f"parse error : unexpected log query on the right of {op}")
                right = inner
            left = BinaryQuery(left, op, right)
        return left

    def _expr(self) -> LogQuery | MetricQuery:
        token = self.peek()
        if token is None:
            raise self._error(len(self.text) + 1, "unexpected $end")
        if token[1] == "{":
            return self._log()
        if token[1] == "count_over_time":
            return self._count()
        if token[1] in ("sum", "topk"):
            return self._aggregate()
        raise self._error(token[2], f"unexpected IDENTIFIER {token[1]}")

    def _aggregate(self) -> MetricQuery:
        name = self.take()[1]
        topk = None
        by: tuple[str, ...] = ()
        if name == "topk":
            self.take("(")
            topk = int(self.take(kind="num")[1])
            self.take(",")
            inner = self._expr()
            self.take(")")
            if not isinstance(inner, MetricQuery):
                raise LokiError(400, "parse error : topk needs a metric query")
            return MetricQuery(inner.log, inner.window_ns, inner.by, topk, inner.offset_ns)
        if self.peek() and self.peek()[1] == "by":  # type: ignore[index]
            self.take("by")
            by = self._label_list()
        self.take("(")
        inner = self._expr()
        self.take(")")
        if self.peek() and self.peek()[1] == "by":  # type: ignore[index]
            self.take("by")
            by = self._label_list()
        if not isinstance(inner, MetricQuery):
            raise LokiError(400, "parse error : sum needs a metric query")
        return MetricQuery(inner.log, inner.window_ns, by, offset_ns=inner.offset_ns)

    def _label_list(self) -> tuple[str, ...]:
        self.take("(")
        names = [self.take(kind="ident")[1]]
        while self.peek() and self.peek()[1] == ",":  # type: ignore[index]
            self.take(",")
            names.append(self.take(kind="ident")[1])
        self.take(")")
        return tuple(names)

    def _count(self) -> MetricQuery:
        self.take("count_over_time")
        self.take("(")
        log = self._log()
        self.take("[")
        window = parse_duration(self.take(kind="dur")[1])
        self.take("]")
        offset = 0
        if (token := self.peek()) is not None and token[1] == "offset":
            self.take("offset")
            offset = parse_duration(self.take(kind="dur")[1])
        self.take(")")
        return MetricQuery(log, window, None, offset_ns=offset)

    def _log(self) -> LogQuery:
        self.take("{")
        matchers = [self._matcher()]
        while self.peek() and self.peek()[1] == ",":  # type: ignore[index]
            self.take(",")
            matchers.append(self._matcher())
        self.take("}")
        if not any(m.op in ("=", "=~") and not m.matches({}) for m in matchers):
            raise LokiError(400, EMPTY_COMPATIBLE)
        stages: list[tuple[str, Any]] = []
        while (token := self.peek()) is not None and token[1] in ("|=", "|~", "!=", "!~", "|"):
            op = self.take()[1]
            if op != "|":
                value = self.string()
                if op in ("|=", "!="):
                    stages.append(("line", (op, value)))
                    continue
                try:
                    stages.append(("line", (op, re.compile(value))))
                except re.error as exc:
                    raise LokiError(400, f"parse error : error parsing regexp: {exc}") from None
                continue
            name = self.take(kind="ident")[1]
            if name == "json":
                stages.append(("json", None))
                continue
            op_token = self.take()
            if op_token[1] not in ("=", "!=", "=~", "!~"):
                raise self._error(op_token[2], f"unexpected {op_token[1]}")
            stages.append(("label", Matcher(name, op_token[1], self.string())))
        return LogQuery(tuple(matchers), tuple(stages))

    def _matcher(self) -> Matcher:
        name = self.take(kind="ident")[1]
        op = self.take()
        if op[1] not in ("=", "!=", "=~", "!~"):
            raise self._error(op[2], f"unexpected {op[1]}, expecting = or != or =~ or !~")
        value = self.string()
        if op[1] in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise LokiError(400, f"parse error : error parsing regexp: {exc}") from None
        return Matcher(name, op[1], value)


# No "\\a": the reference page documents {place="g\\arden"} as "invalid char escape".
_SIMPLE_ESCAPES = {
    "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", '"': '"', "'": "'",
}  # fmt: skip


def go_unquote(body: str, col: int) -> str:
    """Go's ``strconv.Unquote`` for the inside of a double-quoted literal."""
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        nxt = body[i + 1 : i + 2]
        if nxt in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[nxt])
            i += 2
            continue
        size = {"x": 2, "u": 4, "U": 8}.get(nxt)
        digits = body[i + 2 : i + 2 + (size or 0)]
        if size and len(digits) == size and all(c in "0123456789abcdefABCDEF" for c in digits):
            code = int(digits, 16)
            if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                break
            out.append(chr(code))
            i += 2 + size
            continue
        octal = body[i + 1 : i + 4]
        if len(octal) == 3 and all(c in "01234567" for c in octal) and int(octal, 8) < 256:
            out.append(chr(int(octal, 8)))
            i += 4
            continue
        break
    else:
        return "".join(out)
    raise LokiError(400, f"parse error at line 1, col {col}: invalid char escape")


def parse_duration(text: str) -> int:
    match = re.fullmatch(r"(\d+)(ns|us|µs|ms|s|m|h|d|w|y)", text)
    if not match:
        raise LokiError(400, f"parse error : not a valid duration string: {text!r}")
    return int(match.group(1)) * _DUR_UNITS[match.group(2)]


def parse_logql(text: str) -> LogQuery | Metric:
    return _Parser(text).parse()


# ---------------------------------------------------------------- evaluation


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            name = re.sub(r"[^A-Za-z0-9_]", "_", str(key))
            _flatten(f"{prefix}_{name}" if prefix else name, inner, out)
    elif isinstance(value, list):
        return
    elif isinstance(value, str):
        out[prefix] = value
    elif value is None:
        out[prefix] = ""
    else:
        out[prefix] = json.dumps(value)


def run_pipeline(
    stages: tuple[tuple[str, Any], ...], labels: dict[str, str], line: str
) -> dict[str, str] | None:
    """Apply the stages to one entry: the resulting labels, or None when filtered out."""
    current = labels
    for kind, arg in stages:
        if kind == "line":
            op, needle = arg
            if op == "|=":
                keep = needle in line
            elif op == "!=":
                keep = needle not in line
            elif op == "|~":
                keep = needle.search(line) is not None
            else:
                keep = needle.search(line) is None
            if not keep:
                return None
        elif kind == "json":
            extracted: dict[str, str] = {}
            try:
                doc = json.loads(line)
            except ValueError:
                doc = None
            current = dict(current)
            if not isinstance(doc, dict):
                current["__error__"] = "JSONParserErr"
                continue
            _flatten("", doc, extracted)
            for key, value in extracted.items():
                current[f"{key}_extracted" if key in labels else key] = value
        elif not arg.matches(current):
            return None
    return current


@dataclass
class _Entry:
    ts: int
    stream: int
    seq: int
    line: str


@dataclass
class FakeLoki:
    """The server state; ``start()`` listens on 127.0.0.1, ``url`` is its base URL."""

    max_entries_limit_per_query: int = 5000
    require_tenant: bool = False
    tie_order: str = "labels"  # labels | reverse | shuffle
    streams: list[dict[str, str]] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    _entries: list[_Entry] = field(default_factory=list)
    _keys: list[int] = field(default_factory=list)
    _faults: list[tuple[int, str, bytes, float]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rng: random.Random = field(default_factory=lambda: random.Random(7))

    # ---- data

    def push(self, labels: dict[str, str], values: list[tuple[int, str]]) -> None:
        """Add entries to the stream with these labels (Loki drops exact duplicates)."""
        with self._lock:
            try:
                index = self.streams.index(labels)
            except ValueError:
                self.streams.append(dict(labels))
                index = len(self.streams) - 1
            existing = {(e.ts, e.line) for e in self._entries if e.stream == index}
            for ts, line in values:
                if (ts, line) in existing:
                    continue
                existing.add((ts, line))
                self._entries.append(_Entry(ts, index, len(self._entries), line))
            self._entries.sort(key=lambda e: (e.ts, e.seq))
            self._keys = [e.ts for e in self._entries]

    def log_ranges(self) -> list[tuple[int, int]]:
        """``(start, end)`` in ns of every log ``query_range`` request, as asked (for tests that
        check how wide a client searched)."""
        ranges = []
        for request in list(self.requests):
            if request["path"] != "/loki/api/v1/query_range" or "start" not in request:
                continue
            if isinstance(parse_logql(request.get("query", "")), LogQuery):
                ranges.append((parse_time(request["start"]), parse_time(request["end"])))
        return ranges

    def inject(
        self, status: int, body: bytes | str, *, content_type: str = "text/plain", delay: float = 0
    ) -> None:
        """Answer the next request with this instead of the real result."""
        raw = body.encode() if isinstance(body, str) else body
        self._faults.append((status, content_type, raw, delay))

    # ---- lifecycle

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeLoki:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeLoki:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ---- API

    def handle(self, path: str, params: dict[str, str], headers: dict[str, str]) -> Any:
        self.requests.append({"path": path, **params})
        if self.require_tenant and not headers.get("x-scope-orgid"):
            raise LokiError(401, "no org id")
        now = time.time_ns()
        if path == "/loki/api/v1/query_range":
            return self._query_range(params, now)
        if path == "/loki/api/v1/query":
            return self._query(params, now)
        if path == "/ready":
            return None
        raise LokiError(404, "404 page not found\n")

    def _limit(self, params: dict[str, str]) -> int:
        raw = params.get("limit", "100")
        try:
            limit = int(raw)
        except ValueError:
            raise LokiError(400, f'strconv.Atoi: parsing "{raw}": invalid syntax') from None
        if limit <= 0:
            raise LokiError(400, "limit must be a positive value")
        cap = self.max_entries_limit_per_query
        if cap and limit > cap:
            raise LokiError(
                400,
                "max entries limit per query exceeded, limit > max_entries_limit_per_query "
                f"({limit} > {cap})",
            )
        return limit

    def _direction(self, params: dict[str, str]) -> str:
        direction = params.get("direction", "backward")
        if direction.lower() not in ("forward", "backward"):
            raise LokiError(400, f"invalid direction '{direction}'")
        return direction.lower()

    def _query_range(self, params: dict[str, str], now: int) -> Any:
        end = parse_time(params["end"]) if params.get("end") else now
        if params.get("start"):
            start = parse_time(params["start"])
        elif params.get("since"):
            start = end - parse_duration(params["since"])
        else:
            start = end - 3600 * NS
        if end < start:
            raise LokiError(400, f"invalid query, through < from ({end} < {start})")
        query = parse_logql(params.get("query", ""))
        limit = self._limit(params)
        direction = self._direction(params)
        if isinstance(query, MetricQuery | BinaryQuery):
            step = _step(params, start, end)
            return _envelope("matrix", self._matrix(query, start, end, step))
        return _envelope("streams", self._streams(query, start, end, limit, direction))

    def _query(self, params: dict[str, str], now: int) -> Any:
        at = parse_time(params["time"]) if params.get("time") else now
        query = parse_logql(params.get("query", ""))
        self._limit(params)
        self._direction(params)
        if isinstance(query, LogQuery):
            raise LokiError(
                400,
                "log queries are not supported as an instant query type, please change your "
                "query to a range query type",
            )
        return _envelope("vector", self._vector(query, at))

    def _selected(
        self, query: LogQuery, start: int, end: int, *, backward: bool = False
    ) -> Iterator[tuple[_Entry, dict[str, str]]]:
        """Matching entries in [start, end), in time order (newest first when ``backward``)."""
        streams = [all(m.matches(labels) for m in query.matchers) for labels in self.streams]
        lo = bisect.bisect_left(self._keys, start)
        hi = bisect.bisect_left(self._keys, end)
        window = self._entries[lo:hi]
        for entry in reversed(window) if backward else window:
            if not streams[entry.stream]:
                continue
            labels = run_pipeline(query.stages, self.streams[entry.stream], entry.line)
            if labels is not None:
                yield entry, labels

    def _tie_key(self) -> Callable[[tuple[_Entry, dict[str, str]]], Any]:
        names = [orjson.dumps(labels, option=orjson.OPT_SORT_KEYS) for labels in self.streams]
        if self.tie_order == "shuffle":
            salt = {i: self._rng.random() for i in range(len(self.streams))}
            return lambda item: salt[item[0].stream]
        if self.tie_order == "reverse":
            return lambda item: tuple(-b for b in names[item[0].stream])
        return lambda item: names[item[0].stream]

    def _streams(
        self, query: LogQuery, start: int, end: int, limit: int, direction: str
    ) -> list[dict[str, Any]]:
        selected: list[tuple[_Entry, dict[str, str]]] = []
        with self._lock:
            tie = self._tie_key()
            # Everything up to `limit`, plus the rest of the last nanosecond (for tie order).
            for item in self._selected(query, start, end, backward=direction == "backward"):
                if len(selected) >= limit and item[0].ts != selected[-1][0].ts:
                    break
                selected.append(item)
        # Merge across streams by time in `direction`; the order inside one nanosecond is not
        # specified by Loki, so the fake makes it configurable.
        selected.sort(key=tie)
        selected.sort(key=lambda item: item[0].ts, reverse=direction == "backward")
        grouped: dict[bytes, dict[str, Any]] = {}
        for entry, labels in selected[:limit]:
            key = orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)
            stream = grouped.setdefault(key, {"stream": labels, "values": []})
            stream["values"].append([str(entry.ts), entry.line])
        return list(grouped.values())

    def _count(self, query: MetricQuery, at: int) -> dict[bytes, tuple[dict[str, str], int]]:
        counts: dict[bytes, tuple[dict[str, str], int]] = {}
        with self._lock:
            end = at - query.offset_ns
            selected = list(self._selected(query.log, end - query.window_ns + 1, end + 1))
        for _entry, labels in selected:
            metric = labels
            if query.by is not None:
                metric = {k: labels[k] for k in query.by if labels.get(k)}
            key = orjson.dumps(metric, option=orjson.OPT_SORT_KEYS)
            previous = counts.get(key, (metric, 0))[1]
            counts[key] = (metric, previous + 1)
        return counts

    def _evaluate(self, query: Metric, at: int) -> dict[bytes, tuple[dict[str, str], float]]:
        """The samples of ``query`` at ``at``, keyed by their label set."""
        if isinstance(query, MetricQuery):
            return dict(self._count(query, at))
        left = self._evaluate(query.left, at)
        if isinstance(query.right, float):
            compare, bound = _COMPARE[query.op], query.right
            return {key: sample for key, sample in left.items() if compare(sample[1], bound)}
        right = self._evaluate(query.right, at)
        if query.op == "and":
            return {key: sample for key, sample in left.items() if key in right}
        if query.op == "unless":
            return {key: sample for key, sample in left.items() if key not in right}
        if query.op == "or":
            return left | {key: sample for key, sample in right.items() if key not in left}
        compare = _COMPARE[query.op]
        return {
            key: sample
            for key, sample in left.items()
            if key in right and compare(sample[1], right[key][1])
        }

    def _vector(self, query: Metric, at: int) -> list[dict[str, Any]]:
        counts = sorted(self._evaluate(query, at).values(), key=lambda item: -item[1])
        if isinstance(query, MetricQuery) and query.topk is not None:
            counts = counts[: query.topk]
        return [{"metric": m, "value": [at / NS, _number(n)]} for m, n in counts]

    def _matrix(self, query: Metric, start: int, end: int, step: int) -> list[dict[str, Any]]:
        series: dict[bytes, dict[str, Any]] = {}
        for at in range(start, end + 1, step):
            for key, (metric, count) in self._evaluate(query, at).items():
                item = series.setdefault(key, {"metric": metric, "values": []})
                item["values"].append([at / NS, _number(count)])
        return list(series.values())


def _number(value: float) -> str:
    """A sample value as Loki writes it (``3``, not ``3.0``)."""
    return str(int(value)) if value == int(value) else repr(value)


def _step(params: dict[str, str], start: int, end: int) -> int:
    raw = params.get("step")
    if raw:
        step = parse_duration(raw) if not re.fullmatch(r"[\d.]+", raw) else int(float(raw) * NS)
    else:
        step = max((end - start) // (250 * NS), 1) * NS
    if (end - start) // step > 11000:
        raise LokiError(
            400,
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the "
            "query resolution (?step=XX)",
        )
    return step


def parse_time(raw: str) -> int:
    """Loki's ``parseTimestamp``: ≤10 digits = s, longer integer = ns, '.' = float s, RFC 3339."""
    if raw.isdigit():
        return int(raw) * NS if len(raw) <= 10 else int(raw)
    if "." in raw and re.fullmatch(r"\d+\.\d*", raw):
        whole, _, frac = raw.partition(".")
        return int(whole) * NS + int((frac + "0" * 9)[:9])
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise LokiError(400, f'cannot parse "{raw}" to a valid timestamp') from None
    return int(moment.timestamp()) * NS + moment.microsecond * 1000


def _envelope(kind: str, result: Any) -> dict[str, Any]:
    stats = {"summary": {"totalEntriesReturned": 0, "execTime": 0}, "querier": {}, "ingester": {}}
    return {"status": "success", "data": {"resultType": kind, "result": result, "stats": stats}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle + delayed ACK add 40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self._answer(parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)))

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = self.rfile.read(length).decode() if length else ""
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        params.update(parse_qsl(form, keep_blank_values=True))
        self._answer(parts.path, params)

    def _answer(self, path: str, params: dict[str, str]) -> None:
        fake: FakeLoki = self.server.fake  # type: ignore[attr-defined]
        if fake._faults:
            status, content_type, body, delay = fake._faults.pop(0)
            fake.requests.append({"path": path, **params})
            if delay:
                time.sleep(delay)
            self._send(status, content_type, body)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            result = fake.handle(path, params, headers)
        except LokiError as exc:
            self._send(exc.status, "text/plain; charset=utf-8", exc.message.encode())
            return
        if result is None:
            self._send(200, "text/plain; charset=utf-8", b"ready\n")
            return
        self._send(200, "application/json; charset=UTF-8", orjson.dumps(result))

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            return
