"""The request side of starting an operation: what a service asks before it validates.

One order holds for every service that starts remote work on a target:

1. :func:`operation_conflict_check` — a target that already has an active operation answers
   409 naming it, before any check of the target's state (a restore sent while a restore runs
   hears "restore X is running", not "the instance is restoring");
2. the service's own validation of the request;
3. :func:`panel.operations.operation_start`, the one idempotency check (a repeated identical
   request returns the first one's operation; a key reused for another request is refused).

The API (``operation_replay``) and the UI (``panel.htmx.operation_post``) replay a repeated
request before the service runs at all, since its state checks may no longer hold once the
first request's operation has changed the target. A service that creates a row before its
operation (a new instance, a new host, a restore into a new instance) asks
:func:`operation_by_key` first for the same reason.
"""

from __future__ import annotations

from typing import Any

from panel.access import Access
from panel.idempotency import operation_replayed
from panel.operations import OperationConflict, operation_model, operation_statuses


def operation_by_key(
    actor: Access | None,
    key: str,
    *,
    kind: str | None = None,
    instance: Any = None,
    host: Any = None,
) -> Any:
    """The operation an identical earlier request with ``key`` started, or None.

    Raises :class:`~panel.idempotency.IdempotencyConflict` when the key was used for another
    request (another kind, target or body).
    """
    return operation_replayed(actor=actor, key=key, kind=kind, instance=instance, host=host)


def operation_conflict_check(lock_key: str | None) -> None:
    """Raise :class:`~panel.operations.OperationConflict` naming the active operation that
    holds ``lock_key``, if there is one.

    Only a fast answer: the lock-key unique index still decides a race between two requests
    (``operation_start`` turns the loser's IntegrityError into the same conflict).
    """
    if not lock_key:
        return
    running = (
        operation_model()
        .objects.filter(lock_key=lock_key, status__in=operation_statuses().ACTIVE)
        .order_by("created_at")
        .first()
    )
    if running is not None:
        raise OperationConflict(running)
