"""The consistency check of an instance's public address (read-only, so not an Operation; not
Django's system checks either).

The base URL ``https://<hostname>[:443]<context path>`` must agree across the DNS record, the
certificate's names, the proxy site deployed on the host, and the application's connector
environment read back from the running container. Each disagreement is a problem with what
to fix; the result is stored on the instance's :class:`~certificates.models.ProxySite`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from django.utils import timezone

from certificates import proxy
from certificates.dns import DnsError, provider_for, records_resolve
from certificates.models import Certificate, DnsRecord, ProxySite
from certificates.services.dns_records import dns_target, zone_ref
from provisioning import ports
from provisioning.compose import instance_alias, project_name
from provisioning.models import AtlassianInstance
from provisioning.products import Product, spec_for
from provisioning.remote import HostConnection, RemoteError, SSHTarget


def _problem(component: str, problem: str, fix: str) -> dict[str, str]:
    return {"component": component, "problem": problem, "fix": fix}


def _dns_problems(instance: AtlassianInstance) -> list[dict]:
    problems = []
    records = list(DnsRecord.objects.filter(instance=instance).select_related("zone__account"))
    if not records:
        return [
            _problem(
                "dns",
                f"{instance.hostname} has no DNS record in the panel.",
                "Run “Publish DNS” on the instance (or mark its DNS customer-managed).",
            )
        ]
    rtype, target = dns_target(instance)
    for record in records:
        if record.name != instance.hostname or record.value != target:
            problems.append(
                _problem(
                    "dns",
                    f"The DNS record {record.name} {record.rtype} {record.value} does not "
                    f"point {instance.hostname} at its host ({target}).",
                    "Run “Publish DNS”.",
                )
            )
            continue
        try:
            if record.zone is not None:
                values = provider_for(record.zone.account).lookup(
                    zone_ref(record.zone), record.name, record.rtype
                )
                where = f"the {record.zone.name} zone at the provider"
            else:
                values = records_resolve(
                    record.name, record.rtype, nameservers=settings.PANEL_DNS_CHECK_NAMESERVERS
                )
                where = "DNS"
        except DnsError as exc:
            problems.append(
                _problem(
                    "dns",
                    f"{record.name} could not be checked: {exc}",
                    "Check the DNS provider account and try again.",
                )
            )
            continue
        if target not in values:
            seen = ", ".join(values) or "nothing"
            fix = (
                f"Create the record at your DNS provider: {record.name} {record.rtype} {target}."
                if record.customer_managed
                else "Run “Publish DNS” on the instance."
            )
            problems.append(
                _problem(
                    "dns",
                    f"{where.capitalize()} has {seen} for {record.name} {record.rtype}, not "
                    f"{target}.",
                    fix,
                )
            )
    return problems


def _certificate_problems(instance: AtlassianInstance, site: ProxySite | None) -> list[dict]:
    cert = site.certificate if site is not None else None
    if cert is None:
        return [
            _problem(
                "certificate",
                f"No certificate is deployed for {instance.hostname}.",
                "Run “Deploy proxy config”.",
            )
        ]
    problems = []
    if not cert.covers(instance.hostname):
        problems.append(
            _problem(
                "certificate",
                f"The certificate names {', '.join(cert.names)}, not {instance.hostname}.",
                "Renew the certificate (it is ordered for the hostname).",
            )
        )
    if cert.status == Certificate.Status.PLACEHOLDER:
        why = f" Last attempt: {cert.last_error}" if cert.last_error else ""
        problems.append(
            _problem(
                "certificate",
                f"{instance.hostname} is served with a self-signed placeholder; "
                f"the CA has not issued its certificate yet.{why}",
                "Make sure the DNS record resolves to the host, then use “Renew now”.",
            )
        )
    elif cert.not_after is not None and cert.not_after <= timezone.now():
        problems.append(
            _problem(
                "certificate",
                f"The certificate expired on {cert.not_after:%Y-%m-%d}.",
                "Use “Renew now”.",
            )
        )
    return problems


def _site_facts(text: str) -> dict[str, Any]:
    """What a deployed nginx site actually says (read from its directives)."""
    tls = text.split("listen 443", 1)[1] if "listen 443" in text else ""
    names = re.search(r"server_name\s+([^;]+);", tls)
    upstream = re.search(r"set \$upstream\s+([^;\s]+);\s*proxy_pass http://\$upstream:(\d+)", tls)
    locations = [
        m for m in re.findall(r"location\s+([^\s{]+)\s*\{", tls) if m not in ("/synchrony", "=")
    ]
    return {
        "server_names": names.group(1).split() if names else [],
        "upstream_host": upstream.group(1) if upstream else "",
        "upstream_port": int(upstream.group(2)) if upstream else 0,
        "location": locations[-1] if locations else "",
        "certificate": (re.search(r"ssl_certificate\s+([^;]+);", tls) or [None, ""])[1],
    }


def _proxy_problems(
    instance: AtlassianInstance, site: ProxySite | None, deployed: str | None
) -> list[dict]:
    if site is None or deployed is None:
        return [
            _problem(
                "proxy",
                f"The proxy has no site for {instance.hostname}.",
                "Run “Deploy proxy config”.",
            )
        ]
    problems = []
    if proxy.config_hash(deployed) != site.config_hash:
        problems.append(
            _problem(
                "proxy",
                "The site config on the host differs from what the panel deployed.",
                "Run “Deploy proxy config” to put the panel's version back.",
            )
        )
    facts = _site_facts(deployed)
    spec = spec_for(instance.product)
    if instance.hostname not in facts["server_names"]:
        problems.append(
            _problem(
                "proxy",
                f"The proxy's HTTPS site answers for {' '.join(facts['server_names']) or 'no name'}"
                f", not {instance.hostname}.",
                "Run “Deploy proxy config”.",
            )
        )
    upstream = instance_alias(instance)  # the app's name on its own edge network
    if (facts["upstream_host"], facts["upstream_port"]) != (upstream, spec.http_port):
        problems.append(
            _problem(
                "proxy",
                f"The proxy forwards to {facts['upstream_host']}:{facts['upstream_port']}, "
                f"not {upstream}:{spec.http_port}.",
                "Run “Deploy proxy config”.",
            )
        )
    if facts["location"] != (instance.context_path or "/"):
        problems.append(
            _problem(
                "proxy",
                f"The proxy serves the application at {facts['location'] or 'no path'}, "
                f"but its context path is {instance.context_path or '/'}.",
                "Run “Deploy proxy config”.",
            )
        )
    if site.certificate is not None and not facts["certificate"].endswith(
        f"/{site.certificate.pk}.pem"
    ):
        problems.append(
            _problem(
                "proxy",
                "The proxy site uses another certificate file than the panel's.",
                "Run “Deploy proxy config”.",
            )
        )
    return problems


def _app_container(conn: HostConnection, instance: AtlassianInstance) -> str | None:
    ids = conn.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={project_name(instance)}",
            "--filter",
            "label=com.docker.compose.service=app",
        ],
        timeout=30,
        record=False,
    ).stdout.split()
    return ids[0] if ids else None


def _app_env(conn: HostConnection, instance: AtlassianInstance) -> dict[str, str] | None:
    container = _app_container(conn, instance)
    if container is None:
        return None
    out = conn.run(
        ["docker", "inspect", "--format", "{{json .Config.Env}}", container],
        timeout=30,
        record=False,
    ).stdout
    env = {}
    for item in json.loads(out or "[]"):
        name, _, value = item.partition("=")
        env[name] = value
    return env


def _app_problems(instance: AtlassianInstance, env: dict[str, str] | None) -> list[dict]:
    if env is None:
        return [
            _problem(
                "application",
                "The application container is not running, so its "
                "connector settings could not be read.",
                "Start the instance.",
            )
        ]
    spec = spec_for(instance.product)
    if spec.env_style == "bitbucket":
        names = {
            "name": "SERVER_PROXY_NAME",
            "port": "SERVER_PROXY_PORT",
            "scheme": "SERVER_SCHEME",
            "path": "SERVER_CONTEXT_PATH",
        }
        want_path = instance.context_path or "/"
    else:
        names = {
            "name": "ATL_PROXY_NAME",
            "port": "ATL_PROXY_PORT",
            "scheme": "ATL_TOMCAT_SCHEME",
            "path": "ATL_TOMCAT_CONTEXTPATH",
        }
        want_path = instance.context_path
    want = {"name": instance.hostname, "port": "443", "scheme": "https", "path": want_path}
    problems = []
    for key, var in names.items():
        have = env.get(var)
        if have != want[key]:
            problems.append(
                _problem(
                    "application",
                    f"The application's connector has {var}={have!r}, but the "
                    f"instance is served at {instance.base_url} ({key} {want[key]!r}).",
                    f"Roll the instance out again (its compose file sets {var}), or correct {var} "
                    "on the host and restart the application.",
                )
            )
    return problems


def _published_port_problems(
    conn: HostConnection, instance: AtlassianInstance, env: dict[str, str] | None
) -> list[dict]:
    """Bitbucket's SSH and Bamboo's broker: the allocated host port, what the application was
    told (``PLUGIN_SSH_BASEURL`` / ``ATL_BROKER_CLIENT_URI``), what Docker publishes, and for
    Bitbucket an SSH banner read on the host's public address, as a git client reaches it."""
    spec = spec_for(instance.product)
    if spec.published_port is None or env is None or instance.host is None:
        return []  # nothing to publish, or the application problem above already says why
    what = f"{Product(instance.product).label}'s port {spec.published_port}"
    if not instance.host_port:
        return [
            _problem(
                "port",
                f"{what} has no host port, so clients cannot reach it.",
                "Contact support: the instance needs a host port and a new rollout.",
            )
        ]
    for var, want in ports.published_environment(instance).items():
        if env.get(var) != want:
            return [
                _problem(
                    "port",
                    f"The application has {var}={env.get(var)!r}, but {what} is published as "
                    f"{want}.",
                    f"Roll the instance out again (its compose file sets {var}).",
                )
            ]
    container = _app_container(conn, instance)
    out = conn.run(
        ["docker", "port", container or "", f"{spec.published_port}/tcp"],
        timeout=30,
        record=False,
        ok_codes=range(256),
    ).stdout
    bind = ports.publish_bind(instance.host)
    want_bind = f"{bind}{instance.host_port}" if bind else None
    published = [line.strip() for line in out.splitlines() if line.strip()]
    if not any(
        line == want_bind if want_bind else line.endswith(f":{instance.host_port}")
        for line in published
    ):
        return [
            _problem(
                "port",
                f"{what} is not published on host port {instance.host_port} "
                f"(Docker publishes it on {', '.join(published) or 'no host port'}).",
                "Roll the instance out again (its compose file publishes the port).",
            )
        ]
    if instance.product == Product.BITBUCKET:
        address = ports.public_address(instance.host)
        try:
            banner = ports.ssh_banner_read(address, instance.host_port)
        except OSError as exc:
            banner = f"no answer ({exc.strerror or exc})"
        if not banner.startswith("SSH-"):
            return [
                _problem(
                    "port",
                    f"Git over SSH at {instance.published_url} does not answer as an SSH "
                    f"server: {banner or 'no banner'}.",
                    "Check that the host's firewall lets PANEL_INSTANCE_PORT_RANGE in and that "
                    "Bitbucket's SSH server is enabled.",
                )
            ]
    return []


def endpoint_check(instance: AtlassianInstance) -> list[dict]:
    """Check ``instance`` and store the problems on its proxy site; returns them."""
    instance = AtlassianInstance.objects.select_related("host").get(pk=instance.pk)
    site = ProxySite.objects.filter(instance=instance).select_related("certificate").first()
    problems = _dns_problems(instance) + _certificate_problems(instance, site)
    if instance.host is None:
        problems.append(_problem("proxy", "The instance has no host.", "Create it again."))
    else:
        layout = proxy.ProxyLayout.for_host(instance.host)
        try:
            with HostConnection(SSHTarget.for_host(instance.host), connect_timeout=10) as conn:
                data = conn.read(layout.site_path(instance), missing_ok=True)
                deployed = data.decode() if data is not None else None
                problems += _proxy_problems(instance, site, deployed)
                env = _app_env(conn, instance)
                problems += _app_problems(instance, env)
                problems += _published_port_problems(conn, instance, env)
        except RemoteError as exc:
            # The problem is shown to the tenant; the error names the host's address and SSH
            # user, so it goes into a staff-only detail (see certificates.api.serializers).
            problem = _problem(
                "proxy",
                "The panel could not reach the instance's host to check its proxy and app.",
                "Check again in a few minutes; if it persists, contact support.",
            )
            problem["detail"] = str(exc)
            problems.append(problem)
    if site is None:
        site, _ = ProxySite.objects.get_or_create(instance=instance)
    ProxySite.objects.filter(pk=site.pk).update(problems=problems, checked_at=timezone.now())
    return problems
