"""The Apache httpd export (seed 002) is accepted by Debian's apachectl -t, trusts a forwarded
client address only from a named proxy, and answers ACME challenges from its webroot."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from certificates.acme_client import private_key_generate, self_signed_generate
from certificates.proxy import apache_vhost_render
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db

MODULES = [
    "mpm_event",
    "authz_core",
    "alias",
    "proxy",
    "proxy_http",
    "proxy_wstunnel",
    "rewrite",
    "remoteip",
    "headers",
    "ssl",
    "socache_shmcb",
]


def apache_check(tmp_path: Path, vhost: str) -> subprocess.CompletedProcess:
    """``apachectl -t`` with a throwaway server root loading Debian's modules."""
    (tmp_path / "site.conf").write_text(vhost)
    lines = [f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so" for m in MODULES]
    (tmp_path / "apache2.conf").write_text(
        "\n".join(
            [
                f'ServerRoot "{tmp_path}"',
                f"PidFile {tmp_path}/apache.pid",
                "Listen 127.0.0.1:65080",
                f"ErrorLog {tmp_path}/error.log",
                *lines,
                f"Include {tmp_path}/site.conf",
                "",
            ]
        )
    )
    (tmp_path / "envvars").write_text(
        "export APACHE_RUN_USER=www-data APACHE_RUN_GROUP=www-data "
        f"APACHE_PID_FILE={tmp_path}/apache.pid APACHE_RUN_DIR={tmp_path} "
        f"APACHE_LOCK_DIR={tmp_path} APACHE_LOG_DIR={tmp_path}\n"
    )
    env = dict(os.environ, APACHE_CONFDIR=str(tmp_path))
    return subprocess.run(["apachectl", "-t"], capture_output=True, text=True, env=env, timeout=30)


@pytest.mark.parametrize(
    ("product", "version", "context", "trusted_proxy"),
    [
        ("confluence", "8.5.0", "", ""),
        ("jira-software", "9.12.0", "/jira", "10.0.0.0/24"),
        ("bitbucket", "8.19.0", "", "192.0.2.7"),
    ],
)
def test_the_export_passes_apachectl(acme, tmp_path, product, version, context, trusted_proxy):
    inst = make_instance(
        acme,
        "acme-app",
        product=product,
        version=version,
        hostname="app.acme.example",
        context_path=context,
    )
    key = private_key_generate()
    (tmp_path / "cert.pem").write_text(self_signed_generate(["app.acme.example"], key))
    (tmp_path / "key.pem").write_text(key)
    vhost = apache_vhost_render(
        inst,
        certificate_file=str(tmp_path / "cert.pem"),
        key_file=str(tmp_path / "key.pem"),
        trusted_proxy=trusted_proxy,
    )
    result = apache_check(tmp_path, vhost)
    assert result.returncode == 0, result.stderr + vhost
    assert "Syntax OK" in result.stderr + result.stdout
    assert "ProxyRequests Off" in vhost
    assert ("RemoteIPHeader X-Forwarded-For" in vhost) is bool(trusted_proxy)
    port = {"confluence": 8090, "jira-software": 8080, "bitbucket": 7990}[product]
    target = context or "/"
    assert f"ProxyPass {target} http://acme-app:{port}{target}" in vhost
    assert f"ProxyPassReverse {target} http://acme-app:{port}{target}" in vhost


def test_confluence_synchrony_rules_come_in_the_documented_order(acme):
    inst = make_instance(
        acme, "acme-wiki", product="confluence", version="8.5.0", hostname="wiki.acme.example"
    )
    vhost = apache_vhost_render(inst)
    order = [
        "ProxyRequests Off",
        "<Proxy *>",
        "ProxyPass /synchrony http://acme-wiki:8091/synchrony",
        "<Location /synchrony>",
        "RewriteEngine on",
        "RewriteCond %{HTTP:UPGRADE} ^WebSocket$ [NC]",
        "RewriteCond %{HTTP:CONNECTION} Upgrade$ [NC]",
        "RewriteRule .* ws://acme-wiki:8091%{REQUEST_URI} [P]",
        "ProxyPass / http://acme-wiki:8090/",
        "ProxyPassReverse / http://acme-wiki:8090/",
        "<Location />",
    ]
    positions = [vhost.index(line) for line in order]
    assert positions == sorted(positions)
    jira = make_instance(acme, "acme-jira", hostname="jira.acme.example")
    assert "synchrony" not in apache_vhost_render(jira)


def _directives(vhost: str) -> list[str]:
    """The vhost's directive lines, without comments."""
    lines = (line.strip() for line in vhost.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_the_forwarded_address_is_read_only_from_the_named_proxy(acme):
    inst = make_instance(acme, "acme-jira", hostname="jira.acme.example")
    # Without a proxy in front, mod_remoteip would believe any client's X-Forwarded-For.
    plain = _directives(apache_vhost_render(inst))
    assert not [d for d in plain if d.startswith("RemoteIP")]
    behind = _directives(apache_vhost_render(inst, trusted_proxy="10.1.2.3"))
    assert "RemoteIPHeader X-Forwarded-For" in behind
    assert "RemoteIPTrustedProxy 10.1.2.3/32" in behind
    network = _directives(apache_vhost_render(inst, trusted_proxy="10.1.2.9/24"))
    assert "RemoteIPTrustedProxy 10.1.2.0/24" in network
    for bad in ("any", "10.1.2.3 0.0.0.0/0", "10.1.2.3\nRemoteIPHeader X"):
        with pytest.raises(ValueError, match="trusted proxy"):
            apache_vhost_render(inst, trusted_proxy=bad)


def test_acme_challenges_are_served_from_the_webroot_on_port_80(acme):
    inst = make_instance(acme, "acme-jira", hostname="jira.acme.example")
    vhost = apache_vhost_render(inst, acme_root="/srv/acme/")
    plain_http = vhost.split("<VirtualHost *:443>")[0]
    directives = _directives(plain_http)
    alias = 'Alias "/.well-known/acme-challenge/" "/srv/acme/.well-known/acme-challenge/"'
    assert alias in directives
    opened = directives.index('<Directory "/srv/acme/.well-known/acme-challenge/">')
    assert directives[opened + 1 : opened + 3] == ["Require all granted", "</Directory>"]
    # Every other path moves to HTTPS; the challenges stay on plain HTTP (RFC 8555 8.3).
    assert any(d.startswith("RedirectMatch 301") and "(?!\\.well-known" in d for d in directives)
    assert "acme-challenge" not in vhost.split("<VirtualHost *:443>")[1]
