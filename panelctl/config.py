"""Where panelctl finds the panel's URL and token: the environment (``PANELCTL_URL``,
``PANELCTL_TOKEN``) first, then ``~/.config/panelctl/config.json`` (written by ``login``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


class ConfigError(Exception):
    """No usable URL or token: a message that tells the person what to run."""


@dataclass(frozen=True)
class Config:
    """The panel to talk to and the API token to send."""

    url: str
    token: str


def config_path() -> Path:
    """``$PANELCTL_CONFIG``, or ``$XDG_CONFIG_HOME/panelctl/config.json`` (``~/.config``)."""
    explicit = os.environ.get("PANELCTL_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "panelctl" / "config.json"


def config_load(*, url: str | None = None, token: str | None = None) -> Config:
    """The effective configuration: arguments, then the environment, then the file."""
    stored: dict[str, str] = {}
    path = config_path()
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot read {path}: {err}") from err
    url = url or os.environ.get("PANELCTL_URL") or stored.get("url")
    token = token or os.environ.get("PANELCTL_TOKEN") or stored.get("token")
    if not url or not token:
        raise ConfigError(
            "not logged in: run `panelctl login --url URL --token TOKEN` "
            "or set PANELCTL_URL and PANELCTL_TOKEN"
        )
    return Config(url=url.rstrip("/"), token=token)


def config_save(config: Config) -> Path:
    """Write the configuration readable by its owner only (mode 0600, directory 0700)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created with 0600 from the start: the token is never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": config.url, "token": config.token}, fh, indent=2)
        fh.write("\n")
    os.chmod(path, 0o600)  # an existing file keeps its mode through os.open: set it again
    return path
