"""One walker over every route of the root URLconf, for the isolation tests.

``api_routes()`` lists every route under ``/api/`` (DRF routers of any kind, ``@api_view``
functions, ``APIView`` classes and Spectacular's views) with the HTTP methods its view answers;
``ui_route_names()`` lists every named route outside ``/api/`` and ``/admin/``. Both read the
resolver, never a list kept by hand, so a new route shows up in the tests by itself. A route
the walker cannot build a request for (an argument other than ``pk``, a view whose methods it
cannot tell) raises ``RouteNotUnderstood``: coverage cannot silently shrink.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver, reverse

# The verbs a request is sent with; HEAD and OPTIONS answer like GET (or describe the route).
METHODS = ("get", "post", "put", "patch", "delete")
# Stands in for an object id when a route is shown as a template.
_PLACEHOLDER_ID = "00000000-0000-4000-8000-000000000000"


class RouteNotUnderstood(AssertionError):
    """The walker met a route it cannot build a request for: teach it, do not skip it."""


@dataclass(frozen=True)
class ApiRoute:
    """One API route: its URL name, the methods its view answers, whether it takes ``pk``."""

    name: str
    methods: tuple[str, ...]
    takes_pk: bool

    def url(self, pk: Any = None) -> str:
        """The route's path, for the object ``pk`` when it takes one."""
        if self.takes_pk:
            if pk is None:
                raise RouteNotUnderstood(f"{self.name} needs an object id")
            return reverse(self.name, kwargs={"pk": pk})
        return reverse(self.name)

    @property
    def template(self) -> str:
        """The path with ``{pk}`` for the id, e.g. ``/api/instances/{pk}/restart/``."""
        if not self.takes_pk:
            return self.url()
        return self.url(_PLACEHOLDER_ID).replace(_PLACEHOLDER_ID, "{pk}")


def _captured(pattern: URLPattern | URLResolver) -> set[str]:
    """Names of the arguments a path() or re_path() pattern captures."""
    inner = pattern.pattern
    converters = getattr(inner, "converters", None)
    if converters is not None and hasattr(inner, "_route"):  # path(): "<uuid:pk>"
        return set(converters)
    return set(inner.regex.groupindex)  # re_path() / DRF's regex routers: "(?P<pk>…)"


def _methods(pattern: URLPattern) -> tuple[str, ...]:
    """The methods the view of ``pattern`` answers (a viewset's action map, else its class)."""
    callback = pattern.callback
    actions = getattr(callback, "actions", None)  # a viewset bound by a router
    if actions:
        return tuple(m for m in METHODS if m in actions)
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view_class is None:
        raise RouteNotUnderstood(
            f"{pattern.name}: {callback!r} is neither a DRF view nor a class-based view"
        )
    return tuple(m for m in METHODS if hasattr(view_class, m))


def _walk(patterns: list, prefix: str, captured: set[str]) -> Iterator[tuple[URLPattern, set]]:
    for pattern in patterns:
        here = captured | _captured(pattern)
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), here)
        else:
            yield pattern, here


def api_routes() -> list[ApiRoute]:
    """Every route under ``/api/`` of the root URLconf, once per URL name, sorted by name."""
    routes: dict[str, ApiRoute] = {}
    api = next(
        p
        for p in get_resolver().url_patterns
        if isinstance(p, URLResolver) and str(p.pattern) == "api/"
    )
    for pattern, captured in _walk(api.url_patterns, "api/", set()):
        if "format" in captured:
            # DRF's format-suffix twin (``….json``) of a route listed without it: same view.
            continue
        if not pattern.name:
            raise RouteNotUnderstood(f"an unnamed API route: {pattern.pattern}")
        if captured - {"pk"}:
            raise RouteNotUnderstood(f"{pattern.name} takes {sorted(captured)}, not only pk")
        route = ApiRoute(pattern.name, _methods(pattern), "pk" in captured)
        if not route.methods:
            raise RouteNotUnderstood(f"{pattern.name} answers none of {METHODS}")
        known = routes.setdefault(route.name, route)
        if known != route:
            raise RouteNotUnderstood(f"two API routes are named {route.name}")
    return [routes[name] for name in sorted(routes)]


def ui_route_names() -> list[str]:
    """Names (with their namespaces) of every route outside ``/api/`` and ``/admin/``."""
    names: list[str] = []

    def walk(patterns: list, namespace: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if str(pattern.pattern).startswith(("api/", "admin/")):
                    continue
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                walk(pattern.url_patterns, inner)
            elif isinstance(pattern, URLPattern) and pattern.name:
                names.append(f"{namespace}{pattern.name}")

    walk(get_resolver().url_patterns, "")
    return names
