"""Handlers of DNS, certificate and proxy operations (the hooks that publish an instance when
it is created and unpublish it when it is deleted are registered by CertificatesConfig.ready())."""

from __future__ import annotations

from certificates import services
from certificates.acme_client import AcmeError
from certificates.dns import DnsError
from certificates.models import Certificate, CertificateOperationKind
from panel.operations import OperationContext, OperationFailed, operation_handler
from provisioning.models import AtlassianInstance
from provisioning.remote import HostConnection, RemoteError, SSHTarget


def _instance(ctx: OperationContext) -> AtlassianInstance:
    return AtlassianInstance.objects.select_related("host", "tenant").get(
        pk=ctx.operation.instance_id
    )


def certificate_run(ctx: OperationContext) -> dict:
    """Order the certificate from the CA and put it on every proxy that serves it."""
    cert = Certificate.objects.select_related("instance__host", "zone__account").get(
        pk=ctx.operation.params["certificate"]
    )
    if cert.instance_id and cert.instance.host is not None:
        services.certificate_placeholder_ensure(cert)
    try:
        cert = services.certificate_obtain(ctx, cert)
    except (AcmeError, DnsError, RemoteError) as exc:
        cert.refresh_from_db()
        raise OperationFailed(
            f"{exc} The proxy keeps serving the certificate it has; the panel tries again "
            f"after {cert.next_attempt_at:%Y-%m-%d %H:%M} UTC."
            if cert.next_attempt_at
            else str(exc)
        ) from exc
    sites = services.certificate_deploy(ctx, cert)
    if cert.instance_id:
        services.endpoint_check_safely(cert.instance, ctx=ctx)
    return {
        "certificate": str(cert.pk),
        "serial": cert.serial,
        "not_after": cert.not_after.isoformat() if cert.not_after else None,
        "sites": sites,
    }


operation_handler(CertificateOperationKind.CERTIFICATE_ISSUE)(certificate_run)
operation_handler(CertificateOperationKind.CERTIFICATE_RENEW)(certificate_run)


@operation_handler(CertificateOperationKind.PROXY_DEPLOY)
def proxy_deploy_run(ctx: OperationContext) -> dict:
    """Render the instance's site again and deploy it (refused configs leave the old one)."""
    instance = _instance(ctx)
    cert = services.certificate_placeholder_ensure(services.certificate_for_instance(instance))
    try:
        with HostConnection(SSHTarget.for_host(instance.host), ctx=ctx) as conn:
            site = services.site_deploy(ctx, conn, instance, cert)
    except RemoteError as exc:
        raise OperationFailed(str(exc)) from exc
    problems = services.endpoint_check_safely(instance, ctx=ctx)
    # None: the check could not run (a step says why), which is not "no problems".
    return {
        "config_hash": site.config_hash,
        "problems": len(problems) if problems is not None else None,
    }


@operation_handler(CertificateOperationKind.DNS_UPDATE)
def dns_update_run(ctx: OperationContext) -> dict:
    """Publish the instance's DNS records again."""
    instance = _instance(ctx)
    records = services.dns_publish(ctx, instance)
    for record in records:
        if record.customer_managed:
            services.dns_record_check(record)
            ctx.step(record.detail, level="info" if record.ok else "warning")
    return {"records": [f"{r.name} {r.rtype} {r.value}" for r in records]}
