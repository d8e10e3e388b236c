"""Validation of every value that may end up in a command, a path or a config file.

Values are checked against strict allow-lists before they get near a shell; the remote layer
also passes argv lists, so validation is the first of two fences, not the only one.
"""

from __future__ import annotations

import ipaddress
import re

from django.core.exceptions import ValidationError

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
FQDN_RE = re.compile(rf"^(?=.{{4,253}}$){_LABEL}(\.{_LABEL})+$")
HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
CONTEXT_PATH_RE = re.compile(r"^(/[a-z0-9][a-z0-9_-]{0,62})?$")
SLUG_RE = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
ABS_PATH_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
SSH_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+){1,3}(-[a-z0-9]+)?$")
FINGERPRINT_RE = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")


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
