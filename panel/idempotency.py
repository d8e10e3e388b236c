"""Idempotency keys: the one place where a repeated request finds the operation it started.

A key belongs to whoever sent it: an API token (each token its own namespace, so a
tenant-bound token only ever finds what it started itself, inside its tenant) or, without a
token, the logged-in user. With the key the panel remembers a fingerprint of the request
(method, path and body): the same key with the same request returns the same operation; the
same key with another request (another kind, target or body) is refused with
:class:`IdempotencyConflict` (409 in the API, a form error in the UI). An operation the caller
can no longer see (its tenant is out of reach) is never returned.

The key travels from the view through the services' ``idempotency_key: str`` parameters to
:func:`panel.operations.operation_start` as an :class:`IdempotencyKey`: a ``str`` that also
carries the fingerprint, so no service signature has to change.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.exceptions import ValidationError

from panel.access import Access

MAX_KEY_LENGTH = 100
# Form fields that differ between two submits of the same form, and the key itself.
_NOT_PART_OF_THE_REQUEST = {"csrfmiddlewaretoken", "idempotency_key"}


class IdempotencyKey(str):
    """A client's idempotency key together with the fingerprint of the request it came with."""

    fingerprint: str

    def __new__(cls, key: str, fingerprint: str = "") -> IdempotencyKey:
        obj = super().__new__(cls, key)
        obj.fingerprint = fingerprint
        return obj


class IdempotencyConflict(ValidationError):
    """The key was already used for a different request (answered 409; the UI shows it)."""

    def __init__(self, operation: Any = None) -> None:
        self.operation = operation
        what = f" (operation {operation.id})" if operation is not None else ""
        super().__init__(
            f"This idempotency key was already used for a different request{what}; "
            "use a new key for a new request.",
            code="idempotency_conflict",
        )


def _body(request: Any) -> Any:
    data = request.data if hasattr(request, "data") else request.POST
    if hasattr(data, "lists"):  # a QueryDict: form fields, each possibly repeated
        data = {k: v for k, v in data.lists() if k not in _NOT_PART_OF_THE_REQUEST}
    files = getattr(request, "FILES", None)
    if files:
        # An uploaded file counts by its content, not only its name.
        data = {
            "fields": data,
            "files": {
                name: [hashlib.sha256(f.read()).hexdigest() for f in files.getlist(name)]
                for name in sorted(files)
            },
        }
        for name in files:
            for f in files.getlist(name):
                f.seek(0)
    return data


def request_fingerprint(request: Any) -> str:
    """A digest of what the request asks for: method, path and body (canonical JSON)."""
    body = json.dumps(_body(request), sort_keys=True, default=str, separators=(",", ":"))
    text = f"{request.method} {request.path}\n{body}"
    return hashlib.sha256(text.encode()).hexdigest()


def idempotency_key_from(request: Any, raw: str | None) -> str:
    """The client's key (trimmed to what the Operation stores) with this request's fingerprint;
    ``""`` when there is none."""
    key = (raw or "").strip()[:MAX_KEY_LENGTH]
    if not key:
        return ""
    return IdempotencyKey(key, request_fingerprint(request))


def idempotency_scope(actor: Access | None) -> str:
    """Whose keys these are: the API token's, else the logged-in user's (``""``: no one's)."""
    if actor is None or not actor.is_authenticated:
        return ""
    if actor.token is not None:
        return f"token:{actor.token.pk}"
    return f"user:{actor.user.pk}"


def idempotency_fingerprint(key: str) -> str:
    return getattr(key, "fingerprint", "")


def operation_replayed(
    *,
    actor: Access | None,
    key: str,
    kind: str | None = None,
    instance: Any = None,
    host: Any = None,
) -> Any:
    """The operation an earlier identical request with ``key`` started, or None if the key is
    new. Raises :class:`IdempotencyConflict` if the key was used for another request.

    ``kind``, ``instance`` and ``host`` describe this request when the caller knows them; the
    fingerprint (method, path, body) is compared when both requests came over HTTP.
    """
    from panel.operations import operation_model  # the runner imports this module

    scope = idempotency_scope(actor)
    if not key or not scope:
        return None
    operations = operation_model().objects
    existing = operations.filter(idempotency_scope=scope, idempotency_key=key).first()
    if existing is None:
        return None
    assert actor is not None
    if existing.tenant_id is not None and not actor.sees_tenant(existing.tenant_id):
        raise IdempotencyConflict()  # never name what the caller may no longer see
    fingerprint = idempotency_fingerprint(key)
    if (
        (kind is not None and existing.kind != kind)
        or (instance is not None and existing.instance_id != instance.pk)
        or (host is not None and existing.host_id != host.pk)
        or (fingerprint and existing.idempotency_fingerprint != fingerprint)
    ):
        raise IdempotencyConflict(existing)
    return existing
