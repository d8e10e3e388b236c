"""Certificates from the ACME CA: the panel's account, which certificate an instance uses, the
self-signed placeholder served until the CA's arrives, the weekly order budget, the HTTP-01 and
DNS-01 challenge solvers, and :func:`certificate_obtain`, which orders and stores one.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from publicsuffixlist import PublicSuffixList

from certificates import proxy
from certificates.acme_client import (
    AcmeError,
    AcmeSession,
    IssuedCertificate,
    certificate_parse,
    private_key_generate,
    self_signed_generate,
)
from certificates.dns import DnsError, RecordChange, provider_for
from certificates.models import AcmeAccount, Certificate, CertificateOrder, DnsZone
from certificates.services.dns_records import zone_for_hostname, zone_ref
from panel.operations import OperationContext
from provisioning.models import AtlassianInstance
from provisioning.remote import HostConnection, RemoteError, SSHTarget


def registered_domain(name: str) -> str:
    """The registered domain (public suffix + 1 label) that CA rate limits count against."""
    name = name.lower().rstrip(".").removeprefix("*.")
    return _public_suffixes().privatesuffix(name) or name


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    # Parsing the list takes a moment: once per process.
    return PublicSuffixList()


def acme_account_for(directory_url: str) -> AcmeAccount:
    """The panel's account at ``directory_url`` (its key made and stored encrypted once)."""
    account = AcmeAccount.objects.filter(directory_url=directory_url).first()
    if account is None:
        account, _ = AcmeAccount.objects.get_or_create(
            directory_url=directory_url,
            defaults={
                "key": private_key_generate("ec256"),
                "email": settings.PANEL_ACME_EMAIL,
            },
        )
    return account


def certificate_for_instance(instance: AtlassianInstance) -> Certificate:
    """The certificate ``instance``'s site uses: its zone's wildcard when the zone asks for one
    and the hostname is directly below it, else its own (HTTP-01)."""
    zone = zone_for_hostname(instance.hostname)
    if zone is not None and zone.wildcard and instance.hostname.split(".", 1)[-1] == zone.name:
        cert, _ = Certificate.objects.get_or_create(
            zone=zone,
            instance=None,
            defaults={"names": [f"*.{zone.name}", zone.name], "challenge": "dns-01"},
        )
        return cert
    cert, created = Certificate.objects.get_or_create(
        instance=instance, defaults={"names": [instance.hostname], "challenge": "http-01"}
    )
    if not created and cert.names != [instance.hostname]:
        Certificate.objects.filter(pk=cert.pk).update(
            names=[instance.hostname], status=Certificate.Status.PENDING, certificate_pem=""
        )
        cert.refresh_from_db()
    return cert


def certificate_placeholder_ensure(cert: Certificate) -> Certificate:
    """Give a certificate that has none yet a self-signed stand-in the proxy can serve."""
    if cert.certificate_pem and cert.private_key:
        return cert
    key = private_key_generate(settings.PANEL_CERTIFICATE_KEY_TYPE)
    pem = self_signed_generate(cert.names, key)
    parsed = certificate_parse(pem)
    Certificate.objects.filter(pk=cert.pk).update(
        private_key=key,
        certificate_pem=parsed.certificate_pem,
        chain_pem="",
        issuer=parsed.issuer,
        serial=parsed.serial,
        not_before=parsed.not_before,
        not_after=parsed.not_after,
        status=Certificate.Status.PLACEHOLDER,
    )
    cert.refresh_from_db()
    return cert


def renew_after(not_before: datetime, not_after: datetime) -> datetime:
    """Renew when a third of the lifetime is left (whatever the lifetime is)."""
    return not_before + (not_after - not_before) * 2 / 3


def _retry_delay(failures: int) -> timedelta:
    base = settings.PANEL_ACME_RETRY_BASE_SECONDS
    return timedelta(seconds=min(base * 2 ** max(failures - 1, 0), 24 * 3600))


class _HttpSolver:
    """HTTP-01: the key authorization as a file the host's proxy serves on port 80."""

    def __init__(self, conn: HostConnection, layout: proxy.ProxyLayout) -> None:
        self.conn, self.layout = conn, layout

    def http01_publish(self, token: str, key_authorization: str) -> None:
        self.conn.upload(
            self.layout.challenge_path(token),
            key_authorization,
            mode=0o644,
            message=f"Published the HTTP-01 challenge {token[:12]}… on the proxy",
        )

    def http01_cleanup(self, token: str) -> None:
        self.conn.run(
            ["rm", "-f", self.layout.challenge_path(token)],
            message="Removed the HTTP-01 challenge file",
        )

    def dns01_publish(self, records: dict[str, list[str]]) -> None:  # pragma: no cover
        raise AcmeError("this certificate is validated over HTTP")

    dns01_cleanup = dns01_publish


class _DnsSolver:
    """DNS-01: TXT records through the zone's provider, all in one batch."""

    def __init__(self, zone: DnsZone, ctx: OperationContext) -> None:
        self.zone = zone
        self.provider = provider_for(zone.account, log=ctx.step)
        self.ctx = ctx

    def dns01_publish(self, records: dict[str, list[str]]) -> None:
        changes = [RecordChange("upsert", n, "TXT", tuple(v), 60) for n, v in records.items()]
        try:
            self.provider.apply(zone_ref(self.zone), changes)
        except DnsError as exc:
            raise AcmeError(f"The DNS-01 TXT records could not be published: {exc}") from exc
        self.ctx.step(
            f"Published {sum(map(len, records.values()))} DNS-01 TXT value(s) in {self.zone.name}"
        )

    def dns01_cleanup(self, records: dict[str, list[str]]) -> None:
        self.provider.apply(
            zone_ref(self.zone), [RecordChange("delete", n, "TXT") for n in records]
        )

    def http01_publish(self, token: str, key_authorization: str) -> None:  # pragma: no cover
        raise AcmeError("this certificate is validated through DNS")

    http01_cleanup = http01_publish


def _status_after_failure(status: str) -> str:
    # A valid certificate stays valid (it still serves); a placeholder stays what is served.
    if status in (Certificate.Status.VALID, Certificate.Status.PLACEHOLDER):
        return status
    return Certificate.Status.FAILED


def _budget_check(cert: Certificate, now: datetime) -> str:
    domain = registered_domain(cert.names[0])
    used = CertificateOrder.objects.filter(
        registered_domain=domain, created_at__gte=now - timedelta(days=7)
    ).count()
    budget = settings.PANEL_ACME_WEEKLY_ORDER_BUDGET
    if used >= budget:
        oldest = (
            CertificateOrder.objects.filter(
                registered_domain=domain, created_at__gte=now - timedelta(days=7)
            )
            .order_by("created_at")
            .first()
        )
        when = oldest.created_at + timedelta(days=7) if oldest else now
        raise AcmeError(
            f"The weekly budget of {budget} new orders for {domain} is used up ({used} in the "
            f"last 7 days); the next one is possible after {when:%Y-%m-%d %H:%M} UTC. "
            "(PANEL_ACME_WEEKLY_ORDER_BUDGET keeps the panel below the CA's limit.)"
        )
    return domain


def _acme_session(ctx: OperationContext, directory: str, account: AcmeAccount) -> AcmeSession:
    return AcmeSession(
        directory,
        account.key,
        account_uri=account.uri,
        ca_bundle=settings.PANEL_ACME_CA_BUNDLE,
        log=ctx.step,
        tries=settings.PANEL_ACME_TRIES,
        backoff=settings.PANEL_ACME_BACKOFF,
        timeout=settings.PANEL_ACME_TIMEOUT,
    )


def _order_validated(
    ctx: OperationContext, session: AcmeSession, cert: Certificate, key: str, *, email: str
) -> IssuedCertificate:
    """Prove control of ``cert``'s names with its challenge and have the CA issue it: DNS-01
    through the zone's provider, HTTP-01 through the proxy of the instance's host."""
    if cert.challenge == Certificate.Challenge.DNS01:
        zone = cert.zone or zone_for_hostname(cert.names[0].removeprefix("*."))
        if zone is None:
            raise AcmeError(f"DNS-01 needs a managed zone for {cert.names[0]}.")
        return session.certificate_order(
            cert.names, key, challenge="dns-01", solver=_DnsSolver(zone, ctx), email=email
        )
    instance = cert.instance
    if instance is None or instance.host is None:
        raise AcmeError("HTTP-01 needs the instance's host to serve the challenge.")
    with HostConnection(SSHTarget.for_host(instance.host), ctx=ctx) as conn:
        layout = proxy.proxy_ensure(conn, instance.host)
        return session.certificate_order(
            cert.names, key, challenge="http-01", solver=_HttpSolver(conn, layout), email=email
        )


def _failure_record(cert: Certificate, error: Exception, now: datetime) -> None:
    """Count the failed attempt and put the next one off (the certificate keeps what it had)."""
    failures = cert.failures + 1
    Certificate.objects.filter(pk=cert.pk).update(
        failures=failures,
        last_error=str(error),
        next_attempt_at=now + _retry_delay(failures),
        status=_status_after_failure(cert.status),
    )


def _issued_store(
    cert: Certificate, issued: IssuedCertificate, *, key: str, account: AcmeAccount
) -> Certificate:
    Certificate.objects.filter(pk=cert.pk).update(
        private_key=key,
        certificate_pem=issued.certificate_pem,
        chain_pem=issued.chain_pem,
        issuer=issued.issuer,
        serial=issued.serial,
        not_before=issued.not_before,
        not_after=issued.not_after,
        issued_at=timezone.now(),
        renew_after=renew_after(issued.not_before, issued.not_after),
        status=Certificate.Status.VALID,
        acme_account=account,
        failures=0,
        next_attempt_at=None,
        last_error="",
    )
    cert.refresh_from_db()
    return cert


def certificate_obtain(ctx: OperationContext, cert: Certificate) -> Certificate:
    """Order ``cert`` from the configured CA and store the result (key encrypted). On failure
    the certificate keeps what it had and is retried later with a growing delay."""
    directory = settings.PANEL_ACME_DIRECTORY
    if not directory:
        raise AcmeError("No ACME CA is configured (PANEL_ACME_DIRECTORY).")
    now = timezone.now()
    domain = _budget_check(cert, now)
    account = acme_account_for(directory)
    session = _acme_session(ctx, directory, account)
    key = private_key_generate(settings.PANEL_CERTIFICATE_KEY_TYPE)
    order = CertificateOrder.objects.create(
        certificate=cert, registered_domain=domain, names=cert.names, directory_url=directory
    )
    ctx.step(
        f"Ordering a certificate for {', '.join(cert.names)} from {directory} "
        f"({cert.challenge}); order {order.pk} for {domain} this week"
    )
    try:
        issued = _order_validated(ctx, session, cert, key, email=account.email)
    except (AcmeError, RemoteError, DnsError) as exc:
        order.succeeded = False
        order.save(update_fields=["succeeded"])
        _failure_record(cert, exc, now)
        raise
    finally:
        # The session registers the account when it has no URI yet (or the CA lost it): keep
        # the URI even when the order then failed, so the next attempt does not register again.
        if session.account_uri and session.account_uri != account.uri:
            AcmeAccount.objects.filter(pk=account.pk).update(uri=session.account_uri)
    order.succeeded = True
    order.save(update_fields=["succeeded"])
    return _issued_store(cert, issued, key=key, account=account)
