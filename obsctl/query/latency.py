"""``slow`` over log files: the access lines (``request finished``) of every file, on every core.

:func:`collect_latency` returns a :class:`~obsctl.analysis.latency.LatencyAccumulator` and the
number of records read, so a caller can tell "no access line in these logs" (a shape that
writes none) from "none in the window". Lines are found by the bytes ``"request finished"``
(the quoted message is one JSON string in every shape), then parsed: foundation's own lines
straight with orjson, the other shapes by their readers.
"""

from __future__ import annotations

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
from obsctl.readers.fields import NO_MAP, FieldMap
from obsctl.readers.parse import as_int, parse_records_checked, ts_to_epoch
from obsctl.readers.prefilter import ACCESS_NEEDLE
from obsctl.sources.files import Damage, LogFile, iter_blocks

__all__ = ["LatencyScan", "collect_latency"]


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

    def __call__(self, task: Task) -> LatencyScan:
        t = self.template
        scan = LatencyScan(LatencyAccumulator(t.limit, t.since, t.until, t.route))
        source = task.log.path
        for buf, lo, hi, _ in iter_blocks(task.log, scan.damage, start=task.start, end=task.end):
            text = searchable(buf)
            view = memoryview(buf)
            try:
                if self.fields.maps("message"):
                    for start, end in _lines_with(text, lo, hi, ()):
                        self._line(scan, bytes(view[start:end]), source)
                else:
                    self._block(scan, text, view, span=(lo, hi), source=source)
            finally:
                view.release()
                del text  # before the generator closes the mmap window
        return scan

    def _block(
        self,
        scan: LatencyScan,
        text: Searchable,
        view: memoryview,
        *,
        span: tuple[int, int],
        source: str,
    ) -> None:
        """The hot loop: one orjson parse per access line, nothing else for foundation's own
        lines unless a window is set or the request may be among the slowest."""
        lo, hi = span
        accumulator = scan.accumulator
        durations = accumulator.durations
        windowed = accumulator.since is not None or accumulator.until is not None
        fast = not self.fields and accumulator.route is None and not windowed
        loads, decode_error = orjson.loads, orjson.JSONDecodeError
        find, rfind = text.find, text.rfind
        by_pair: dict[tuple[object, object], array[float]] = {}
        floor = accumulator.slowest_floor()
        seen = 0
        pos = lo
        try:
            while True:
                hit = find(ACCESS_NEEDLE, pos, hi)
                if hit < 0:
                    return
                start = rfind(b"\n", lo, hit) + 1 or lo
                end = find(b"\n", hit, hi)
                pos = end + 1
                line = view[start:end]
                if fast:
                    try:
                        doc = loads(line)
                    except decode_error:
                        doc = None
                    if type(doc) is dict and "correlation_id" in doc and "ts" in doc:
                        duration = doc.get("duration_ms")
                        if doc.get("message") != ACCESS_MESSAGE or not isinstance(
                            duration, int | float
                        ):
                            continue
                        seen += 1
                        pair = (doc.get("method"), doc.get("route") or doc.get("path"))
                        values = by_pair.get(pair)
                        if values is None:
                            key, _ = _route_key(*pair)
                            values = by_pair[pair] = durations.setdefault(key, array("d"))
                        if duration > floor:  # may be among the slowest: add() keeps details
                            _add(scan, doc, None, counted=True)
                            floor = accumulator.slowest_floor()
                        else:
                            values.append(duration)
                        continue
                self._line(scan, bytes(line), source)
        finally:
            scan.access_lines += seen

    def _line(self, scan: LatencyScan, line: bytes, source: str) -> None:
        if not self.fields:
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                doc = None
            if isinstance(doc, dict) and "correlation_id" in doc and "ts" in doc:
                ts = doc["ts"]
                _add(scan, doc, ts_to_epoch(ts) if isinstance(ts, str) else None)
                return
        records, reason = parse_records_checked(line, fields=self.fields, own_lines=False)
        if reason is not None:
            scan.damage.line(reason, source)
        for record in records:
            _add(scan, record.data, record.epoch)


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
