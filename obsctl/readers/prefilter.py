"""Byte pre-filters per log shape: which raw lines can hold an ERROR or CRITICAL record.

A file's shape and spacing are sniffed from its first record line; the needles are then exact
for that shape (a pattern that starts with a quoted key cannot match inside a JSON string, where
quotes are escaped). A match only makes a line a candidate: it is parsed to confirm. When the
shape is unknown, or ``--map`` moves the level elsewhere, there is no pre-filter (``None``) and
every line is parsed: slower, never wrong.
"""

from __future__ import annotations

from typing import Any

import orjson

from obsctl.readers.fields import FieldMap
from obsctl.readers.shapes import shape_of

__all__ = ["ACCESS_NEEDLE", "error_needles", "sniff"]

#: Every access line holds this, whatever the shape (the quoted message is one JSON string).
ACCESS_NEEDLE = b'"request finished"'

_V1 = (b'"level":"ERROR"', b'"level":"CRITICAL"')
_V1_SPACED = (b'"level": "ERROR"', b'"level": "CRITICAL"')
_LOGURU = (b'"name": "ERROR"', b'"name": "CRITICAL"')
_OTLP = tuple(b'"severityNumber":%d' % n for n in range(17, 25))
_UPPER = (b"ERROR", b"CRITICAL", b"FATAL")


def sniff(head: bytes) -> tuple[str, bool, dict[str, Any]] | None:
    """``(shape, spaced, doc)`` of the first JSON object line in ``head`` (None: none)."""
    for raw in head.lstrip(b"\x00").split(b"\n")[:-1] or [head]:
        line = raw.strip(b"\x00 \t\r")
        if not line.startswith(b"{"):
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict):
            return shape_of(doc), b'": ' in line, doc
    return None


def _pairs(key: bytes, spaced: bool, names: tuple[bytes, ...]) -> tuple[bytes, ...]:
    separator = b'": "' if spaced else b'":"'
    return tuple(b'"' + key + separator + name + b'"' for name in names)


def error_needles(head: bytes, fields: FieldMap) -> tuple[bytes, ...] | None:
    """Needles for the error lines of a file starting with ``head``, or None (parse all)."""
    if fields.maps("level"):
        return None
    sniffed = sniff(head)
    if sniffed is None:
        return None
    shape, spaced, doc = sniffed
    if shape == "v1":
        # foundation's writer: compact and upper case (a spaced writer of the same keys too).
        return _V1 + _V1_SPACED if spaced else _V1
    if shape == "loguru":
        return _LOGURU
    if shape == "otlp":
        return _OTLP + tuple(n.replace(b":", b": ") for n in _OTLP) if spaced else _OTLP
    if shape not in {"ecs", "python-json-logger", "structlog", "json"}:
        return None
    key = next((k for k in ("log.level", "levelname", "level") if k in doc), None)
    level = doc.get(key) if key is not None else None
    if key is None or not isinstance(level, str) or not (level.islower() or level.isupper()):
        return None  # numeric or mixed-case levels: no exact bytes to look for
    names = _UPPER if level.isupper() else tuple(n.lower() for n in _UPPER)
    if shape == "ecs":
        names += (b"exception",)  # ecs-logging's structlog formatter: log.exception()
    return _pairs(key.encode(), spaced, names)
