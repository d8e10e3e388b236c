"""The reverse proxy of an app host: nginx in a container on the proxy network, its site config
per instance (rendered from Django templates), and the Apache httpd export of seed 002.

Files reach the host atomically (upload to ``*.new``), then one remote script, under a lock on
the host, swaps them in, runs ``nginx -t`` and reloads; if the check fails it puts the previous
files back, so a refused config never replaces a working one and the running nginx is never
told to reload it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import yaml
from django.conf import settings
from django.template.loader import render_to_string

from provisioning.compose import EDGE_PREFIX, PROXY_NETWORK, instance_alias, project_name

# public_address moved down to provisioning (instances' host ports need it, and provisioning
# sits below certificates); re-exported for certificates code.
from provisioning.ports import public_address as public_address
from provisioning.ports import publish_bind
from provisioning.products import Product, spec_for
from provisioning.remote import CommandFailed, HostConnection

# Paths inside the proxy container.
CONTAINER_CONF_D = "/etc/nginx/conf.d"
CONTAINER_CERTS = "/etc/nginx/panel-certs"
CONTAINER_ACME = "/var/www/acme"
BASE_CONF = "00-panel.conf"
PROXY_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "SETUID", "SETGID", "NET_BIND_SERVICE", "KILL")
SYNCHRONY_PORT = 8091

_SAFE = re.compile(r"\A/?[a-z0-9][a-z0-9._/-]*\Z")


class ProxyConfigRefused(Exception):
    """``nginx -t`` refused new files; the previous ones are back in place."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class ProxyLayout:
    """Where the proxy's files live on one host."""

    directory: str
    conf_d: str
    certs: str
    acme: str
    container: str
    project: str

    @classmethod
    def for_host(cls, host: Any) -> ProxyLayout:
        directory = f"{host.data_root}/proxy"
        # Named after the address the proxy publishes on: in the lab several app hosts share
        # one Docker engine, and the published address is what must not be claimed twice.
        slug = re.sub(r"[^a-z0-9]+", "-", host.address.lower()).strip("-")
        name = f"panel-proxy-{slug}"
        return cls(
            directory=directory,
            conf_d=f"{directory}/conf.d",
            certs=f"{directory}/certs",
            acme=f"{directory}/acme",
            container=name,
            project=name,
        )

    def site_path(self, instance: Any) -> str:
        # Named as the edge network is (panel-edge-<project>): the proxy joins the networks
        # of exactly the sites it has.
        return f"{self.conf_d}/{project_name(instance)}.conf"

    def certificate_path(self, certificate: Any) -> str:
        return f"{self.certs}/{certificate.pk}.pem"

    def challenge_path(self, token: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", token):
            raise ValueError("an ACME token has only URL-safe base64 characters")
        return f"{self.acme}/.well-known/acme-challenge/{token}"


def _check(value: str, what: str) -> str:
    if not _SAFE.match(value or "x"):
        raise ValueError(f"refusing to render {what} {value!r} into a proxy config")
    return value


def proxy_image() -> str:
    """``PANEL_PROXY_IMAGE``; by default the official nginx image, or the lab's when product
    images come from the lab (``PANEL_IMAGE_PREFIX=panel-lab/``)."""
    if settings.PANEL_PROXY_IMAGE:
        return settings.PANEL_PROXY_IMAGE
    if settings.PANEL_IMAGE_PREFIX == "panel-lab/":
        return "panel-lab/proxy:bookworm"
    return "nginx:1.27-bookworm"


def compose_render(host: Any) -> str:
    """The proxy's compose file for ``host`` (published on the host's address, 80 and 443)."""
    layout = ProxyLayout.for_host(host)
    # The same address instances' own host ports are published on (provisioning.ports).
    bind = publish_bind(host)
    document = {
        "name": layout.project,
        "services": {
            "nginx": {
                "image": proxy_image(),
                "container_name": layout.container,
                "restart": "unless-stopped",
                "ports": [f"{bind}80:80", f"{bind}443:443"],
                "volumes": [
                    f"{layout.conf_d}:{CONTAINER_CONF_D}:ro",
                    f"{layout.certs}:{CONTAINER_CERTS}:ro",
                    f"{layout.acme}:{CONTAINER_ACME}:ro",
                ],
                "networks": ["proxy"],
                "labels": {"panel.role": "proxy"},
                # The proxy is on every instance's edge network: keep it to what nginx needs.
                # The master starts as root, binds 80/443, reads the certificates and drops its
                # workers to the nginx user (and signals them); everything else is dropped.
                "cap_drop": ["ALL"],
                "cap_add": list(PROXY_CAPABILITIES),
                "security_opt": ["no-new-privileges:true"],
                "pids_limit": 1024,
            }
        },
        "networks": {"proxy": {"external": True, "name": PROXY_NETWORK}},
    }
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def base_config_render() -> str:
    return render_to_string("certificates/proxy/base.conf", {"acme_root": CONTAINER_ACME})


def _site_context(instance: Any) -> dict[str, Any]:
    spec = spec_for(instance.product)
    context_path = _check(instance.context_path, "context path") if instance.context_path else ""
    return {
        "instance": instance,
        "product_label": Product(instance.product).label,
        "base_url": instance.base_url,
        "hostname": _check(instance.hostname, "hostname"),
        "context_path": context_path,
        "location": context_path or "/",
        # The app's own alias on its edge network (never a name another instance could hold).
        "upstream_host": _check(instance_alias(instance), "upstream alias"),
        "upstream_port": spec.http_port,
        "synchrony_port": SYNCHRONY_PORT if instance.product == Product.CONFLUENCE else None,
        "max_body_size": _check(str(settings.PANEL_PROXY_MAX_BODY_SIZE), "body size")
        if instance.product != Product.BITBUCKET
        else "0",  # git pushes over HTTPS have no sensible upper bound
        "connect_timeout": settings.PANEL_PROXY_CONNECT_TIMEOUT,
        "read_timeout": settings.PANEL_PROXY_READ_TIMEOUT,
        "acme_root": CONTAINER_ACME,
    }


def site_render(instance: Any, certificate: Any) -> str:
    """The nginx site of ``instance`` using ``certificate`` (key and chain in one file)."""
    context = _site_context(instance)
    context["certificate_path"] = f"{CONTAINER_CERTS}/{certificate.pk}.pem"
    return render_to_string(settings.PANEL_PROXY_SITE_TEMPLATE, context)


APACHE_ACME_ROOT = "/var/www/acme"


def _trusted_proxy(value: str) -> str:
    """``value`` as mod_remoteip's RemoteIPTrustedProxy takes it: an address or a network."""
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(
            f"refusing to render trusted proxy {value!r}: give an IP address or a network"
        ) from None


def apache_vhost_render(
    instance: Any,
    *,
    upstream_host: str = "",
    certificate_file: str = "",
    key_file: str = "",
    trusted_proxy: str = "",
    acme_root: str = APACHE_ACME_ROOT,
) -> str:
    """An Apache httpd 2.4 virtual host for ``instance`` (seed 002: ProxyPass/ProxyPassReverse
    with the context path, ProxyRequests Off, Synchrony rules in the documented order).

    ``trusted_proxy`` (an address or network) is the proxy in front of this Apache: only then
    is ``RemoteIPHeader X-Forwarded-For`` set, together with ``RemoteIPTrustedProxy``, since
    without it mod_remoteip believes the header from any client
    (https://httpd.apache.org/docs/2.4/mod/mod_remoteip.html#remoteiptrustedproxy). ACME
    HTTP-01 challenges are served from ``acme_root`` on port 80 (an ``Alias``)."""
    context = _site_context(instance)
    # An export runs in front of the instance elsewhere: by default it names the instance,
    # the edge network alias only resolves for the panel's own proxy. A host-level Apache
    # reaches neither (the template says so and what to point it at instead).
    context["upstream_host"] = _check(upstream_host or instance.name, "upstream host")
    ctx_path = context["context_path"]
    context.update(
        {
            "apache_path": ctx_path or "/",
            "apache_target": ctx_path or "/",
            "certificate_file": certificate_file or f"/etc/ssl/certs/{instance.hostname}.pem",
            "key_file": key_file or f"/etc/ssl/private/{instance.hostname}.key",
            "trusted_proxy": _trusted_proxy(trusted_proxy) if trusted_proxy else "",
            "acme_root": _check(acme_root.rstrip("/"), "ACME webroot"),
        }
    )
    return render_to_string("certificates/proxy/apache-vhost.conf", context)


def certificate_file_content(certificate: Any) -> str:
    """What the proxy reads for a certificate: private key, leaf, then chain."""
    return certificate.private_key.rstrip("\n") + "\n" + certificate.fullchain_pem


def config_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- on the host ----------------------------------------------------------------------------

# Runs on the host under flock. Arguments: container, then the final paths whose ``.new``
# files were uploaded next to them. Exit 3: nginx -t refused, previous files restored.
_SWAP_SCRIPT = r"""
set -u
c="$1"; shift
for f in "$@"; do
  rm -f "$f.prev" "$f.absent"
  if [ -e "$f" ]; then cp -p "$f" "$f.prev"; else : > "$f.absent"; fi
done
for f in "$@"; do mv -f "$f.new" "$f"; done
if out=$(docker exec "$c" nginx -t 2>&1); then
  printf '%s\n' "$out"
  for f in "$@"; do rm -f "$f.prev" "$f.absent"; done
  docker exec "$c" nginx -s reload
  exit $?
fi
printf '%s\n' "$out"
for f in "$@"; do
  if [ -e "$f.absent" ]; then rm -f "$f" "$f.absent"; else mv -f "$f.prev" "$f"; fi
done
exit 3
"""

_REMOVE_SCRIPT = r"""
set -u
c="$1"; shift
rm -f "$@"
if docker exec "$c" nginx -t 2>&1; then docker exec "$c" nginx -s reload; fi
exit 0
"""


# Runs on the host. Arguments: proxy container, its conf.d. The proxy is on the edge network of
# exactly the instances it has a site for (``panel-edge-<instance>`` / ``<instance>.conf``):
# joined when a site appears, left when it goes (so ``compose down`` can remove the network),
# rejoined after the proxy container was recreated. Prints what it changed.
_NETWORKS_SCRIPT = r"""
set -u
c="$1"; confd="$2"; prefix="$3"
attached=" $(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$c") "
for net in $(docker network ls --filter "label=panel.role=edge" --format '{{.Name}}'); do
  case "$net" in "$prefix"*) ;; *) continue ;; esac
  inst="${net#"$prefix"}"
  case "$attached" in *" $net "*) on=1 ;; *) on=0 ;; esac
  if [ -e "$confd/$inst.conf" ]; then
    if [ "$on" = 0 ]; then docker network connect "$net" "$c" && echo "joined $net"; fi
  elif [ "$on" = 1 ]; then
    docker network disconnect "$net" "$c" && echo "left $net"
  fi
done
for net in $attached; do
  case "$net" in "$prefix"*) ;; *) continue ;; esac
  if [ ! -e "$confd/${net#"$prefix"}.conf" ] && docker network inspect "$net" >/dev/null 2>&1
  then docker network disconnect "$net" "$c" && echo "left $net"; fi
done
exit 0
"""


def proxy_networks_reconcile(conn: HostConnection, layout: ProxyLayout) -> list[str]:
    """Join the proxy to the edge network of every instance it serves and leave the others;
    returns what changed (``joined <network>`` / ``left <network>``)."""
    result = conn.run(
        [
            *_lock(layout),
            "sh",
            "-c",
            _NETWORKS_SCRIPT,
            "sh",
            layout.container,
            layout.conf_d,
            EDGE_PREFIX,
        ],
        timeout=120,
        message="Matched the proxy's instance networks to its sites",
    )
    return [line for line in result.stdout.splitlines() if line.strip()]


def _lock(layout: ProxyLayout) -> list[str]:
    return ["flock", "--timeout", "120", f"{layout.directory}/.deploy.lock"]


def proxy_ensure(conn: HostConnection, host: Any) -> ProxyLayout:
    """Make sure the host's proxy runs with the panel's compose file and shared settings."""
    layout = ProxyLayout.for_host(host)
    conn.run(
        ["mkdir", "-p", layout.conf_d, layout.certs, f"{layout.acme}/.well-known/acme-challenge"],
        message="Proxy directories in place",
    )
    conn.run(["chmod", "0700", layout.certs])
    conn.run(["chmod", "-R", "a+rX", layout.acme])
    base_changed = conn.upload_if_changed(
        f"{layout.conf_d}/{BASE_CONF}",
        base_config_render(),
        mode=0o644,
        message="Uploaded the proxy's shared settings",
    )
    compose_changed = conn.upload_if_changed(
        f"{layout.directory}/compose.yml",
        compose_render(host),
        mode=0o644,
        message="Uploaded the proxy's compose file",
    )
    running = conn.run(
        ["docker", "inspect", "--format", "{{.State.Running}}", layout.container],
        ok_codes=range(256),
        record=False,
    )
    if compose_changed or running.stdout.strip() != "true":
        # Under the deploy lock: two publishes on one host at once (an evacuation's parts) would
        # both create the container, and the second fails on its name.
        conn.run(
            [
                *_lock(layout),
                "docker",
                "compose",
                "--project-directory",
                layout.directory,
                "--project-name",
                layout.project,
                "up",
                "--detach",
                "--remove-orphans",
            ],
            timeout=300,
            message=f"Started the proxy {layout.container} ({proxy_image()})",
        )
    elif base_changed:
        conn.run(
            ["docker", "exec", layout.container, "nginx", "-s", "reload"],
            message="Reloaded the proxy with the new shared settings",
        )
    # A recreated proxy container has lost the instance networks it had joined.
    proxy_networks_reconcile(conn, layout)
    return layout


def proxy_files_deploy(
    conn: HostConnection, layout: ProxyLayout, files: list[tuple[str, str, int]], *, what: str
) -> str:
    """Upload ``files`` (path, content, mode), test with ``nginx -t`` and reload; on a refusal
    restore the previous files and raise :class:`ProxyConfigRefused`. Returns nginx's output."""
    for path, content, mode in files:
        conn.upload(f"{path}.new", content, mode=mode, message=f"Uploaded {path}.new")
    try:
        result = conn.run(
            [
                *_lock(layout),
                "sh",
                "-c",
                _SWAP_SCRIPT,
                "sh",
                layout.container,
                *(p for p, _c, _m in files),
            ],
            timeout=180,
            message=f"Swapped in {what}, checked it with nginx -t and reloaded the proxy",
        )
    except CommandFailed as exc:
        output = (exc.stdout or "") + (exc.stderr or "")
        if exc.exit_code == 3:
            raise ProxyConfigRefused(
                f"nginx -t refused {what}; the previous files were put back and the proxy keeps "
                f"serving its working config. nginx said: {_nginx_error(output)}",
                output,
            ) from exc
        raise
    proxy_networks_reconcile(conn, layout)
    return result.stdout


def _nginx_error(output: str) -> str:
    lines = [ln for ln in output.splitlines() if "[emerg]" in ln or "[error]" in ln]
    return " ".join(lines or output.strip().splitlines()[-2:])[:800]


def proxy_files_remove(conn: HostConnection, layout: ProxyLayout, paths: list[str]) -> None:
    """Remove files (a site, a certificate) and reload if the rest still passes nginx -t."""
    conn.run(
        [*_lock(layout), "sh", "-c", _REMOVE_SCRIPT, "sh", layout.container, *paths],
        timeout=180,
        message=f"Removed {', '.join(p.rsplit('/', 1)[-1] for p in paths)} and reloaded the proxy",
    )
    # Leave the edge network of a removed site, so its instance's network can be removed.
    proxy_networks_reconcile(conn, layout)
