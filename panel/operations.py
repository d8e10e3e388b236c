"""The operation runner: how long or remote work is requested, claimed, logged and ended.

A service calls :func:`operation_start`; it creates the Operation row (the database refuses a
second active one on the same target) and enqueues the Celery task after commit. The task
calls :func:`operation_execute`, which claims the row with a conditional UPDATE (a duplicate
delivery finds nothing to claim), runs the registered handler with an
:class:`OperationContext`, and always ends the row in a terminal state with a readable reason.
:func:`operations_reap` ends operations whose worker died; :func:`operations_requeue_pending`
re-enqueues pending ones whose message was lost.

This module is part of ``panel`` (the bottom layer) and imports no domain app: the app that
owns the Operation model binds it at start-up with :func:`operation_bind` (its model, its step
model, its status constants and how to enqueue the task), and every app registers its kinds
with :func:`operation_handler`. Both live in :data:`panel.registry.registry`.
"""

from __future__ import annotations

import importlib
import logging
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from panel.access import Access
from panel.audit import audit_record
from panel.idempotency import idempotency_fingerprint, idempotency_scope, operation_replayed
from panel.registry import registry
from panel.sanitize import sanitize, sanitize_data, secrets_pop, secrets_push

log = logging.getLogger(__name__)

LOG_DB = "operation_log"


class OperationFailed(Exception):
    """Raised by handlers to end an operation as failed with a message a person can read."""


class OperationCancelled(Exception):
    """Raised when a user asked to cancel a running operation."""


class OperationFenced(Exception):
    """This handler no longer owns its operation (the reaper ended it, or another worker claimed
    it again): it must stop at once, without compensating, since the target may be another
    operation's by now."""


class OperationConflict(Exception):
    """A second mutating operation was asked for a target that already has an active one."""

    def __init__(self, running: Any) -> None:
        self.running = running
        super().__init__(
            f"{running.kind}"
            f" {running.id} is already {running.status} on this target; wait for it to finish"
            " or cancel it."
        )


@dataclass(frozen=True)
class OperationKindSpec:
    """A registered operation kind: its handler, its label and what to do when it ends badly."""

    kind: str
    handler: Callable[[OperationContext], dict | None]
    # How a person reads the kind ("Instance create"), in lists, badges and the API.
    label: str = ""
    # Called with (operation, reason) after a failure, cancellation or reaping, to leave the
    # target in a clear state (e.g. instance -> failed). Must be idempotent.
    on_abort: Callable[[Any, str], None] | None = None
    # Cancelling it takes a staff role (restores and drills: a tenant admin must not stop a
    # support person's restore half-way).
    staff_cancel: bool = False


def _kinds() -> dict[str, OperationKindSpec]:
    return registry["operation_kinds"]


def _kind_words(kind: str) -> str:
    return kind.replace(".", " ").replace("_", " ").capitalize()


def operation_handler(
    kind: str,
    *,
    label: str = "",
    on_abort: Callable[[Any, str], None] | None = None,
    staff_cancel: bool = False,
) -> Callable[[Callable], Callable]:
    """Register the handler that carries out operations of ``kind``.

    ``label`` defaults to the label of a ``TextChoices`` member passed as ``kind``, else to the
    kind's words ("diagnostic" -> "Diagnostic").
    """
    key = str(kind)
    words = label or getattr(kind, "label", "") or _kind_words(key)

    def decorator(func: Callable) -> Callable:
        _kinds()[key] = OperationKindSpec(
            kind=key, handler=func, label=str(words), on_abort=on_abort, staff_cancel=staff_cancel
        )
        return func

    return decorator


def operation_modules_load() -> None:
    """Import the extra handler modules named in ``PANEL_OPERATION_MODULES`` (tests' diagnostic
    kinds); each app imports its own ``operations`` module from its ``ready()``."""
    for module in settings.PANEL_OPERATION_MODULES:
        importlib.import_module(module)


def registered_kinds() -> set[str]:
    return set(_kinds())


def operation_kind_label(kind: str) -> str:
    """How a person reads an operation kind: its registered label, else its words."""
    spec = _kinds().get(kind)
    return spec.label if spec is not None else _kind_words(str(kind))


# --- binding ------------------------------------------------------------------------------


class OperationStatuses(Protocol):
    """The status constants the runner needs from the bound model's app."""

    PENDING: str
    RUNNING: str
    SUCCEEDED: str
    FAILED: str
    CANCELLED: str
    # The states that hold a target (pending and running).
    ACTIVE: tuple[str, ...]


def operation_bind(
    *,
    model: type[Any],
    step_model: type[Any],
    status: OperationStatuses,
    enqueue: Callable[[str], None],
) -> None:
    """Give the runner its Operation model, its step model, their status constants and the
    function that sends an operation's task to the broker (called by the owning app's
    ``ready()``; ``panel`` never imports it)."""
    registry["operation_runtime"].update(
        model=model, step_model=step_model, status=status, enqueue=enqueue
    )


def _bound(name: str) -> Any:
    try:
        return registry["operation_runtime"][name]
    except KeyError:
        raise RuntimeError(
            "the operation runner is not bound: the app owning the Operation model calls "
            "panel.operations.operation_bind() from its ready()"
        ) from None


def operation_model() -> Any:
    """The Operation model the runner works on (bound at start-up; see the registry)."""
    return _bound("model")


def _step_model() -> Any:
    return _bound("step_model")


def operation_statuses() -> OperationStatuses:
    """The bound status constants (``.PENDING`` ... ``.ACTIVE``), for code in ``panel`` that
    filters operations without importing the app that owns them."""
    return _bound("status")


_status = operation_statuses


# --- requesting ---------------------------------------------------------------------------


def operation_start(
    *,
    kind: str,
    actor: Access | None,
    tenant: Any = None,
    host: Any = None,
    instance: Any = None,
    params: dict[str, Any] | None = None,
    lock_key: str | None = None,
    idempotency_key: str = "",
    parent: Any = None,
) -> Any:
    """Create an operation and enqueue it once the surrounding transaction commits.

    With a ``parent`` (an operation made of parts, such as an evacuation) it is not enqueued:
    the parent's handler runs it (:func:`operation_children_run`); the sweeper enqueues it
    only once the parent has ended without doing so.

    With an ``idempotency_key`` a repeated identical request by the same token (or user)
    returns the operation the first one created, and a different one raises
    :class:`~panel.idempotency.IdempotencyConflict` (see :mod:`panel.idempotency`). Raises
    :class:`OperationConflict` if ``lock_key`` is held.
    """
    Operation = operation_model()
    if kind not in _kinds():
        raise ValueError(f"no handler registered for operation kind {kind!r}")
    user = actor.user if actor is not None and actor.is_authenticated else None
    scope = idempotency_scope(actor)
    # A fingerprinted key (from a request) already names the target in its path and body.
    targets = {"instance": instance, "host": host}
    if idempotency_fingerprint(idempotency_key):
        targets = {}
    existing = operation_replayed(actor=actor, key=idempotency_key, kind=kind, **targets)
    if existing is not None:
        return existing
    if tenant is None and instance is not None:
        tenant = instance.tenant
    try:
        with transaction.atomic():
            op = Operation.objects.create(
                kind=kind,
                tenant=tenant,
                host=host,
                instance=instance,
                requested_by=user,
                requested_by_token=actor.token if actor is not None else None,
                params=params or {},
                lock_key=lock_key,
                idempotency_key=idempotency_key if scope else "",
                idempotency_scope=scope if idempotency_key else "",
                idempotency_fingerprint=idempotency_fingerprint(idempotency_key),
                parent=parent,
            )
    except IntegrityError:
        # A concurrent request with the same key may have won: answer with its operation.
        existing = operation_replayed(actor=actor, key=idempotency_key, kind=kind, **targets)
        if existing is not None:
            return existing
        running = (
            Operation.objects.filter(lock_key=lock_key, status__in=_status().ACTIVE).first()
            if lock_key
            else None
        )
        if running is None:
            raise
        raise OperationConflict(running) from None
    audit_record(
        actor=actor,
        action=f"operation.request.{kind}",
        target=instance or host or op,
        tenant=tenant,
        changes={"operation": str(op.id), "params": params or {}},
    )
    if parent is None:
        transaction.on_commit(lambda: operation_enqueue(op.id))
    return op


def operation_children_run(
    ctx: OperationContext, children: list[Any], *, parallel: int, on_end: Callable[[Any], None]
) -> None:
    """Run ``children`` (operations made with ``parent=ctx.operation``), ``parallel`` at a
    time, in their order, each by the normal runner (claim, heartbeat, fencing) on a thread of
    this handler; ``on_end(child)`` is called (on this thread) as each one ends.

    A cancel of the parent cancels the children that have not started and asks the running
    ones to stop; the parent waits for them either way, so it never ends with a part running.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    def run(child_id: Any) -> Any:
        try:
            operation_execute(child_id)
        finally:
            connections.close_all()
        return child_id

    Operation = operation_model()
    queue = [c.id for c in children]
    cancelled = False
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        running: set[Any] = set()
        while queue or running:
            if not cancelled:
                try:
                    ctx.check_cancelled()
                except OperationCancelled:
                    cancelled = True
                    for child_id in queue:
                        operation_cancel(Operation.objects.get(id=child_id), actor=None)
                    for future in running:
                        Operation.objects.filter(id=getattr(future, "child_id", None)).update(
                            cancel_requested=True
                        )
                    queue = []
            while queue and len(running) < max(1, parallel):
                child_id = queue.pop(0)
                future = pool.submit(run, child_id)
                future.child_id = child_id  # type: ignore[attr-defined]
                running.add(future)
            if not running:
                break
            done, _ = wait(running, timeout=2, return_when=FIRST_COMPLETED)
            for future in done:
                running.discard(future)
                on_end(Operation.objects.get(id=future.result()))
    if cancelled:
        raise OperationCancelled("Cancelled on request.")


def failure_words(failure: BaseException) -> str:
    """Why a handler stopped, as a sentence for its log, its error and its roll-back step: a
    time limit, a cancel, or the failure's own message."""
    from celery.exceptions import SoftTimeLimitExceeded

    if isinstance(failure, SoftTimeLimitExceeded):
        return "It ran past the operation's time limit."
    if isinstance(failure, OperationCancelled):
        return "Cancelled on request."
    return str(failure) or type(failure).__name__


def operation_enqueue(operation_id: Any) -> None:
    """Send the operation's task to the broker (safe to call more than once)."""
    enqueue = _bound("enqueue")
    operation_model().objects.filter(id=operation_id).update(enqueued_at=timezone.now())
    try:
        enqueue(str(operation_id))
    except Exception as exc:  # noqa: BLE001 - the sweeper re-enqueues; the request must not fail
        log.warning("could not enqueue operation %s (sweeper will retry): %s", operation_id, exc)


def operation_cancel_allowed(access: Access, operation: Any) -> bool:
    """Whether ``access`` may cancel ``operation`` (the caller already sees it).

    A tenant's operations: its admins and staff, except kinds registered with
    ``staff_cancel`` (restores, drills), which only staff may stop. Operations of no tenant
    (hosts): platform admins.
    """
    if not access.can_write:
        return False
    if operation.tenant_id is None:
        return access.is_platform_admin
    spec = _kinds().get(operation.kind)
    if spec is not None and spec.staff_cancel:
        return access.is_staff_role
    return access.administers_tenant(operation.tenant_id)


def operation_cancel(operation: Any, *, actor: Access | None) -> Any:
    """Cancel a pending operation at once, or ask a running one to stop at its next safe step.

    Raises :class:`~django.core.exceptions.PermissionDenied` (a 403 in the UI and the API) when
    ``actor`` may not cancel it; views check :func:`operation_cancel_allowed` first.
    """
    from django.core.exceptions import PermissionDenied

    if actor is not None and not operation_cancel_allowed(actor, operation):
        raise PermissionDenied("You may not cancel this operation.")
    Operation = operation_model()
    status = _status()
    now = timezone.now()
    if Operation.objects.filter(id=operation.id, status=status.PENDING).update(
        status=status.CANCELLED,
        cancel_requested=True,
        finished_at=now,
        error="Cancelled before it started.",
    ):
        _abort_hooks(Operation.objects.get(id=operation.id), "Cancelled before it started.")
    else:
        Operation.objects.filter(id=operation.id, status=status.RUNNING).update(
            cancel_requested=True
        )
    operation.refresh_from_db()
    audit_record(actor=actor, action="operation.cancel", target=operation, tenant=operation.tenant)
    return operation


# --- running ------------------------------------------------------------------------------


class OperationContext:
    """What a handler gets: the operation, and ways to log steps and report progress."""

    def __init__(self, operation: Any) -> None:
        self.operation = operation
        # The lease this handler holds (empty for a context made outside a claim, e.g. by the
        # reaper, which then checks nothing).
        self.fence_token: str = getattr(operation, "fence_token", "") or ""
        # Set by the heartbeat when its conditional update finds the lease gone.
        self.lost = threading.Event()
        self._uncancellable = 0
        self._secrets: list[str] = []
        # The target's own secrets are always redacted, whatever the handler remembers to add.
        instance = getattr(operation, "instance", None) if operation.instance_id else None
        if instance is not None:
            self.add_secrets([instance.db_password, *map(str, instance.extra_env.values())])

    # Secrets registered here are removed from every step, result and error of this operation.
    def add_secrets(self, values: Iterable[str]) -> None:
        self._secrets.extend(v for v in values if v)

    def clean(self, text: str) -> str:
        return sanitize(text, self._secrets)

    def step(
        self,
        message: str,
        *,
        level: str = "info",
        command: str = "",
        exit_code: int | None = None,
        duration_ms: int | None = None,
        output: str = "",
    ) -> None:
        """Save one log line now, on its own connection, so it survives a rollback."""
        limit = settings.PANEL_OPERATION_OUTPUT_LIMIT
        output = self.clean(output)
        if len(output) > limit:
            output = output[: limit // 2] + "\n… [truncated] …\n" + output[-limit // 2 :]
        _step_model().objects.using(_log_alias()).create(
            operation_id=self.operation.id,
            level=level,
            message=self.clean(message)[:4000],
            command=self.clean(command)[:2000],
            exit_code=exit_code,
            duration_ms=duration_ms,
            output=output,
        )

    def progress(self, current: int, total: int | None = None) -> None:
        fields: dict[str, Any] = {"progress_current": current}
        if total is not None:
            fields["progress_total"] = total
        if not self._owned_rows().using(_log_alias()).update(**fields) and self.fence_token:
            self._fenced()

    # --- cancelling and fencing -------------------------------------------------------------

    def _owned_rows(self) -> Any:
        rows = operation_model().objects.filter(id=self.operation.id)
        if self.fence_token:
            rows = rows.filter(status=_status().RUNNING, fence_token=self.fence_token)
        return rows

    def _fenced(self) -> None:
        self.lost.set()
        raise OperationFenced(
            "This worker no longer owns the operation (it was ended by the reaper or claimed "
            "again); it stopped without running further commands."
        )

    def check_owner(self) -> None:
        """Raise :class:`OperationFenced` if this handler's lease is gone."""
        if not self.fence_token:
            return
        if self.lost.is_set() or not self._owned_rows().using(_log_alias()).exists():
            self._fenced()

    def check_cancelled(self) -> None:
        """A safe point: stop here if the lease is gone, or if a cancel was asked for (unless
        inside :meth:`uncancellable`). Every remote command calls it first."""
        if self.lost.is_set():
            self._fenced()
        flags = list(
            self._owned_rows().using(_log_alias()).values_list("cancel_requested", flat=True)[:1]
        )
        if not flags:
            if self.fence_token:
                self._fenced()
            return
        if flags[0] and not self._uncancellable:
            raise OperationCancelled("Cancelled on request.")

    @property
    def cancellable(self) -> bool:
        return not self._uncancellable

    @contextmanager
    def uncancellable(self) -> Iterator[None]:
        """Compensation (rollbacks, restarts, clean-up) and steps that must not be split: a
        cancel asked for meanwhile waits for the next safe point outside. Fencing still
        applies: a reaped handler stops even here."""
        self._uncancellable += 1
        try:
            yield
        finally:
            self._uncancellable -= 1

    @contextmanager
    def owned(self) -> Iterator[None]:
        """Write the target's state while holding this operation's row: if the lease is gone
        raise :class:`OperationFenced`; while the block runs the reaper waits, so a handler's
        final transition never lands after (and over) the reaper's."""
        if not self.fence_token:
            yield
            return
        if self.lost.is_set():
            self._fenced()
        with transaction.atomic():
            if not list(self._owned_rows().select_for_update().values_list("id", flat=True)):
                self._fenced()
            yield


def _log_alias() -> str:
    # Outside a transaction the default connection commits each step at once. Inside one, a
    # second connection does, so the step survives a rollback. (The in-process test suite turns
    # this off: its test-case transaction would hide the operation row from a second connection.)
    if settings.PANEL_OPERATION_LOG_SEPARATE and connections["default"].in_atomic_block:
        return LOG_DB
    return "default"


class _Heartbeat(threading.Thread):
    """Touches ``heartbeat_at`` while the handler runs; a dead worker stops touching it.

    A database error does not end it: it reconnects and retries with backoff (within the
    heartbeat timeout the reaper waits). When its conditional update finds the lease gone (the
    reaper ended the operation), it marks the context lost and stops.
    """

    def __init__(self, ctx: OperationContext, interval: float) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{ctx.operation.id}")
        self.ctx = ctx
        self.interval = interval
        self.stopped = threading.Event()

    def beat(self) -> bool:
        """One heartbeat; False once this worker no longer holds the operation."""
        if self.ctx._owned_rows().update(heartbeat_at=timezone.now()):
            return True
        # Nothing updated: the lease is gone only if the row says so. A row this thread cannot
        # see at all (an operation claimed inside a transaction not yet committed, as the
        # in-process test suite runs them) is no reason to stop its handler.
        return not (
            operation_model()
            .objects.filter(id=self.ctx.operation.id)
            .exclude(status=_status().RUNNING, fence_token=self.ctx.fence_token)
            .exists()
        )

    def run(self) -> None:
        failures = 0
        wait = self.interval
        try:
            while not self.stopped.wait(wait):
                try:
                    if not self.beat():
                        if not self.stopped.is_set():
                            self.ctx.lost.set()
                        return
                    failures, wait = 0, self.interval
                except DatabaseError as exc:
                    failures += 1
                    # Short retries first, never longer apart than the normal interval.
                    wait = min(self.interval, 0.25 * 2 ** min(failures, 8))
                    log.warning(
                        "heartbeat of operation %s failed (%s in a row), retrying in %.2f s: %s",
                        self.ctx.operation.id,
                        failures,
                        wait,
                        exc,
                    )
                    connections["default"].close()
        finally:
            connections.close_all()


def operation_execute(operation_id: Any) -> str:
    """Claim and run one operation; returns its terminal status (or 'skipped')."""
    Operation = operation_model()
    S = _status()  # the bound status constants, read like an enum
    now = timezone.now()
    fence_token = secrets.token_hex(16)
    claimed = Operation.objects.filter(
        id=operation_id, status=S.PENDING, cancel_requested=False
    ).update(
        status=S.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker=f"{socket.gethostname()}:{threading.get_native_id()}",
        fence_token=fence_token,
        attempts=F("attempts") + 1,
    )
    if not claimed:
        log.info("operation %s not claimable (already taken, finished or cancelled)", operation_id)
        return "skipped"
    op = Operation.objects.select_related("instance", "host", "tenant").get(id=operation_id)
    spec = _kinds().get(op.kind)
    ctx = OperationContext(op)
    interval = max(1.0, settings.PANEL_OPERATION_HEARTBEAT_TIMEOUT.total_seconds() / 4)
    heartbeat = _Heartbeat(ctx, interval)
    heartbeat.start()
    token = secrets_push(())
    # "fenced" is no status of the row: the handler lost its lease and must change nothing.
    fenced = False
    status, error, result = S.FAILED, "", {}
    try:
        if spec is None:
            raise OperationFailed(f"This panel has no handler for operations of kind {op.kind!r}.")
        result = spec.handler(ctx) or {}
        status = S.SUCCEEDED
    except OperationFenced as exc:
        fenced, error = True, str(exc)
    except OperationCancelled as exc:
        status, error = S.CANCELLED, str(exc)
    except OperationFailed as exc:
        status, error = S.FAILED, str(exc)
    except Exception as exc:  # every failure must end the operation readably
        from celery.exceptions import SoftTimeLimitExceeded

        if isinstance(exc, SoftTimeLimitExceeded):
            error = "The operation ran past its time limit and was stopped."
        else:
            error = f"Unexpected error ({type(exc).__name__}): {exc}"
        log.exception("operation %s crashed", op.id)
        try:
            ctx.step("Internal error", level="error", output=traceback.format_exc())
        except Exception:  # the step log may be what broke; the status below must still be set
            log.exception("could not log the error step of %s", op.id)
    finally:
        heartbeat.stopped.set()
        secrets_pop(token)
    error = ctx.clean(error)
    if fenced:
        # The reaper (or a new claim) owns the row now: log what happened, change nothing.
        ctx.step(error, level="warning")
        heartbeat.join(timeout=5)
        return "reaped"
    if status != S.SUCCEEDED:
        ctx.step(error or status, level="error" if status == S.FAILED else "warning")
    ended = Operation.objects.filter(id=op.id, status=S.RUNNING, fence_token=fence_token).update(
        status=status,
        error=error,
        result=sanitize_data(result),
        finished_at=timezone.now(),
        **({"progress_current": F("progress_total")} if status == S.SUCCEEDED else {}),
    )
    heartbeat.join(timeout=5)
    if not ended:
        return "reaped"
    event = {S.FAILED: "failed", S.SUCCEEDED: "succeeded"}.get(status)
    if status != S.SUCCEEDED or registry["operation_listeners"]["succeeded"]:
        op.refresh_from_db()
    if status != S.SUCCEEDED:
        _abort_hooks(op, error)
    if event is not None:
        _listeners_call(event, op)
    return status


def _listeners_call(event: str, operation: Any) -> None:
    """Call every listener registered for ``event`` (e.g. the notifier for "failed"); one that
    raises is logged and the others still run: the operation's outcome is already written."""
    for listener in list(registry["operation_listeners"][event]):
        try:
            listener(operation)
        except Exception:  # a listener's problem must not change the outcome
            log.exception("%s listener %r of operation %s failed", event, listener, operation.id)


def _abort_hooks(operation: Any, reason: str) -> None:
    spec = _kinds().get(operation.kind)
    if spec is None or spec.on_abort is None:
        return
    try:
        spec.on_abort(operation, reason)
    except Exception:  # the operation is already ended; report, don't raise
        log.exception("abort hook of operation %s failed", operation.id)


# --- housekeeping -------------------------------------------------------------------------


def operations_reap(now: Any = None) -> list[str]:
    """End running operations whose worker stopped sending heartbeats; release their targets."""
    Operation = operation_model()
    S = _status()  # the bound status constants, read like an enum
    now = now or timezone.now()
    deadline = now - settings.PANEL_OPERATION_HEARTBEAT_TIMEOUT
    reaped = []
    for op in Operation.objects.filter(status=S.RUNNING, heartbeat_at__lt=deadline):
        reason = (
            "The worker running this operation stopped responding (last heartbeat "
            f"{op.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC); it was ended so the target is free again."
            " Check the target's state, then run the operation again."
        )
        # Clearing the lease fences the old handler: its next command, progress or transition
        # finds the lease gone and stops.
        if Operation.objects.filter(id=op.id, status=S.RUNNING, heartbeat_at__lt=deadline).update(
            status=S.FAILED, error=reason, finished_at=now, fence_token=""
        ):
            OperationContext(op).step(reason, level="error")
            op.refresh_from_db()
            _abort_hooks(op, reason)
            _listeners_call("failed", op)
            reaped.append(str(op.id))
    return reaped


def operations_requeue_pending(now: Any = None) -> list[str]:
    """Enqueue again pending operations whose message seems lost (the claim stays safe)."""
    Operation = operation_model()
    pending = _status().PENDING
    now = now or timezone.now()
    cutoff = now - settings.PANEL_OPERATION_REQUEUE_AFTER
    # A part of an active operation waits for its parent to run it.
    orphan = Q(parent__isnull=True) | ~Q(parent__status__in=_status().ACTIVE)
    ids = list(
        Operation.objects.filter(status=pending, cancel_requested=False, created_at__lt=cutoff)
        .filter(orphan, enqueued_at__lt=cutoff)
        .values_list("id", flat=True)[:500]
    ) + list(
        Operation.objects.filter(
            orphan, status=pending, enqueued_at__isnull=True, created_at__lt=cutoff
        ).values_list("id", flat=True)[:500]
    )
    for op_id in ids:
        operation_enqueue(op_id)
    return [str(i) for i in ids]


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass (used by handlers and tests)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


__all__ = [
    "OperationCancelled",
    "OperationConflict",
    "OperationContext",
    "OperationFailed",
    "OperationFenced",
    "operation_cancel",
    "operation_bind",
    "operation_cancel_allowed",
    "operation_children_run",
    "operation_enqueue",
    "operation_execute",
    "operation_handler",
    "operation_kind_label",
    "operation_model",
    "operation_start",
    "operation_statuses",
    "operations_reap",
    "operations_requeue_pending",
]
