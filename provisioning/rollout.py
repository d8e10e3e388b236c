"""Rolling an instance's compose project out on its host, and the lifecycle steps around it.

A rollout renders the project, uploads it next to the deployed one, validates it with the real
``docker compose config`` on the host, swaps it in (keeping the previous file for rollback),
runs ``up -d`` and waits for the product's health answer (``<context>/status``; Bamboo's
``/rest/api/latest/status``) to say RUNNING in the body. If the new version does not come
up, the previous files are restored and started again.

A cancel takes effect before the files are swapped (nothing changed) or while the new version
starts (it is rolled back, uncancellably, like a failure). The version and heap in the
database are written together with the deployed compose hash, right after the new files
answer RUNNING, so the database never names a version other than the one deployed (a later
rollout would otherwise render the old one and downgrade the app against a migrated
database).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.utils import timezone

from panel.operations import (
    OperationCancelled,
    OperationContext,
    OperationFailed,
    OperationFenced,
    failure_words,
)
from provisioning.compose import RenderedProject, compose_render, instance_dir, project_name
from provisioning.models import AtlassianInstance, InstanceHealth
from provisioning.monitoring import setup_pending
from provisioning.products import spec_for
from provisioning.remote import CommandFailed, HostConnection, RemoteError, SSHTarget

# Executed inside the app container (the real images and the stand-ins both ship python3), so
# the check needs no published port and no tool on the host. It prints the HTTP code on the
# first line and the body after it; a 503 or 500 raises HTTPError, whose code and body are
# the answer (Jira's MAINTENANCE and ERROR come that way), not a failure to answer.
_STATUS_PROBE = (
    "import sys,urllib.request,urllib.error\n"
    "try:\n"
    "    r=urllib.request.urlopen(sys.argv[1],timeout=5)\n"
    "    print(r.status); print(r.read(2000).decode(errors='replace'))\n"
    "except urllib.error.HTTPError as e:\n"
    "    print(e.code); print(e.read(2000).decode(errors='replace'))\n"
    "except Exception as e:\n"
    "    print(0); print(type(e).__name__, getattr(e, 'reason', '') or '')\n"
)

# Jira answers 503 MAINTENANCE while its start-up waits for a reindex and 500 ERROR when it
# refuses to run (https://support.atlassian.com/jira/kb/jira-status-endpoint-response-meanings/).
MAINTENANCE = "MAINTENANCE"
ERROR = "ERROR"
FIRST_RUN = "FIRST_RUN"
# The end of the error of a rollout with no earlier compose file on the host (a create): there
# is nothing to go back to, and nothing stops or removes the new containers.
NEW_INSTANCE_LEFT = (
    "Nothing was rolled back: there is no earlier version on the host to go back to. The "
    "instance was left as it is for inspection; retry or delete it."
)


def owned_dirs_create(conn: HostConnection, rendered: RenderedProject) -> None:
    """Create the extra directories the project mounts (the wal service's), with owners."""
    for path, uid in rendered.owned_dirs:
        conn.run(["mkdir", "-p", path], record=False)
        conn.run(["chown", f"{uid}:{uid}", path], message=f"{path} owned by uid {uid}")


def connect(instance: AtlassianInstance, ctx: OperationContext | None) -> HostConnection:
    """A pinned connection to the instance's host, logging into ``ctx`` when given."""
    if instance.host is None:
        raise OperationFailed(f"{instance.name} has no host assigned.")
    return HostConnection(SSHTarget.for_host(instance.host), ctx=ctx)


def status_url(instance: AtlassianInstance) -> str:
    """The product's own health address inside its container (Bamboo's is not ``/status``;
    Crowd answers under ``/crowd`` when its context path is empty)."""
    spec = spec_for(instance.product)
    context = spec.served_context(instance.context_path)
    return f"http://localhost:{spec.http_port}{context}{spec.status_path}"


def status_state(body: str, key: str) -> str:
    """The state named in a health answer's JSON body, under ``key`` or ``state``."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    for name in (key, "state"):
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def instance_probe(conn: HostConnection, instance: AtlassianInstance) -> tuple[bool, str, str]:
    """Ask the app for its health answer from inside its container: (healthy, state, detail).

    ``detail`` is the body (and the HTTP code when it is not 200), or why nothing answered.
    """
    try:
        result = conn.run(
            [
                "docker",
                "compose",
                "--project-directory",
                instance_dir(instance),
                "--project-name",
                project_name(instance),
                "exec",
                "-T",
                "app",
                "python3",
                "-c",
                _STATUS_PROBE,
                status_url(instance),
            ],
            timeout=30,
            ok_codes=range(256),
            record=False,
        )
    except RemoteError as exc:
        return False, "", str(exc)
    if result.exit_code != 0:
        return False, "", (result.stderr.strip() or "the app container is not running")[-300:]
    lines = result.stdout.strip().splitlines()
    code = lines[0].strip() if lines else "0"
    body = "\n".join(lines[1:]).strip()
    state = status_state(body, spec_for(instance.product).status_key)
    if code == "0":
        return False, "", f"no answer: {body[:200]}"
    if code != "200":
        return False, state, f"HTTP {code}: {body[:200]}"
    return state == "RUNNING", state, body[:200]


def _state_words(instance: AtlassianInstance, state: str, detail: str, timeout: float) -> str:
    """One line saying what the app is doing, for the operation log."""
    if state == MAINTENANCE:
        limit = settings.PANEL_ROLLOUT_MAINTENANCE_TIMEOUT
        return (
            f"{instance.name} is in MAINTENANCE (a reindex holds its start-up); waiting up to "
            f"{limit:g} s for it, which does not count against the {timeout:g} s"
        )
    if state == ERROR:
        grace = settings.PANEL_ROLLOUT_ERROR_GRACE
        return f"{instance.name} answers ERROR; the rollout fails if it lasts {grace:g} s"
    if state == FIRST_RUN:
        return f"{instance.name} is at FIRST_RUN (its setup wizard), not RUNNING"
    if state:
        return f"{instance.name} is {state}"
    return f"{instance.name} is not answering yet ({detail[:120] or 'no answer'})"


def wait_running(
    ctx: OperationContext,
    conn: HostConnection,
    instance: AtlassianInstance,
    *,
    first: bool,
    timeout: float | None = None,
) -> float:
    """Poll the health answer until RUNNING; return seconds. FIRST_RUN (the setup wizard
    waits) is enough for a new instance, and for one never seen RUNNING since (a Crowd whose
    setup nobody finished comes back to FIRST_RUN after each restart or cold backup).

    MAINTENANCE is progress: it is waited for up to ``PANEL_ROLLOUT_MAINTENANCE_TIMEOUT`` in
    all, and ``timeout`` counts only the time spent outside it, so a long reindex after an
    upgrade is not rolled back. An ERROR answer that lasts ``PANEL_ROLLOUT_ERROR_GRACE`` fails
    at once, quoting the body, instead of waiting out the timeout.
    """
    timeout = timeout or settings.PANEL_ROLLOUT_TIMEOUT
    maintenance_limit = settings.PANEL_ROLLOUT_MAINTENANCE_TIMEOUT
    grace = settings.PANEL_ROLLOUT_ERROR_GRACE
    started = last_poll = time.monotonic()
    in_maintenance = 0.0
    error_since: float | None = None
    previous: str | None = None  # the state seen at the last poll
    reported: str | None = None  # the last state written to the log
    ctx.step(
        f"Waiting up to {timeout:g} s for {status_url(instance)} to answer RUNNING "
        f"(MAINTENANCE is waited for separately, up to {maintenance_limit:g} s)"
    )
    while True:
        ctx.check_cancelled()
        healthy, state, detail = instance_probe(conn, instance)
        now = time.monotonic()
        # The time since the last poll belongs to the state seen then.
        if previous == MAINTENANCE:
            in_maintenance += now - last_poll
        last_poll, previous = now, state
        if healthy or (state == FIRST_RUN and (first or setup_pending(instance))):
            elapsed = now - started
            spent = f" ({in_maintenance:.0f} s of them in MAINTENANCE)" if in_maintenance else ""
            ctx.step(f"{instance.name} answers {state} after {elapsed:.0f} s{spent}")
            return elapsed
        if state != reported:
            ctx.step(
                _state_words(instance, state, detail, timeout),
                level="warning" if state == ERROR else "info",
                output=detail,
            )
            reported = state
        if state == ERROR:
            error_since = now if error_since is None else error_since
            if now - error_since >= grace:
                raise OperationFailed(
                    f"{instance.name} answered ERROR for {now - error_since:.0f} s (the grace "
                    f"is {grace:g} s): {detail}"
                )
        else:
            error_since = None
        if in_maintenance > maintenance_limit:
            raise OperationFailed(
                f"{instance.name} was in MAINTENANCE for {in_maintenance:.0f} s, longer than "
                f"the {maintenance_limit:g} s allowed (last answer: {detail})."
            )
        if now - started - in_maintenance > timeout:
            raise OperationFailed(
                f"{instance.name} did not answer RUNNING within {timeout:g} s "
                f"(last state: {state or detail or 'no answer'})."
            )
        time.sleep(settings.PANEL_ROLLOUT_POLL_INTERVAL)


def _files(directory: str) -> dict[str, str]:
    return {
        "compose": f"{directory}/compose.yml",
        "env": f"{directory}/.env",
        "compose_new": f"{directory}/compose.yml.new",
        "env_new": f"{directory}/.env.new",
        "compose_prev": f"{directory}/compose.yml.prev",
        "env_prev": f"{directory}/.env.prev",
    }


def _validate(conn: HostConnection, rendered: RenderedProject, compose: str, env: str) -> None:
    conn.run(
        [
            "docker",
            "compose",
            "--project-directory",
            rendered.directory,
            "--file",
            compose,
            "--env-file",
            env,
            "--project-name",
            rendered.project,
            "config",
            "--quiet",
        ],
        timeout=60,
        message="Validated the compose file with docker compose config",
    )


def _up(conn: HostConnection, rendered: RenderedProject) -> None:
    conn.compose(
        rendered.directory,
        "up",
        "--detach",
        "--remove-orphans",
        project_name=rendered.project,
        timeout=900,
        message=f"docker compose up -d ({rendered.project})",
    )


def _rollback(
    ctx: OperationContext,
    conn: HostConnection,
    instance: AtlassianInstance,
    rendered: RenderedProject,
    f: dict[str, str],
    failure: BaseException,
) -> None:
    """Put the previous compose files back and start them (the caller makes it uncancellable)."""
    ctx.step(f"Rolling back: {failure_words(failure)}", level="warning")
    try:
        conn.run(["cp", "-p", f["compose_prev"], f["compose"]])
        conn.run(["cp", "-p", f["env_prev"], f["env"]])
        _up(conn, rendered)
        wait_running(ctx, conn, instance, first=False)
    except OperationFenced:
        raise
    except Exception as second:  # reported with the first failure
        raise OperationFailed(
            f"{failure_words(failure)} Rolling back to the previous version also failed: {second}"
        ) from second


def _hand_back(
    ctx: OperationContext,
    conn: HostConnection,
    rendered: RenderedProject,
    f: dict[str, str],
    failure: BaseException,
    on_failure: Callable[[BaseException], str],
) -> str:
    """A failed new version whose caller brings the previous one back itself (an upgrade):
    stop the new app, put the previous files back without starting them, then ``on_failure``.
    Starting the previous image here would run it on a database the new version may have
    upgraded, which the products refuse ("database was upgraded by a newer version"). The
    caller makes it uncancellable; returns ``on_failure``'s sentence."""
    why = failure_words(failure)
    ctx.step(
        f"The new version failed: {why} Stopping it; the previous version is not started on "
        "the database the new one may have upgraded",
        level="warning",
    )
    try:
        conn.compose(
            rendered.directory,
            "stop",
            "--timeout",
            "120",
            "app",
            project_name=rendered.project,
            timeout=300,
            message="Stopped the new version",
        )
        conn.run(["cp", "-p", f["compose_prev"], f["compose"]])
        conn.run(["cp", "-p", f["env_prev"], f["env"]])
    except OperationFenced:
        raise
    except Exception as second:  # reported with the first failure
        raise OperationFailed(
            f"{why} Stopping the new version also failed: {second}; nothing was restored."
        ) from second
    try:
        return on_failure(failure)
    except OperationFenced:
        raise
    except OperationFailed as second:
        raise OperationFailed(f"{why} {second}") from second


def instance_rollout(
    ctx: OperationContext,
    instance: AtlassianInstance,
    *,
    first: bool,
    version: str | None = None,
    heap: tuple[int, int] | None = None,
    on_failure: Callable[[BaseException], str] | None = None,
) -> dict[str, Any]:
    """Deploy ``instance`` (optionally at a new version or heap) and wait until it is healthy.

    If the new files fail after ``up`` (an error, a timeout, a cancel), the previous files are
    started again (same version: a heap change, a licence), unless ``on_failure`` is given:
    then the new app is stopped, the previous files are put back unstarted and
    ``on_failure(failure)`` brings the previous version back (an upgrade restores its
    pre-upgrade point) and returns a sentence for the error; it raises ``OperationFailed``
    if it could not."""
    rendered = compose_render(instance, version=version, heap=heap)
    ctx.add_secrets(rendered.secrets)
    f = _files(rendered.directory)
    ctx.progress(1, 5)
    with connect(instance, ctx) as conn:
        conn.run(
            ["mkdir", "-p", rendered.home_dir, rendered.db_dir],
            message="Created the instance directories",
        )
        conn.run(
            ["chown", f"{rendered.uid}:{rendered.uid}", rendered.home_dir],
            message=f"Home directory owned by uid {rendered.uid}",
        )
        owned_dirs_create(conn, rendered)
        conn.run(["chmod", "0700", rendered.directory])
        conn.upload(
            f["compose_new"],
            rendered.compose_yaml,
            mode=0o644,
            message="Uploaded the new compose file",
        )
        conn.upload(
            f["env_new"],
            rendered.env_file,
            mode=0o600,
            message="Uploaded the new .env (secrets, mode 0600)",
        )
        try:
            _validate(conn, rendered, f["compose_new"], f["env_new"])
        except CommandFailed as exc:
            conn.run(["rm", "-f", f["compose_new"], f["env_new"]])
            raise OperationFailed(
                f"The rendered compose file was refused by docker compose config; the deployed "
                f"one was left in place. {exc}"
            ) from exc
        ctx.progress(2)
        ctx.check_cancelled()  # the last point where nothing was changed
        had_previous = conn.exists(f["compose"])
        with ctx.uncancellable():  # never half-swapped (new compose file with the old .env)
            if had_previous:
                conn.run(["cp", "-p", f["compose"], f["compose_prev"]])
                conn.run(["cp", "-p", f["env"], f["env_prev"]])
            conn.run(["mv", "-f", f["compose_new"], f["compose"]])
            conn.run(["mv", "-f", f["env_new"], f["env"]])
        try:
            _up(conn, rendered)
            ctx.progress(3)
            wait_running(ctx, conn, instance, first=first)
        except OperationFenced:
            raise  # reaped: another operation may own the instance now
        except BaseException as failure:  # a failure, a cancel or a time limit
            if not had_previous:
                if isinstance(failure, OperationCancelled):
                    raise OperationCancelled(
                        "Cancelled on request; the new instance was left for inspection."
                    ) from failure
                if isinstance(failure, OperationFailed | RemoteError):
                    raise OperationFailed(
                        f"{failure_words(failure)} {NEW_INSTANCE_LEFT}"
                    ) from failure
                raise
            if on_failure is not None:
                with ctx.uncancellable():
                    words = _hand_back(ctx, conn, rendered, f, failure, on_failure)
                if isinstance(failure, OperationCancelled):
                    raise OperationCancelled(f"Cancelled on request; {words}") from failure
                if not isinstance(failure, Exception):
                    raise
                raise OperationFailed(f"{failure_words(failure)} {words}") from failure
            with ctx.uncancellable():
                _rollback(ctx, conn, instance, rendered, f, failure)
            if isinstance(failure, OperationCancelled):
                raise OperationCancelled(
                    f"Cancelled on request; rolled back to the previous compose file "
                    f"({instance.product} {instance.version}); the instance is running again."
                ) from failure
            if not isinstance(failure, Exception):
                raise
            raise OperationFailed(
                f"{failure_words(failure)} Rolled back to the previous compose file "
                f"({instance.product} {instance.version}); the instance is running again."
            ) from failure
        # No remote command between the healthy answer and this write: the database names
        # exactly what is deployed.
        fields: dict[str, Any] = {
            "deployed_compose_hash": rendered.compose_hash,
            "health": InstanceHealth.HEALTHY,
            "health_changed_at": timezone.now(),
        }
        if version:
            fields["version"] = version
        if heap:
            fields["heap_min_mb"], fields["heap_max_mb"] = heap
        AtlassianInstance.objects.filter(pk=instance.pk).update(**fields)
        ctx.progress(4)
    return {
        "compose_hash": rendered.compose_hash,
        "version": version or instance.version,
        "host": instance.host.name,
    }
