"""Managed hosts: enrol, trust a host key, provision, health (a package of provisioning).

The flow is enrol -> first contact (``host.connect``: fetch the host key without logging in) ->
an admin trusts the key (or it matched the fingerprint given up front) -> the panel's key is
installed (with a one-time password) -> ``host.provision`` -> ready. Every remote step goes
through :mod:`provisioning.remote`, pinned to the host's key.

By role:

- :mod:`.services`: the writes (enrol, trust a key, start provision and health checks);
- :mod:`.operations`: the handlers of ``host.connect``, ``host.provision``, ``host.health``;
- :mod:`.provision`: the steps of provisioning; :mod:`.health`: the health probe;
- :mod:`.state`: the host's recorded state as operations change it;
- :mod:`.connection` and :mod:`.backup_access`: what other apps use to reach hosts (a pinned
  connection; an app host's restricted path to its backup host);
- :mod:`.views`, :mod:`.forms`, :mod:`.urls` (pages) and :mod:`.api`, :mod:`.api_urls` (API).

The names other apps and the tests use are imported here, so ``from provisioning.hosts import
host_connection`` keeps working. Importing the package registers the host operation kinds.
"""

from __future__ import annotations

from provisioning.compose import PROXY_NETWORK
from provisioning.hosts import fence, operations  # noqa: F401 - register the host operation kinds
from provisioning.hosts.backup_access import (
    BACKUP_FORCED_COMMAND,
    BACKUP_KEY,
    BACKUP_KNOWN_HOSTS,
    RRSYNC_BUSY,
    backup_access_line,
    host_backup_dir,
    host_backup_push_dir,
    host_backup_rsync_destination,
    host_backup_ssh_argv,
    host_backup_wal_dir,
)
from provisioning.hosts.connection import host_connection, host_peer_ssh_port
from provisioning.hosts.health import host_health_probe, host_health_probe_by_id
from provisioning.hosts.operations import host_abort
from provisioning.hosts.services import (
    PASSWORD_PARAM,
    host_enrol,
    host_health_check,
    host_provision,
    host_trust_key,
    hosts_due_for_health,
)

__all__ = [
    "BACKUP_FORCED_COMMAND",
    "BACKUP_KEY",
    "BACKUP_KNOWN_HOSTS",
    "PASSWORD_PARAM",
    "PROXY_NETWORK",
    "RRSYNC_BUSY",
    "backup_access_line",
    "host_abort",
    "host_backup_dir",
    "host_backup_push_dir",
    "host_backup_wal_dir",
    "host_backup_rsync_destination",
    "host_backup_ssh_argv",
    "host_connection",
    "host_enrol",
    "host_health_check",
    "host_health_probe",
    "host_health_probe_by_id",
    "host_peer_ssh_port",
    "host_provision",
    "host_trust_key",
    "hosts_due_for_health",
]
