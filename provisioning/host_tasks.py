"""Celery tasks for managed hosts: a thin interface to :mod:`provisioning.hosts`.

Beat runs :func:`host_health_sweep` every few minutes; it enqueues one :func:`host_health`
per host, so one slow or unreachable host does not delay the others.
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="provisioning.host_tasks.host_health", soft_time_limit=300, time_limit=360)
def host_health(host_id: str) -> dict | None:
    """Check one host (reachable, Docker, disk) and record the result on it."""
    from provisioning.hosts import host_health_probe_by_id

    return host_health_probe_by_id(host_id)


@shared_task(name="provisioning.host_tasks.host_health_sweep", soft_time_limit=60, time_limit=90)
def host_health_sweep() -> list[str]:
    """Enqueue a health check for every trusted, not retired host."""
    from provisioning.hosts import hosts_due_for_health

    ids = [str(host.pk) for host in hosts_due_for_health()]
    for host_id in ids:
        host_health.delay(host_id)
    return ids
