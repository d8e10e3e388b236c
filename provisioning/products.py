"""The catalogue of Atlassian products the panel runs, and what differs between them."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db import models


class Product(models.TextChoices):
    JIRA_SOFTWARE = "jira-software", "Jira Software"
    JIRA_SERVICE_MANAGEMENT = "jira-servicemanagement", "Jira Service Management"
    CONFLUENCE = "confluence", "Confluence"
    BITBUCKET = "bitbucket", "Bitbucket"
    BAMBOO = "bamboo", "Bamboo"
    CROWD = "crowd", "Crowd"


@dataclass(frozen=True)
class ProductSpec:
    """Facts of one product's official Docker image the panel relies on."""

    product: str
    image: str  # name under PANEL_IMAGE_PREFIX
    http_port: int
    extra_ports: tuple[int, ...]
    uid: int
    home: str
    env_style: str  # "atl" (ATL_* variables) or "bitbucket" (SERVER_* / JDBC_*)
    versions: tuple[str, ...]
    min_heap_mb: int = 512
    takes_license_env: bool = False
    extra_dirs: tuple[str, ...] = field(default=())
    # Memory the app container needs beyond the JVM heap (metaspace, code cache, thread stacks,
    # direct buffers; Confluence's Synchrony is a second JVM, Bitbucket forks git).
    non_heap_mb: int = 768
    # Threads count against the pid limit; Bitbucket forks a git process per hosting request.
    pids_limit: int = 2048
    # The container port clients outside reach directly, not through the HTTP proxy; the
    # panel publishes it on a host port of its own per instance (provisioning/ports.py). The
    # images' READMEs publish them: Bitbucket `-p 7999:7999` (git over SSH), Bamboo
    # `-p 54663:54663` (the ActiveMQ broker of remote agents)
    # (https://hub.docker.com/r/atlassian/bitbucket, https://hub.docker.com/r/atlassian/bamboo).
    published_port: int | None = None
    # The file in home that names the database (relative to home). The images write it on
    # the first start only, so a copied home names the source's database until the panel
    # rewrites it (provisioning/homefiles.py). Bitbucket's is read only when JDBC_URL is unset.
    db_config_file: str = ""
    # The licence lives in a home file (Confluence: atlassian.license.message in
    # confluence.cfg.xml); ATL_LICENSE_KEY only seeds it on the first start.
    license_in_home_file: bool = False
    # Where the health answer is and which key of its JSON names the state. Jira, JSM,
    # Confluence, Bitbucket and Crowd answer <ctx>/status with {"state": ...}
    # (https://support.atlassian.com/jira/kb/jira-status-endpoint-response-meanings/); Bamboo
    # answers <ctx>/rest/api/latest/status with {"status": ...}: Atlassian's chart probes that
    # path and its test reads .status (data-center-helm-charts, src/main/charts/bamboo/
    # templates/statefulset.yaml and templates/tests/test-application-status.yaml).
    status_path: str = "/status"
    status_key: str = "state"
    # The context the image serves at when ATL_TOMCAT_CONTEXTPATH is empty: Crowd's image
    # README documents it "(default: /crowd)" and Atlassian's chart tests /crowd/status
    # (https://hub.docker.com/r/atlassian/crowd, mirrored in github.com/atlassian/
    # data-center-helm-charts docs/docs/containers/CROWD.md; src/main/charts/crowd/values.yaml
    # and templates/tests/test-application-status.yaml).
    default_context: str = ""
    # Whether the image takes its database from ATL_JDBC_*/ATL_DB_* (or JDBC_*). Crowd's image
    # README (same CROWD.md) documents no database variable, and its entrypoint renders only
    # server.xml and crowd-init.properties: the database is chosen in Crowd's setup wizard,
    # which writes shared/crowd.cfg.xml.
    db_env: bool = True

    def served_context(self, context_path: str) -> str:
        """The context the app really answers at for an instance's ``context_path``."""
        return context_path or self.default_context


CATALOGUE: dict[str, ProductSpec] = {
    Product.JIRA_SOFTWARE: ProductSpec(
        Product.JIRA_SOFTWARE,
        "jira-software",
        8080,
        (),
        2001,
        "/var/atlassian/application-data/jira",
        "atl",
        ("9.12.0", "9.17.0"),
        768,
        db_config_file="dbconfig.xml",
    ),
    Product.JIRA_SERVICE_MANAGEMENT: ProductSpec(
        Product.JIRA_SERVICE_MANAGEMENT,
        "jira-servicemanagement",
        8080,
        (),
        2001,
        "/var/atlassian/application-data/jira",
        "atl",
        ("5.12.0", "5.17.0"),
        768,
        db_config_file="dbconfig.xml",
    ),
    Product.CONFLUENCE: ProductSpec(
        Product.CONFLUENCE,
        "confluence",
        8090,
        (8091,),
        2002,
        "/var/atlassian/application-data/confluence",
        "atl",
        ("8.5.0", "8.9.0"),
        1024,
        takes_license_env=True,
        license_in_home_file=True,
        db_config_file="confluence.cfg.xml",
        extra_dirs=("keys",),
        non_heap_mb=1536,
    ),
    Product.BITBUCKET: ProductSpec(
        Product.BITBUCKET,
        "bitbucket",
        7990,
        (7999,),
        2003,
        "/var/atlassian/application-data/bitbucket",
        "bitbucket",
        ("8.19.0", "9.4.0"),
        512,
        non_heap_mb=1536,
        pids_limit=8192,
        published_port=7999,
        db_config_file="shared/bitbucket.properties",
    ),
    Product.BAMBOO: ProductSpec(
        Product.BAMBOO,
        "bamboo",
        8085,
        (54663,),
        2005,
        "/var/atlassian/application-data/bamboo",
        "atl",
        ("9.6.0",),
        512,
        db_config_file="bamboo.cfg.xml",
        published_port=54663,
        status_path="/rest/api/latest/status",
        status_key="status",
    ),
    Product.CROWD: ProductSpec(
        Product.CROWD,
        "crowd",
        8095,
        (),
        2004,
        "/var/atlassian/application-data/crowd",
        "atl",
        ("5.3.0",),
        512,
        db_config_file="shared/crowd.cfg.xml",
        default_context="/crowd",
        db_env=False,
    ),
}


# Capabilities the official images need at start-up, everything else is dropped. They start
# as root, chown/chmod the home (CHOWN, FOWNER, DAC_OVERRIDE: entrypoint_helpers.set_perms),
# then drop to the run user with /bin/su (SETUID, SETGID; su goes through PAM, which writes to
# the audit log: AUDIT_WRITE; su stays as parent and forwards SIGTERM to the app running as
# another uid: KILL). See the images' README, "Running as non-root", and
# docker-shared-components/image/entrypoint_helpers.py (start_app). The official postgres
# image does the same with gosu (docker-entrypoint.sh: chown of PGDATA, then gosu postgres).
APP_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "AUDIT_WRITE", "KILL")
DB_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID")
DB_PIDS_LIMIT = 512  # one backend process per connection, max_connections defaults to 100

# CPUs of the app container and memory of the database container by service tier: critical
# and production instances get more; the limit never exceeds what the host has.
TIER_CPUS: dict[str, float] = {"tier0": 4.0, "tier1": 4.0, "tier2": 2.0, "tier3": 1.0}
TIER_DB_MEMORY_MB: dict[str, int] = {"tier0": 2048, "tier1": 2048, "tier2": 1024, "tier3": 512}


@dataclass(frozen=True)
class ResourceLimits:
    """Memory, CPU and process limits of one instance's two containers."""

    app_memory_mb: int
    app_cpus: float
    app_pids: int
    db_memory_mb: int
    db_cpus: float
    db_pids: int

    @property
    def memory_mb(self) -> int:
        """What the instance may use on its host at most: what placement reserves for it."""
        return self.app_memory_mb + self.db_memory_mb


def resource_limits(
    product: str, *, heap_max_mb: int, tier: str, host_cpus: int | None = None
) -> ResourceLimits:
    """The limits of an instance of ``product`` with that heap and tier (on a host with
    ``host_cpus`` CPUs when known: Docker refuses a CPU limit above the host's)."""
    spec = spec_for(product)
    non_heap = max(spec.non_heap_mb, heap_max_mb // 4)
    cpus = TIER_CPUS.get(tier, 2.0)
    if host_cpus:
        cpus = min(cpus, float(host_cpus))
    return ResourceLimits(
        app_memory_mb=heap_max_mb + non_heap,
        app_cpus=cpus,
        app_pids=spec.pids_limit,
        db_memory_mb=TIER_DB_MEMORY_MB.get(tier, 1024),
        db_cpus=min(cpus, 2.0),
        db_pids=DB_PIDS_LIMIT,
    )


def spec_for(product: str) -> ProductSpec:
    return CATALOGUE[Product(product)]


def versions_for(product: str) -> tuple[str, ...]:
    """Versions offered for ``product``: the catalogue's plus ``PANEL_EXTRA_VERSIONS``.

    ``PANEL_EXTRA_VERSIONS`` is ``product=v1|v2,product=v3`` (the lab adds its broken tag).
    """
    extra: list[str] = []
    for item in settings.PANEL_EXTRA_VERSIONS:
        name, _, values = item.partition("=")
        if name == product:
            extra.extend(v for v in values.split("|") if v)
    return spec_for(product).versions + tuple(
        v for v in extra if v not in spec_for(product).versions
    )
