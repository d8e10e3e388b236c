"""Publishing an instance on its host's reverse proxy: its site and certificate file, the
certificate put on every proxy that serves it, and the instance lifecycle hooks (publish after
create: DNS, site, certificate, consistency check; unpublish on delete).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.utils import timezone

# consistency imports dns_records (so this package's __init__): referenced as a module, it
# works whichever of the two is imported first.
from certificates import consistency, proxy
from certificates.acme_client import AcmeError
from certificates.dns import DnsError
from certificates.models import Certificate, ProxySite
from certificates.services.dns_records import dns_publish, dns_unpublish
from certificates.services.issuance import (
    certificate_for_instance,
    certificate_obtain,
    certificate_placeholder_ensure,
)
from panel.operations import OperationContext, OperationFailed
from provisioning.models import AtlassianInstance, EvacuatedCopy, Host, InstanceStatus
from provisioning.remote import HostConnection, RemoteError, SSHTarget

log = logging.getLogger(__name__)


def site_deploy(
    ctx: OperationContext, conn: HostConnection, instance: AtlassianInstance, cert: Certificate
) -> ProxySite:
    """Render and deploy ``instance``'s site (and its certificate file) on its host's proxy."""
    layout = proxy.proxy_ensure(conn, instance.host)
    config = proxy.site_render(instance, cert)
    site, _ = ProxySite.objects.get_or_create(instance=instance)
    files = [
        (layout.certificate_path(cert), proxy.certificate_file_content(cert), 0o600),
        (layout.site_path(instance), config, 0o644),
    ]
    ctx.add_secrets([cert.private_key])
    try:
        proxy.proxy_files_deploy(conn, layout, files, what=f"the site of {instance.hostname}")
    except proxy.ProxyConfigRefused as exc:
        ProxySite.objects.filter(pk=site.pk).update(
            status=ProxySite.Status.FAILED
            if site.status != ProxySite.Status.DEPLOYED
            else site.status,
            last_error=str(exc),
        )
        raise OperationFailed(str(exc)) from exc
    ProxySite.objects.filter(pk=site.pk).update(
        host=instance.host,
        certificate=cert,
        status=ProxySite.Status.DEPLOYED,
        config=config,
        config_hash=proxy.config_hash(config),
        deployed_at=timezone.now(),
        last_error="",
    )
    site.refresh_from_db()
    ctx.step(
        f"Proxy serves https://{instance.hostname}{instance.context_path} with "
        f"{'a placeholder' if cert.status != Certificate.Status.VALID else 'the'} certificate "
        f"{cert.serial[:16]}"
    )
    return site


def certificate_deploy(ctx: OperationContext, cert: Certificate) -> int:
    """Put ``cert`` (new key and chain) on every host whose proxy uses it, atomically, and
    reload those proxies (graceful: open connections finish on the old certificate)."""
    sites = list(
        ProxySite.objects.filter(certificate=cert, status=ProxySite.Status.DEPLOYED)
        .exclude(instance__status=InstanceStatus.DELETED)
        .select_related("instance__host", "instance__tenant")
    )
    if cert.instance_id and not sites and cert.instance.host is not None:
        sites = [ProxySite(instance=cert.instance)]
    by_host: dict[Any, list[ProxySite]] = defaultdict(list)
    for site in sites:
        if site.instance.host is not None:
            by_host[site.instance.host].append(site)
    ctx.add_secrets([cert.private_key])
    for host, host_sites in by_host.items():
        with HostConnection(SSHTarget.for_host(host), ctx=ctx) as conn:
            for site in host_sites:
                site_deploy(ctx, conn, site.instance, cert)
    return len(sites)


def instance_publish(ctx: OperationContext, instance: AtlassianInstance) -> None:
    """PUBLISH_HOOK: DNS record, proxy site (placeholder certificate first, so the site works at
    once), the CA's certificate when it can be validated, then the consistency check."""
    instance = AtlassianInstance.objects.select_related("host", "tenant").get(pk=instance.pk)
    ctx.step(f"Publishing https://{instance.hostname}{instance.context_path}")
    records = dns_publish(ctx, instance)
    cert = certificate_placeholder_ensure(certificate_for_instance(instance))
    try:
        with HostConnection(SSHTarget.for_host(instance.host), ctx=ctx) as conn:
            site_deploy(ctx, conn, instance, cert)
    except RemoteError as exc:
        raise OperationFailed(
            f"The proxy site of {instance.hostname} was not deployed: {exc}"
        ) from exc
    dns_ready = all(r.ok for r in records)
    if cert.status == Certificate.Status.VALID and not cert.expires_within(0):
        ctx.step(f"Certificate {cert} is valid until {cert.not_after:%Y-%m-%d}")
    elif not settings.PANEL_ACME_DIRECTORY:
        ctx.step(
            "No ACME CA is configured: the proxy serves a self-signed placeholder.", level="warning"
        )
    elif not dns_ready:
        ctx.step(
            "The certificate is requested once the customer's DNS record resolves.", level="warning"
        )
    else:
        try:
            cert = certificate_obtain(ctx, cert)
        except (AcmeError, RemoteError, DnsError) as exc:
            ctx.step(
                f"The certificate was not issued: {exc} The proxy serves a placeholder; the "
                "panel tries again later.",
                level="warning",
            )
        else:
            certificate_deploy(ctx, cert)
    endpoint_check_safely(instance, ctx=ctx)


def instance_unpublish(ctx: OperationContext, instance: AtlassianInstance) -> None:
    """UNPUBLISH_HOOK (instance delete): remove the proxy site and DNS records."""
    site = ProxySite.objects.filter(instance=instance).select_related("certificate").first()
    if instance.host is not None and site is not None and site.status != ProxySite.Status.REMOVED:
        layout = proxy.ProxyLayout.for_host(instance.host)
        paths = [layout.site_path(instance)]
        if site.certificate is not None and site.certificate.instance_id == instance.pk:
            paths.append(layout.certificate_path(site.certificate))
        try:
            with HostConnection(SSHTarget.for_host(instance.host), ctx=ctx) as conn:
                if conn.exists(layout.directory):
                    proxy.proxy_files_remove(conn, layout, paths)
        except RemoteError as exc:
            raise OperationFailed(
                f"The proxy site of {instance.name} was not removed: {exc}"
            ) from exc
        ProxySite.objects.filter(pk=site.pk).update(status=ProxySite.Status.REMOVED)
    dns_unpublish(ctx, instance)


def instance_dns_moved_back(ctx: OperationContext, instance: AtlassianInstance) -> None:
    """INSTANCE_HOOK "moved_back": an evacuation published ``instance`` on its target and then
    failed, so its record (``instance`` as it was, on its old host) is back on the old host:
    point its DNS record there again, so the name does not lead to a host that has no site
    for it. Only DNS: the old host is down, its proxy site and certificate are still there."""
    ctx.step(f"Pointing {instance.hostname} back at {instance.host.name if instance.host else '?'}")
    dns_publish(ctx, instance)


def proxy_site_fence(conn: HostConnection, host: Host, copy: EvacuatedCopy) -> None:
    """HOST_HOOK "fence": remove an evacuated instance's old site from ``host``'s proxy, and
    its own certificate file unless the instance lives on ``host`` again (a zone's wildcard
    certificate serves other sites there and stays)."""
    layout = proxy.ProxyLayout.for_host(host)
    if not conn.exists(layout.directory):
        return
    paths = [f"{layout.conf_d}/{copy.project}.conf"]
    moved = copy.instance_id
    if moved is not None and not AtlassianInstance.objects.filter(pk=moved, host=host).exists():
        paths += [
            layout.certificate_path(cert) for cert in Certificate.objects.filter(instance_id=moved)
        ]
    proxy.proxy_files_remove(conn, layout, paths)


def endpoint_check_safely(
    instance: AtlassianInstance, *, ctx: OperationContext | None = None
) -> list[dict] | None:
    """Run the consistency check of ``instance``, logging its problems into ``ctx``.

    A check that cannot reach what it checks (the host over SSH, a DNS provider) must not fail
    the operation that asked for it: it returns None, which means "not checked" (never "no
    problems"), and says why in ``ctx``. Any other error is a bug and propagates to the runner.
    """
    try:
        problems = consistency.endpoint_check(instance)
    except (RemoteError, DnsError) as exc:
        log.warning("the consistency check of %s could not run: %s", instance.name, exc)
        if ctx is not None:
            ctx.step(f"The consistency check could not run: {exc}", level="warning")
        return None
    if ctx is not None:
        for p in problems:
            ctx.step(f"Consistency: {p['problem']} Fix: {p['fix']}", level="warning")
        if not problems:
            ctx.step(
                "Consistency: DNS, certificate, proxy and the application's connector agree "
                f"on {instance.base_url}"
            )
    return problems
