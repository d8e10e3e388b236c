"""Amazon Route53 through boto3 (the only boto3 DNS user in the panel).

All changes for a zone go into one ``ChangeResourceRecordSets`` request (one ChangeBatch),
then ``GetChange`` is polled with a growing interval until ``INSYNC`` or a bounded wait runs
out. boto3's adaptive retry mode backs off on throttling (Route53 allows five requests per
second per account).

A ``create`` is a Route53 ``CREATE``, which fails the whole batch if the record set exists;
with ``name_unused`` the name is first checked for record sets of any type, since CREATE only
guards its own type. A ``delete`` with values removes only those values (a DELETE of the
exact set, or an UPSERT of what remains), so records changed outside the panel are kept.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from certificates.dns.base import (
    ChangeResult,
    DnsConflict,
    DnsError,
    RecordChange,
    ZoneRef,
    fqdn,
)


def _quote_txt(value: str) -> str:
    # Route53 wants each TXT string quoted; long values are split into 255-byte strings.
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def _unquote_txt(value: str) -> str:
    parts = []
    for chunk in value.split('" "'):
        parts.append(chunk.strip('"').replace('\\"', '"').replace("\\\\", "\\"))
    return "".join(parts)


class Route53Provider:
    """A Route53 account (``config``: region, optional endpoint_url; ``credentials``:
    access_key_id, secret_access_key)."""

    def __init__(
        self, config: dict, credentials: dict, *, log: Any = None, timeout: float | None = None
    ) -> None:
        self.log = log
        self.insync_timeout = settings.PANEL_DNS_INSYNC_TIMEOUT
        self.poll_first = settings.PANEL_DNS_INSYNC_POLL
        # With ``timeout`` (a check a person waits for) one retry and short timeouts, rather
        # than the changes' patient retries.
        client_config = (
            Config(
                retries={"mode": "standard", "max_attempts": 2},
                connect_timeout=timeout,
                read_timeout=timeout,
            )
            if timeout
            else Config(
                retries={"mode": "adaptive", "max_attempts": 8},
                connect_timeout=10,
                read_timeout=30,
            )
        )
        try:
            self.client = boto3.client(
                "route53",
                region_name=config.get("region") or "us-east-1",
                endpoint_url=config.get("endpoint_url") or None,
                aws_access_key_id=credentials.get("access_key_id") or None,
                aws_secret_access_key=credentials.get("secret_access_key") or None,
                config=client_config,
            )
        except (BotoCoreError, ValueError) as exc:
            # botocore refuses a malformed endpoint_url or region when the client is made.
            raise DnsError(f"The Route53 account's settings are not usable: {exc}") from exc

    def _say(self, message: str, **kw: Any) -> None:
        if self.log is not None:
            self.log(message, **kw)

    def _call(self, op: str, **kwargs: Any) -> dict:
        started = time.monotonic()
        try:
            response = getattr(self.client, op)(**kwargs)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            if err.get("Code") == "InvalidChangeBatch" and "already exists" in str(
                err.get("Message", "")
            ):
                raise DnsConflict(
                    "Route53 refused to create a record that already exists (it was not made "
                    f"by the panel, so it is left as it is): {err.get('Message', '')}"
                ) from exc
            raise DnsError(
                f"Route53 refused {op}: {err.get('Code', '?')}: {err.get('Message', exc)}"
            ) from exc
        except BotoCoreError as exc:
            raise DnsError(f"Route53 could not be reached for {op}: {exc}") from exc
        self._say(
            f"Route53 {op}",
            command=f"route53 {op}",
            exit_code=response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        return response

    def _zone_id(self, zone: ZoneRef) -> str:
        if zone.provider_zone_id:
            return zone.provider_zone_id.split("/")[-1]
        found = self._call("list_hosted_zones_by_name", DNSName=fqdn(zone.name), MaxItems="1")
        for hz in found.get("HostedZones", []):
            if hz["Name"] == fqdn(zone.name):
                return hz["Id"].split("/")[-1]
        raise DnsError(f"Route53 has no hosted zone {zone.name} for these credentials.")

    def _at_name(self, zone_id: str, name: str) -> list[dict]:
        """Every record set at ``name`` (Route53 lists by name, then type)."""
        found = self._call(
            "list_resource_record_sets",
            HostedZoneId=zone_id,
            StartRecordName=fqdn(name),
            MaxItems="20",
        )
        return [r for r in found.get("ResourceRecordSets", []) if r["Name"] == fqdn(name)]

    def _current(self, zone_id: str, name: str, rtype: str) -> dict | None:
        found = self._call(
            "list_resource_record_sets",
            HostedZoneId=zone_id,
            StartRecordName=fqdn(name),
            StartRecordType=rtype,
            MaxItems="1",
        )
        for rrset in found.get("ResourceRecordSets", []):
            if rrset["Name"] == fqdn(name) and rrset["Type"] == rtype:
                return rrset
        return None

    @staticmethod
    def _rrset(ch: RecordChange, values: Sequence[str]) -> dict:
        return {
            "Name": fqdn(ch.name),
            "Type": ch.rtype,
            "TTL": ch.ttl,
            "ResourceRecords": [
                {"Value": _quote_txt(v) if ch.rtype == "TXT" else v} for v in values
            ],
        }

    def apply(self, zone: ZoneRef, changes: Sequence[RecordChange]) -> ChangeResult:
        zone_id = self._zone_id(zone)
        batch = []
        skipped = []
        for ch in changes:
            if ch.action == "create":
                # CREATE itself fails on an existing set of its type (atomically, at Route53);
                # this check also covers other types at the name and gives a clearer message.
                taken = [
                    r["Type"]
                    for r in self._at_name(zone_id, ch.name)
                    if ch.name_unused or r["Type"] == ch.rtype
                ]
                if taken:
                    raise DnsConflict(
                        f"{ch.name} already has {', '.join(sorted(taken))} record(s) in "
                        f"{zone.name} that the panel did not make; they are left as they are."
                    )
                batch.append({"Action": "CREATE", "ResourceRecordSet": self._rrset(ch, ch.values)})
            elif ch.action == "upsert":
                batch.append({"Action": "UPSERT", "ResourceRecordSet": self._rrset(ch, ch.values)})
            else:
                # A DELETE must name the record set exactly as it is; absent ones are skipped.
                current = self._current(zone_id, ch.name, ch.rtype)
                if current is None:
                    continue
                if not ch.values:
                    batch.append({"Action": "DELETE", "ResourceRecordSet": current})
                    continue
                have = self._values(current, ch.rtype)
                keep = [v for v in have if v not in ch.values]
                if len(keep) == len(have):
                    skipped.append(
                        f"{ch.name} {ch.rtype} holds {', '.join(have)}, not the panel's "
                        f"{', '.join(ch.values)}; left in place"
                    )
                elif keep:
                    batch.append(
                        {
                            "Action": "UPSERT",
                            "ResourceRecordSet": {
                                **self._rrset(ch, keep),
                                "TTL": current.get("TTL", ch.ttl),
                            },
                        }
                    )
                else:
                    batch.append({"Action": "DELETE", "ResourceRecordSet": current})
        result = ChangeResult(applied=list(changes), skipped=skipped)
        if not batch:
            return result
        response = self._call(
            "change_resource_record_sets",
            HostedZoneId=zone_id,
            ChangeBatch={"Comment": f"panel: {len(batch)} change(s)", "Changes": batch},
        )
        info = response["ChangeInfo"]
        result.change_id = info["Id"].split("/")[-1]
        result.in_sync = info["Status"] == "INSYNC"
        self._say(f"Route53 accepted {len(batch)} change(s) in {zone.name} as {result.change_id}")
        deadline = time.monotonic() + self.insync_timeout
        interval = self.poll_first
        while not result.in_sync:
            if time.monotonic() + interval > deadline:
                raise DnsError(
                    f"Route53 change {result.change_id} in {zone.name} was not INSYNC within "
                    f"{self.insync_timeout:g} s; it may still complete."
                )
            time.sleep(interval)
            interval = min(interval * 2, 30)  # gentle on the API rate
            status = self._call("get_change", Id=result.change_id)["ChangeInfo"]["Status"]
            result.in_sync = status == "INSYNC"
        self._say(f"Route53 change {result.change_id} is INSYNC")
        result.api_calls = 1
        return result

    def lookup(self, zone: ZoneRef, name: str, rtype: str) -> list[str]:
        current = self._current(self._zone_id(zone), name, rtype)
        if current is None:
            return []
        return self._values(current, rtype)

    @staticmethod
    def _values(rrset: dict, rtype: str) -> list[str]:
        values = [r["Value"] for r in rrset.get("ResourceRecords", [])]
        if rtype == "TXT":
            return [_unquote_txt(v) for v in values]
        return [v.rstrip(".") for v in values]

    def name_types(self, zone: ZoneRef, name: str) -> list[str]:
        return sorted({r["Type"] for r in self._at_name(self._zone_id(zone), name)})

    def account_check(self) -> str:
        count = self._call("get_hosted_zone_count").get("HostedZoneCount", 0)
        return f"Route53 accepts these credentials ({count} hosted zone{'s' if count != 1 else ''})"

    def zone_check(self, zone: ZoneRef) -> str:
        zone_id = self._zone_id(zone)
        hz = self._call("get_hosted_zone", Id=zone_id)["HostedZone"]
        return f"Route53 hosted zone {hz['Name']} ({zone_id})"
