"""The Apache httpd export (seed 002) is accepted by Debian's apachectl -t."""

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
    ("product", "version", "context"),
    [
        ("confluence", "8.5.0", ""),
        ("jira-software", "9.12.0", "/jira"),
        ("bitbucket", "8.19.0", ""),
    ],
)
def test_the_export_passes_apachectl(acme, tmp_path, product, version, context):
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
        inst, certificate_file=str(tmp_path / "cert.pem"), key_file=str(tmp_path / "key.pem")
    )
    result = apache_check(tmp_path, vhost)
    assert result.returncode == 0, result.stderr + vhost
    assert "Syntax OK" in result.stderr + result.stdout
    assert "ProxyRequests Off" in vhost and "RemoteIPHeader X-Forwarded-For" in vhost
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
