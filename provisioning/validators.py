"""Validation of every value that may end up in a command, a path or a config file.

Values are checked against strict allow-lists before they get near a shell; the remote layer
also passes argv lists, so validation is the first of two fences, not the only one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

# Anchored with ``\Z``: ``$`` also matches before a trailing newline, which would let "x\n"
# through wherever a value is not stripped first.
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
FQDN_RE = re.compile(rf"\A(?=.{{4,253}}\Z){_LABEL}(\.{_LABEL})+\Z")
HOSTNAME_RE = re.compile(rf"\A(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*\Z")
CONTEXT_PATH_RE = re.compile(r"\A(/[a-z0-9][a-z0-9_-]{0,62})?\Z")
SLUG_RE = re.compile(r"\A[a-z][a-z0-9-]{1,38}[a-z0-9]\Z")
ABS_PATH_RE = re.compile(r"\A(/[A-Za-z0-9._-]+)+\Z")
SSH_USER_RE = re.compile(r"\A[a-z_][a-z0-9_-]{0,31}\Z")
VERSION_RE = re.compile(r"\A[0-9]+(\.[0-9]+){1,3}(-[a-z0-9]+)?\Z")
FINGERPRINT_RE = re.compile(r"\ASHA256:[A-Za-z0-9+/]{43}\Z")
# Docker names its containers <project>-<service>-<n>; an instance called "sales-app-1" would
# answer on the shared proxy network for the app container of the instance "sales".
COMPOSE_CONTAINER_RE = re.compile(r"\A.+-(app|db)-[0-9]+\Z")

# Extra checks of a new instance's hostname that need another app's data (the certificates
# app registers the managed-zone checks); each raises ValidationError. provisioning imports no
# higher app, so they are registered here rather than called directly.
INSTANCE_HOSTNAME_CHECKS: list[Callable[[str], None]] = []


def validate_fqdn(value: str) -> None:
    """A public hostname such as ``jira.example.com`` (lowercase, at least two labels)."""
    if not isinstance(value, str) or not FQDN_RE.match(value):
        raise ValidationError(
            "Enter a fully qualified domain name such as jira.example.com "
            "(lowercase letters, digits, hyphens and dots)."
        )


def validate_host_address(value: str) -> None:
    """An IP address or a DNS hostname a managed host is reached at."""
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    if not isinstance(value, str) or not HOSTNAME_RE.match(value):
        raise ValidationError("Enter an IP address or a hostname (letters, digits, '-' and '.').")


def validate_context_path(value: str) -> None:
    """Empty, or one path segment such as ``/jira``."""
    if not CONTEXT_PATH_RE.match(value or ""):
        raise ValidationError(
            "A context path is empty or one segment like /jira "
            "(lowercase letters, digits, '-' and '_')."
        )


def validate_slug(value: str) -> None:
    """Instance and host short names: used in directory and compose project names."""
    if not isinstance(value, str) or not SLUG_RE.match(value):
        raise ValidationError(
            "Use 3-40 lowercase letters, digits and hyphens, starting with a letter."
        )


def validate_instance_name(value: str) -> None:
    """An instance's name: a slug that is not one of the names Docker resolves on the shared
    proxy network (service names, the proxy's container, compose container names), since nginx
    proxies a hostname to the container its instance name resolves to."""
    validate_slug(value)
    reserved = {n.lower() for n in settings.PANEL_RESERVED_INSTANCE_NAMES}
    if value in reserved or value.startswith("panel-") or COMPOSE_CONTAINER_RE.match(value):
        raise ValidationError(
            f"{value} is reserved: names such as app, db and proxy, names starting with panel- "
            "and names ending in -app-<n> or -db-<n> are used by the platform's containers."
        )


def panel_hostnames() -> set[str]:
    """The panel's own names (PANEL_BASE_URL, ALLOWED_HOSTS, PANEL_DNS_RESERVED_HOSTNAMES);
    ``.example.com`` entries of ALLOWED_HOSTS stand for the domain and every name below it."""
    names = {urlsplit(settings.PANEL_BASE_URL).hostname or ""}
    names |= {h.strip().lower() for h in settings.ALLOWED_HOSTS}
    names |= {h.strip().lower() for h in settings.PANEL_DNS_RESERVED_HOSTNAMES}
    return {n.rstrip(".") for n in names if n and n != "*"}


def validate_instance_hostname(value: str) -> None:
    """A new instance's hostname: a FQDN that is not one of the panel's own names, and that
    passes the registered checks (managed zones: reserved labels, records already there)."""
    validate_fqdn(value)
    for name in panel_hostnames():
        if value == name.lstrip(".") or (name.startswith(".") and value.endswith(name)):
            raise ValidationError(f"{value} is one of the platform's own names; choose another.")
    for check in INSTANCE_HOSTNAME_CHECKS:
        try:
            check(value)
        except ValidationError as exc:
            raise ValidationError(exc.messages) from exc  # one field's errors, not a dict


def validate_abs_path(value: str) -> None:
    """An absolute path without '..', spaces or shell metacharacters."""
    if (
        not isinstance(value, str)
        or not ABS_PATH_RE.match(value)
        or any(part in {".", ".."} for part in value.split("/"))
    ):
        raise ValidationError(
            "Enter an absolute path like /srv/atlassian (letters, digits, '.', '_', '-'; no '..')."
        )


def validate_ssh_user(value: str) -> None:
    if not isinstance(value, str) or not SSH_USER_RE.match(value):
        raise ValidationError("Enter a Unix user name (lowercase letters, digits, '_' and '-').")


def validate_version(value: str) -> None:
    if not isinstance(value, str) or not VERSION_RE.match(value):
        raise ValidationError("Enter a version such as 9.12.0.")


def validate_fingerprint(value: str) -> None:
    if value and not FINGERPRINT_RE.match(value):
        raise ValidationError("Enter an OpenSSH SHA256 fingerprint such as SHA256:AbC…(43 chars).")
