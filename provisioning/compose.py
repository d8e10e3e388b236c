"""Rendering an instance's docker-compose project from data (seed 000's layout).

The compose file holds no secrets: passwords and license keys go to a separate ``.env`` file
(mode 0600) that compose interpolates, so the file can be hashed, diffed and shown freely.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import uuid
from dataclasses import dataclass

import yaml
from django.conf import settings

from provisioning.models import AtlassianInstance
from provisioning.ports import published_environment, published_ports_entry
from provisioning.products import (
    APP_CAPABILITIES,
    DB_CAPABILITIES,
    ProductSpec,
    ResourceLimits,
    resource_limits,
    spec_for,
)

# The network the host's proxy container itself is on. No instance joins it: each instance has
# its own edge network that only its app and the proxy share (see ``edge_network``).
PROXY_NETWORK = "panel-proxy"
EDGE_PREFIX = "panel-edge-"
STOP_GRACE = "120s"  # longer than the products' own shutdown timeouts (60 s and more)
ENV_NAME_RE = re.compile(r"\A[A-Z][A-Z0-9_]{0,63}\Z")

# A copy's mail switches. Jira ships these, commented out, in bin/setenv.sh and its staging
# guide uses them:
# https://confluence.atlassian.com/adminjiraserver072/establishing-staging-server-environments-for-jira-applications-828787655.html
# The send key is atlassian-mail's MailFactory.MAIL_DISABLED_KEY:
# https://docs.atlassian.com/atlassian-mail/1.3.23/constant-values.html
# Confluence's incoming switch is its own system property:
# https://confluence.atlassian.com/conf711/recognized-system-properties-1044782619.html
# For Bitbucket, Bamboo and Crowd their effect is not publicly documented (see README).
MAIL_OFF_ARGS = (
    "-Datlassian.mail.senddisabled=true",
    "-Datlassian.mail.fetchdisabled=true",
    "-Datlassian.mail.popdisabled=true",
)
CONFLUENCE_MAIL_OFF_ARGS = ("-Dconfluence.disable.mailpolling=true",)
JVM_ARGS_ENV = "JVM_SUPPORT_RECOMMENDED_ARGS"  # how every image takes extra JVM flags


@dataclass(frozen=True)
class RenderedProject:
    """What is uploaded for one instance: the compose file, its .env, and layout facts."""

    compose_yaml: str
    env_file: str
    project: str
    directory: str
    home_dir: str
    db_dir: str
    uid: int
    # More directories the project mounts, with the uid that owns them (the wal service's).
    owned_dirs: tuple[tuple[str, int], ...] = ()

    @property
    def compose_hash(self) -> str:
        return hashlib.sha256(self.compose_yaml.encode()).hexdigest()

    @property
    def secrets(self) -> list[str]:
        return [line.split("=", 1)[1] for line in self.env_file.splitlines() if "=" in line]


def instance_dir(instance: AtlassianInstance) -> str:
    return f"{instance.host.data_root}/instances/{instance.name}"


def project_name(instance: AtlassianInstance) -> str:
    """The docker compose project of ``instance`` on its host (its containers are named
    ``<project>-<service>-<n>``): the instance's name, or the one an evacuation gave it."""
    return instance.compose_project or instance.name


def instance_alias(instance: AtlassianInstance) -> str:
    """The app's DNS name on its edge network, the proxy's upstream. Unique per instance (from
    its id), so no instance name can shadow another's, ``app``, ``db`` or the platform's."""
    return f"inst-{uuid.UUID(str(instance.pk)).hex[:12]}"


def edge_network(instance: AtlassianInstance) -> str:
    """The Docker network between this instance's app and its host's proxy, and nothing else:
    a tenant's container has no route to another tenant's app or database."""
    return f"{EDGE_PREFIX}{project_name(instance)}"


def instance_limits(instance: AtlassianInstance) -> ResourceLimits:
    """Memory, CPU and pid limits of ``instance`` from its heap, tier and host."""
    return resource_limits(
        instance.product,
        heap_max_mb=instance.heap_max_mb,
        tier=instance.tier,
        host_cpus=instance.host.cpu_count if instance.host is not None else None,
    )


def _confinement(memory_mb: int, cpus: float, pids: int, caps: tuple[str, ...]) -> dict:
    # memswap_limit = mem_limit: no swap on top, so the limit is what the host commits.
    return {
        "mem_limit": f"{memory_mb}m",
        "memswap_limit": f"{memory_mb}m",
        "cpus": cpus,
        "pids_limit": pids,
        "cap_drop": ["ALL"],
        "cap_add": list(caps),
        "security_opt": ["no-new-privileges:true"],
    }


def instance_jdbc_url(instance: AtlassianInstance) -> str:
    """The JDBC URL of the instance's own database as the app container reaches it."""
    return f"jdbc:postgresql://db:5432/{instance.db_name}"


def _app_environment(instance: AtlassianInstance, spec: ProductSpec) -> dict[str, str]:
    jdbc_url = instance_jdbc_url(instance)
    env: dict[str, str] = {
        "JVM_MINIMUM_MEMORY": f"{instance.heap_min_mb}m",
        "JVM_MAXIMUM_MEMORY": f"{instance.heap_max_mb}m",
    }
    if spec.env_style == "bitbucket":
        env.update(
            {
                "SERVER_PROXY_NAME": instance.hostname,
                "SERVER_PROXY_PORT": "443",
                "SERVER_SCHEME": "https",
                "SERVER_SECURE": "true",
                "SERVER_CONTEXT_PATH": instance.context_path or "/",
                "JDBC_DRIVER": "org.postgresql.Driver",
                "JDBC_URL": jdbc_url,
                "JDBC_USER": instance.db_user,
                "JDBC_PASSWORD": "${PANEL_DB_PASSWORD}",
            }
        )
    else:
        env.update(
            {
                "ATL_PROXY_NAME": instance.hostname,
                "ATL_PROXY_PORT": "443",
                "ATL_TOMCAT_SCHEME": "https",
                "ATL_TOMCAT_SECURE": "true",
                # Crowd's image serves at /crowd when this is empty (ProductSpec.default_context).
                "ATL_TOMCAT_CONTEXTPATH": spec.served_context(instance.context_path),
            }
        )
        if spec.db_env:
            env.update(
                {
                    "ATL_JDBC_URL": jdbc_url,
                    "ATL_JDBC_USER": instance.db_user,
                    "ATL_JDBC_PASSWORD": "${PANEL_DB_PASSWORD}",
                    "ATL_DB_TYPE": (
                        "postgres72" if spec.product.startswith("jira") else "postgresql"
                    ),
                    "ATL_DB_DRIVER": "org.postgresql.Driver",
                }
            )
        # Crowd (db_env False) ignores database variables: its setup wizard asks for the
        # database and writes shared/crowd.cfg.xml; the instance page shows what to type.
    if spec.takes_license_env and _license_key(instance):
        env["ATL_LICENSE_KEY"] = "${PANEL_LICENSE_KEY}"
    # The host port of git over SSH / the agent broker, as clients must use it.
    env.update(published_environment(instance))
    for i, (name, _value) in enumerate(sorted(instance.extra_env.items())):
        # Opaque extras (e.g. a monitoring agent's settings) go through .env as well, since
        # they often hold keys; they may not override what the panel sets.
        if ENV_NAME_RE.match(name) and name not in env:
            env[name] = f"${{PANEL_EXTRA_{i}}}"
    if instance.outbound_disabled:
        # Appended to whatever JVM flags the instance already has (its extra_env value stays
        # in .env and is interpolated), so a copy keeps its tuning and still sends no mail.
        flags = " ".join(mail_off_args(spec))
        current = env.get(JVM_ARGS_ENV)
        env[JVM_ARGS_ENV] = f"{current} {flags}" if current else flags
    return env


def mail_off_args(spec: ProductSpec) -> tuple[str, ...]:
    """The JVM flags that keep ``spec``'s product from sending or fetching mail."""
    if spec.product == "confluence":
        return MAIL_OFF_ARGS + CONFLUENCE_MAIL_OFF_ARGS
    return MAIL_OFF_ARGS


def _license_key(instance: AtlassianInstance) -> str:
    lic = instance.licenses.order_by("-created_at").first()
    return lic.key if lic is not None else ""


def _env_file(instance: AtlassianInstance, spec: ProductSpec) -> str:
    lines = [f"PANEL_DB_PASSWORD={instance.db_password}"]
    if spec.takes_license_env and _license_key(instance):
        lines.append(f"PANEL_LICENSE_KEY={_license_key(instance)}")
    for i, (name, value) in enumerate(sorted(instance.extra_env.items())):
        if ENV_NAME_RE.match(name):
            lines.append(f"PANEL_EXTRA_{i}={value}")
    for line in lines:
        if "\n" in line or "$" in line.split("=", 1)[1]:
            raise ValueError("a secret for the .env file contains a newline or '$'")
    return "\n".join(lines) + "\n"


# The replication slot pg_receivewal streams from, and the most WAL it may hold back on the
# database's disk when the receiver is down (then the slot is dropped by PostgreSQL and the
# archive has a gap, which backups.wal reports, instead of the app host's disk filling).
WAL_SLOT = "panel_wal"
WAL_SLOT_KEEP = "4GB"
WAL_DIR = "wal"  # <instance dir>/wal: what pg_receivewal wrote, shipped by the host's shipper
SOCKET_DIR = "run"  # <instance dir>/run: the database's socket, shared with the wal service


def _wal_services(instance: AtlassianInstance, directory: str, labels: dict[str, str]) -> dict:
    """The `wal` service: pg_receivewal (from the database's own image) over the database's
    unix socket, so the replication connection needs no network access and no pg_hba change
    (the official image's initdb trusts local replication connections)."""
    user = instance.db_user
    socket = "/var/run/postgresql"
    create = shlex.join(
        ["pg_receivewal", "-h", socket, "-U", user, f"--slot={WAL_SLOT}"]
        + ["--create-slot", "--if-not-exists"]
    )
    stream = shlex.join(
        ["pg_receivewal", "-h", socket, "-U", user, f"--slot={WAL_SLOT}", "-D", "/wal"]
        + ["--no-loop", "--status-interval=1", "--verbose"]
    )
    return {
        "wal": {
            "image": settings.PANEL_POSTGRES_IMAGE,
            "restart": "unless-stopped",
            "user": "999:999",
            "entrypoint": ["sh", "-c", f"{create} && exec {stream}"],
            "volumes": [f"{directory}/{SOCKET_DIR}:{socket}", f"{directory}/{WAL_DIR}:/wal"],
            "network_mode": "none",
            "depends_on": {"db": {"condition": "service_healthy"}},
            "labels": {**labels, "panel.role": "wal"},
            **_confinement(128, 0.25, 64, DB_CAPABILITIES),
        }
    }


def compose_render(
    instance: AtlassianInstance, *, version: str | None = None, heap: tuple[int, int] | None = None
) -> RenderedProject:
    """Render the compose project of ``instance`` (optionally at another version or heap)."""
    spec = spec_for(instance.product)
    if version is not None or heap is not None:
        # Render a candidate without touching the stored instance.
        instance = AtlassianInstance(
            **{f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}
        )
        instance.version = version or instance.version
        if heap is not None:
            instance.heap_min_mb, instance.heap_max_mb = heap
    directory = instance_dir(instance)
    home_dir, db_dir = f"{directory}/home", f"{directory}/db"
    labels = {
        "panel.tenant": instance.tenant.slug,
        "panel.instance": instance.name,
        "panel.instance-id": str(instance.pk),
        "panel.product": instance.product,
    }
    limits = instance_limits(instance)
    ports = {"http": spec.http_port, **{f"extra{i}": p for i, p in enumerate(spec.extra_ports)}}
    published = published_ports_entry(instance)
    document = {
        "name": project_name(instance),
        "services": {
            "app": {
                "image": f"{settings.PANEL_IMAGE_PREFIX}{spec.image}:{instance.version}",
                "restart": "unless-stopped",
                "stop_grace_period": STOP_GRACE,
                "environment": _app_environment(instance, spec),
                "volumes": [f"{home_dir}:{spec.home}"],
                "networks": {"private": {}, "edge": {"aliases": [instance_alias(instance)]}},
                "depends_on": {"db": {"condition": "service_healthy"}},
                "expose": [str(p) for p in ports.values()],
                # Bitbucket's SSH and Bamboo's broker on the instance's own host port.
                **({"ports": published} if published else {}),
                "labels": {**labels, "panel.role": "app"},
                **_confinement(
                    limits.app_memory_mb, limits.app_cpus, limits.app_pids, APP_CAPABILITIES
                ),
            },
            "db": {
                "image": settings.PANEL_POSTGRES_IMAGE,
                "restart": "unless-stopped",
                "stop_grace_period": STOP_GRACE,
                "environment": {
                    "POSTGRES_USER": instance.db_user,
                    "POSTGRES_DB": instance.db_name,
                    "POSTGRES_PASSWORD": "${PANEL_DB_PASSWORD}",
                    "POSTGRES_INITDB_ARGS": "--encoding=UTF8 --lc-collate=C --lc-ctype=C",
                },
                "volumes": [
                    f"{db_dir}:/var/lib/postgresql/data",
                    # the socket directory, shared with the wal service
                    *(
                        [f"{directory}/{SOCKET_DIR}:/var/run/postgresql"]
                        if instance.wal_archiving
                        else []
                    ),
                ],
                **(
                    {"command": ["postgres", "-c", f"max_slot_wal_keep_size={WAL_SLOT_KEEP}"]}
                    if instance.wal_archiving
                    else {}
                ),
                "networks": ["private"],
                "healthcheck": {
                    "test": ["CMD", "pg_isready", "-U", instance.db_user, "-d", instance.db_name],
                    "interval": "5s",
                    "timeout": "5s",
                    "retries": 30,
                },
                "labels": {**labels, "panel.role": "db"},
                **_confinement(
                    limits.db_memory_mb, limits.db_cpus, limits.db_pids, DB_CAPABILITIES
                ),
            },
            **(_wal_services(instance, directory, labels) if instance.wal_archiving else {}),
        },
        "networks": {
            # The database is reachable only on this instance's own network.
            "private": {"internal": True},
            # The app's way out and the proxy's way in; the proxy joins it when the instance's
            # site is deployed (certificates.proxy) and leaves it when the site is removed.
            "edge": {
                "name": edge_network(instance),
                "labels": {
                    "panel.role": "edge",
                    "panel.instance": instance.name,
                    "panel.instance-id": str(instance.pk),
                },
            },
        },
    }
    return RenderedProject(
        compose_yaml=yaml.safe_dump(document, sort_keys=False, default_flow_style=False),
        env_file=_env_file(instance, spec),
        project=project_name(instance),
        directory=directory,
        home_dir=home_dir,
        db_dir=db_dir,
        uid=spec.uid,
        owned_dirs=(
            ((f"{directory}/{SOCKET_DIR}", 999), (f"{directory}/{WAL_DIR}", 999))
            if instance.wal_archiving
            else ()
        ),
    )
