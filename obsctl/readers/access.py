"""foundation's access lines read from their bytes, for the scan of ``obsctl slow``. Pure.

Contract 1 fixes what the writer emits: compact separators, keys in a fixed order, and an access
line that ends ``…,"method":"GET","path":"/orders/7","route":"/orders/{order_id}","status":200,
"duration_ms":3.966}``. Split at its last five ``,"`` (:data:`TAIL_SEPARATOR`, which never
occurs inside a JSON string: a quote there is escaped) the line gives six parts, ``head, method,
path, route, status, duration``. :func:`route_of` reads the method, route and status parts when
each has the grammar the writer gives it; a scan caches its answer by the parts' bytes (a file
has few routes) and checks on every line what the parts cannot tell:

* the line holds one object (no ``{`` in the head but its first byte: a line torn by a crash,
  with the next record run into it, holds two), with the access message as its ``message``;
* the duration part is ``duration_ms":`` (:data:`DURATION_KEY`), a number ``float`` reads, ``}``;
* the line is ASCII (so valid UTF-8; anything else goes to the parser, which tells).

Every line refused goes to the full parser, so the answer is the parser's. Not checked: a byte
changed *inside* a value in a way that keeps the line's structure (a disk error, not a crash)
is read as it is written, as ``grep`` would.
"""

from __future__ import annotations

import re

__all__ = [
    "DURATION_KEY",
    "MESSAGE_KEY",
    "TAIL_PARTS",
    "TAIL_SEPARATOR",
    "route_of",
]

TAIL_SEPARATOR = b',"'
#: How many ``,"`` to split off the end: method, path, route, status, duration.
TAIL_PARTS = 5
MESSAGE_KEY = b'"message":'
DURATION_KEY = b'duration_ms":'

# Printable ASCII but the quote and the backslash: a JSON string's bytes without escapes.
_METHOD = re.compile(rb'method":"([!#-\[\]-~]+)"')
_ROUTE = re.compile(rb'route":"([ !#-\[\]-~]+)"')
_STATUS = re.compile(rb'status":[0-9]{1,6}')


def route_of(method: bytes, route: bytes, status: bytes) -> tuple[str, str] | None:
    """``("METHOD /template", "/template")`` when the three parts are the writer's, else None."""
    verb = _METHOD.fullmatch(method)
    template = _ROUTE.fullmatch(route)
    if verb is None or template is None or _STATUS.fullmatch(status) is None:
        return None
    name = template[1].decode()
    return f"{verb[1].decode()} {name}", name
