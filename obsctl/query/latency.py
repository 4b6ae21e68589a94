"""``slow`` over log files: the access lines (``request finished``) of every file, on every core.

:func:`collect_latency` returns a :class:`~obsctl.analysis.latency.LatencyAccumulator` and the
number of records read, so a caller can tell "no access line in these logs" (a shape that
writes none) from "none in the window". Lines are found by the bytes ``"request finished"``
(the quoted message is one JSON string in every shape). foundation's own lines are read from
their bytes (:mod:`obsctl.readers.access`: the route parts checked once per distinct value and
cached, the duration read with ``float``); any other line, and a request that may be among the
slowest, is parsed (orjson, or the shape's reader). Each task sorts its durations before they
are sent to the parent.
"""

from __future__ import annotations

import mmap
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from obsctl.analysis.analyse import ACCESS_MESSAGE
from obsctl.analysis.latency import LatencyAccumulator
from obsctl.query.scan import (
    Progress,
    Searchable,
    Task,
    _lines_with,
    _run,
    plan_tasks,
    searchable,
)
from obsctl.readers.access import (
    DURATION_KEY,
    MESSAGE_KEY,
    TAIL_PARTS,
    TAIL_SEPARATOR,
    route_of,
)
from obsctl.readers.fields import NO_MAP, FieldMap
from obsctl.readers.parse import as_int, parse_records_checked, ts_to_epoch, v1_epoch
from obsctl.readers.prefilter import ACCESS_NEEDLE
from obsctl.sources.files import Buffer, Damage, LogFile, iter_blocks

__all__ = ["LatencyScan", "collect_latency"]

#: Distinct route parts a task remembers (beyond: checked again on every line).
ROUTES_CACHED = 4096

_UNSEEN = object()
_NOT_FAST = object()  # route parts foundation does not write: the line goes to the parser


@dataclass
class LatencyScan:
    """What a scan found: the accumulator, access lines seen (in or out of the window)."""

    accumulator: LatencyAccumulator
    access_lines: int = 0
    damage: Damage = field(default_factory=Damage)


def _route_key(method: object, target: object) -> tuple[str, str]:
    """``("POST /orders", "/orders")`` from an access line's method and route (or path)."""
    template = target if isinstance(target, str) and target else "?"
    return (f"{method} {template}" if isinstance(method, str) and method else template), template


def _add(
    scan: LatencyScan, data: dict[str, Any], epoch: float | None, *, counted: bool = False
) -> None:
    if data.get("message") != ACCESS_MESSAGE:
        return
    duration = data.get("duration_ms")
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        return
    if not counted:
        scan.access_lines += 1
    accumulator = scan.accumulator
    if not accumulator.wants(epoch):
        return
    route, template = _route_key(data.get("method"), data.get("route") or data.get("path"))
    cid = data.get("correlation_id")
    ts = data.get("ts")
    accumulator.add(
        route=route,
        template=template,
        duration_ms=float(duration),
        status=as_int(data.get("status")),
        correlation_id=cid if isinstance(cid, str) and cid else None,
        ts=ts if isinstance(ts, str) else "",
    )


class _LatencyWork:
    def __init__(self, template: LatencyAccumulator, fields: FieldMap) -> None:
        self.template = template
        self.fields = fields
        # Validated route parts → the task's durations of that route.
        self._routes: dict[tuple[bytes, bytes, bytes], Any] = {}

    def __call__(self, task: Task) -> LatencyScan:
        t = self.template
        scan = LatencyScan(LatencyAccumulator(t.limit, t.since, t.until, t.route))
        self._routes = {}  # its values are this task's arrays
        source = task.log.path
        for buf, lo, hi, _ in iter_blocks(task.log, scan.damage, start=task.start, end=task.end):
            text = searchable(buf)
            view = memoryview(buf)
            try:
                if self.fields.maps("message"):
                    for start, end in _lines_with(text, lo, hi, ()):
                        self._line(scan, bytes(view[start:end]), source)
                elif self.fields:  # --map may name any key: every access line is parsed
                    for start, end in _lines_with(text, lo, hi, (ACCESS_NEEDLE,)):
                        self._line(scan, bytes(view[start:end]), source)
                else:
                    self._block(scan, text, buf, span=(lo, hi), source=source)
            finally:
                view.release()
                del text  # before the generator closes the mmap window
        scan.accumulator.seal()  # sorted here, on this task's core
        return scan

    def _block(
        self,
        scan: LatencyScan,
        text: Searchable,
        buf: Buffer,
        *,
        span: tuple[int, int],
        source: str,
    ) -> None:
        """The hot loop. A schema-v1 access line is read from its bytes (:mod:`~obsctl.readers.
        access`): its tail parts are looked up in caches of the parts already validated (the
        route's counts, the duration's number), and the request counted; anything else, and any
        request that may be among the slowest, goes through the full parser (:meth:`_line`)."""
        lo, hi = span
        accumulator = scan.accumulator
        wants = accumulator.wants
        windowed = accumulator.since is not None or accumulator.until is not None
        # A mapped window slices to bytes; a read() buffer is a bytearray (not hashable): copied.
        mapped = buf if isinstance(buf, mmap.mmap) else None
        routes = self._routes
        find, rfind = text.find, text.rfind
        needle, separator, message, number = (
            ACCESS_NEEDLE,
            TAIL_SEPARATOR,
            MESSAGE_KEY,
            DURATION_KEY,
        )
        back, skip = len(MESSAGE_KEY), len(DURATION_KEY)
        floor = accumulator.slowest_floor()
        seen = 0
        pos = lo
        try:
            while True:
                hit = find(needle, pos, hi)
                if hit < 0:
                    return
                start = rfind(b"\n", lo, hit) + 1 or lo
                end = find(b"\n", hit, hi)
                pos = end + 1
                line = mapped[start:end] if mapped is not None else bytes(buf[start:end])
                try:
                    head, method, _path, route, status, tail = line.rsplit(separator, TAIL_PARTS)
                    values = routes.get((method, route, status), _UNSEEN)
                    if values is _UNSEEN:
                        values = self._route(accumulator, method, route, status)
                    if (
                        values is _NOT_FAST
                        or head.find(b"{", 1) >= 0  # one object: a torn line holds two
                        or not line.startswith(message, hit - start - back)
                        or not tail.startswith(number)
                        or not tail.endswith(b"}")
                        or not line.isascii()
                    ):
                        raise ValueError
                    duration = float(tail[skip:-1])
                except ValueError:  # fewer parts, or not the writer's bytes: the parser tells
                    self._line(scan, line, source)
                    continue
                if windowed:
                    epoch = v1_epoch(line)
                    if epoch is None:
                        self._line(scan, line, source)
                        continue
                    if not wants(epoch):
                        seen += 1
                        continue
                seen += 1
                if values is None:  # another route than --route's
                    continue
                if duration > floor:  # may be among the slowest: the parser keeps its details
                    self._line(scan, line, source, counted=True)
                    floor = accumulator.slowest_floor()
                else:
                    values.append(duration)
        finally:
            scan.access_lines += seen

    def _route(
        self, accumulator: LatencyAccumulator, method: bytes, route: bytes, status: bytes
    ) -> array[float] | object | None:
        """The durations of a line's route (None: not ``--route``'s; ``_NOT_FAST``: route parts
        foundation does not write, for the parser), remembered for the next line."""
        named = route_of(method, route, status)
        found: array[float] | object | None = _NOT_FAST
        if named is not None:
            found = accumulator.durations_of(*named)
        if len(self._routes) < ROUTES_CACHED:
            self._routes[(method, route, status)] = found
        return found

    def _line(self, scan: LatencyScan, line: bytes, source: str, *, counted: bool = False) -> None:
        if not self.fields:
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                doc = None
            if isinstance(doc, dict) and "correlation_id" in doc and "ts" in doc:
                ts = doc["ts"]
                _add(scan, doc, ts_to_epoch(ts) if isinstance(ts, str) else None, counted=counted)
                return
        records, reason = parse_records_checked(line, fields=self.fields, own_lines=False)
        if reason is not None:
            scan.damage.line(reason, source)
        for record in records:
            _add(scan, record.data, record.epoch, counted=counted)


def collect_latency(
    logs: Sequence[LogFile],
    *,
    limit: int,
    since: float | None,
    until: float | None,
    route: str | None,
    damage: Damage,
    progress: Progress | None = None,
    fields: FieldMap = NO_MAP,
) -> LatencyScan:
    """Every access line of ``logs`` in ``[since, until)``: durations per route, the slowest."""
    total = LatencyScan(LatencyAccumulator(limit, since, until, route))
    work = _LatencyWork(total.accumulator, fields)
    for part in _run(plan_tasks(logs), work, progress):
        total.accumulator.merge(part.accumulator)
        total.access_lines += part.access_lines
        damage.merge(part.damage)
    total.damage = damage
    return total
