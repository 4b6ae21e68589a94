"""The matched route template of a finished request, for log lines and metric labels.

Read it *after* the app has handled the request: routers record what they matched in the
scope. Raw paths never become labels; a request that matched nothing is ``<unmatched>``.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

UNMATCHED = "<unmatched>"
# The metrics middleware and the access line both ask, once the app has returned.
_CACHE_KEY = "foundation.route_template"


def route_template(scope: Mapping[str, Any], root_path: str = "") -> str:
    """Full template (router prefixes and mounts included) of the route that handled ``scope``.

    ``root_path`` is the scope's ``root_path`` as it was when the request entered the app
    (before any ``Mount`` extended it). The answer is kept in the scope for the next caller.
    """
    cached = scope.get(_CACHE_KEY)
    if cached is not None:
        return str(cached)
    template = _route_template(scope, root_path)
    # ``type() is dict`` first: the ABC check alone costs more than the rest of this function.
    if type(scope) is dict or isinstance(scope, MutableMapping):
        scope[_CACHE_KEY] = template
    return template


def _route_template(scope: Mapping[str, Any], root_path: str) -> str:
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    # Mounts extend root_path by their own prefix as the request travels inwards.
    mount_prefix = str(scope.get("root_path", ""))[len(root_path) :]
    # FastAPI >= 0.137 keeps the original APIRoute (without include_router prefixes) in
    # scope["route"] and the effective, prefixed template in its own scope namespace.
    fastapi_scope = scope.get("fastapi")
    if type(fastapi_scope) is dict:
        context = fastapi_scope.get("effective_route_context")
        path_format = getattr(context, "path_format", None)
        if isinstance(path_format, str) and path_format:
            return mount_prefix + path_format
    path_format = getattr(route, "path_format", None)
    if not isinstance(path_format, str):
        return UNMATCHED
    if hasattr(route, "routes") and path_format.endswith("/{path}") and mount_prefix:
        # A Mount whose inner app has no router of its own (StaticFiles, a WSGI app): the
        # mount's prefix is already in root_path.
        return mount_prefix + "/{path}"
    return mount_prefix + path_format
