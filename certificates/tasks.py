"""Celery tasks of the certificates app: thin calls into the services (primary keys only)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="certificates.tasks.certificates_renew_due", soft_time_limit=600)
def certificates_renew_due() -> list[str]:
    """Start renewals of certificates with a third of their lifetime left (and retries)."""
    from certificates.services import certificates_renew_due as renew

    return renew()


@shared_task(name="certificates.tasks.dns_customer_records_check", soft_time_limit=600)
def dns_customer_records_check() -> int:
    """Check customer-managed DNS records; request certificates that waited for them."""
    from certificates.services import dns_customer_records_check as check

    return check()


@shared_task(name="certificates.tasks.endpoints_check", soft_time_limit=1800)
def endpoints_check() -> int:
    """Consistency check of every running instance's public address."""
    from certificates.services import endpoints_check_all

    return endpoints_check_all()


@shared_task(name="certificates.tasks.endpoint_check", soft_time_limit=300)
def endpoint_check(instance_id: str) -> int | None:
    """Consistency check of one instance (asked for from its page or the API): how many
    problems it found, None when it could not run (or the instance is gone)."""
    from certificates.services import endpoint_check_safely
    from provisioning.models import AtlassianInstance

    instance = AtlassianInstance.objects.filter(pk=instance_id).first()
    problems = endpoint_check_safely(instance) if instance is not None else None
    return len(problems) if problems is not None else None
