"""The HTTP side of panelctl: requests with the token, and the routes taken from the served
OpenAPI schema (by operationId), so a route the panel no longer serves fails loudly."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import urllib3

from panelctl import __version__

# What panelctl calls: operationId -> (method, the request body fields it may send).
ROUTES: dict[str, tuple[str, tuple[str, ...]]] = {
    "me_retrieve": ("get", ()),
    "instances_list": ("get", ()),
    "instances_retrieve": ("get", ()),
    "instances_create": (
        "post",
        (
            "tenant",
            "name",
            "product",
            "version",
            "hostname",
            "context_path",
            "heap_min_mb",
            "heap_max_mb",
            "tier",
            "host",
        ),
    ),
    "backups_create": ("post", ("instance", "mode")),
    "backups_restore_create": (
        "post",
        ("mode", "confirm", "skip_safety", "name", "hostname", "host"),
    ),
    "operations_retrieve": ("get", ()),
    "operations_steps_retrieve": ("get", ()),
}

SCHEMA_PATH = "/api/schema/"


class ApiError(Exception):
    """The panel answered with an error status (4xx or 5xx)."""

    def __init__(self, status: int, data: Any) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.data = data

    def lines(self) -> list[str]:
        """The answer as readable lines: ``detail``, or one line per field message."""
        found = list(_messages(self.data))
        return found or [f"the panel answered HTTP {self.status}"]


class Unreachable(Exception):
    """The panel could not be reached (DNS, refused connection, timeout, TLS)."""


class SchemaError(Exception):
    """The served schema lacks a route (or a field) panelctl relies on."""


def _messages(data: Any, prefix: str = "") -> Any:
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("detail", "non_field_errors") and not prefix:
                yield from _messages(value, "")
            else:
                yield from _messages(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, list):
        for item in data:
            yield from _messages(item, prefix)
    elif data not in (None, ""):
        yield f"{prefix}: {data}" if prefix else str(data)


@dataclass
class Response:
    """A successful answer: status, decoded JSON (or None) and headers."""

    status: int
    data: Any
    headers: dict[str, str] = field(default_factory=dict)


class Schema:
    """The served OpenAPI document, read for the routes panelctl uses."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.operations: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for path, item in document.get("paths", {}).items():
            for method, operation in item.items():
                if isinstance(operation, dict) and "operationId" in operation:
                    self.operations[operation["operationId"]] = (method, path, operation)

    def route(self, operation_id: str) -> tuple[str, str]:
        """``(METHOD, path template)`` of an operation, checked against :data:`ROUTES`."""
        expected_method = ROUTES[operation_id][0]
        if operation_id not in self.operations:
            raise SchemaError(f"the panel's schema has no operation {operation_id!r}")
        method, path, _ = self.operations[operation_id]
        if method != expected_method:
            raise SchemaError(
                f"{operation_id} is {method.upper()} in the schema, not {expected_method.upper()}"
            )
        return method.upper(), path

    def body_fields(self, operation_id: str) -> set[str]:
        """The properties of an operation's JSON request body (empty without a body)."""
        _, _, operation = self.operations[operation_id]
        content = operation.get("requestBody", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        return set(self._resolve(schema).get("properties", {}))

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        if not ref:
            return schema
        node: Any = self.document
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return self._resolve(node)

    def problems(self) -> list[str]:
        """Every route or body field panelctl uses that the schema does not have."""
        found = []
        for operation_id, (_, fields) in ROUTES.items():
            try:
                self.route(operation_id)
            except SchemaError as err:
                found.append(str(err))
                continue
            missing = sorted(set(fields) - self.body_fields(operation_id))
            if missing:
                found.append(f"{operation_id}: the request body has no {', '.join(missing)}")
        return found


class Client:
    """An API token's view of one panel."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.http = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=timeout), retries=urllib3.Retry(0, redirect=0)
        )
        self._schema: Schema | None = None

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send one request; an error status raises :class:`ApiError`."""
        url = self.url + path
        if query:
            url += ("&" if "?" in url else "?") + urlencode(
                {k: v for k, v in query.items() if v is not None}
            )
        sent = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "User-Agent": f"panelctl/{__version__}",
            **(headers or {}),
        }
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        try:
            answer = self.http.request(method, url, body=payload, headers=sent)
        except urllib3.exceptions.HTTPError as err:
            raise Unreachable(f"cannot reach {self.url}: {err}") from err
        data: Any = None
        if answer.data:
            try:
                data = json.loads(answer.data)
            except ValueError:
                data = answer.data.decode(errors="replace")[:500]
        if answer.status >= 400:
            raise ApiError(answer.status, data)
        if answer.status >= 300:
            raise ApiError(
                answer.status, f"unexpected redirect to {answer.headers.get('Location')}"
            )
        return Response(answer.status, data, dict(answer.headers))

    @property
    def schema(self) -> Schema:
        """The served schema (fetched once per client)."""
        if self._schema is None:
            document = self.request("GET", SCHEMA_PATH, query={"format": "json"}).data
            if not isinstance(document, dict) or "paths" not in document:
                raise SchemaError(f"{self.url}{SCHEMA_PATH} did not answer an OpenAPI document")
            self._schema = Schema(document)
        return self._schema

    def call(
        self,
        operation_id: str,
        *,
        path_params: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Call an operation of the schema by its operationId."""
        method, template = self.schema.route(operation_id)
        params = path_params or {}

        def fill(match: re.Match[str]) -> str:
            return quote(str(params[match.group(1)]), safe="")

        return self.request(
            method, re.sub(r"\{(\w+)\}", fill, template), query=query, body=body, headers=headers
        )

    def list_all(self, operation_id: str, query: dict[str, Any] | None = None) -> list[Any]:
        """Every item of a paginated list, following ``next``."""
        page = self.call(operation_id, query=query).data
        items = list(page["results"])
        while page.get("next"):
            # Only the path and query of ``next``: the token goes to the configured panel only.
            parts = urlsplit(page["next"])
            page = self.request("GET", parts.path + (f"?{parts.query}" if parts.query else "")).data
            items.extend(page["results"])
        return items
