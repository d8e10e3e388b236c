"""The staff search's one read: what matches a query, in a fixed number of queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Case, Exists, IntegerField, OuterRef, Prefetch, Q, Value, When

from panel.access import Access
from provisioning.models import AtlassianInstance, Host, License
from provisioning.selectors import host_list, instance_list
from tenants.selectors import tenant_list_with_counts

SEARCH_LIMIT = 25  # rows per kind; more means "refine the query"
SEARCH_MIN_LENGTH = 2  # one character would match nearly everything


@dataclass(frozen=True)
class InstanceHit:
    """An instance that matched, and on what: ``matched`` names the fields ("name",
    "hostname", "tenant", "SEN", "host"), ``sens`` the matching SENs of its licenses."""

    instance: AtlassianInstance
    matched: tuple[str, ...]
    sens: tuple[str, ...] = ()


@dataclass(frozen=True)
class StaffSearch:
    """What a query found: instances, tenants and (platform admins only) hosts, at most
    :data:`SEARCH_LIMIT` of each; ``truncated`` when some kind had more."""

    q: str
    instances: list[InstanceHit] = field(default_factory=list)
    tenants: list[Any] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)
    truncated: bool = False
    too_short: bool = False

    @property
    def count(self) -> int:
        return len(self.instances) + len(self.tenants) + len(self.hosts)


def _contains(value: str | None, q: str) -> bool:
    return q.casefold() in (value or "").casefold()


def _instance_hit(instance: AtlassianInstance, q: str) -> InstanceHit:
    tenant = instance.tenant
    sens = tuple(lic.sen for lic in getattr(instance, "matching_licenses", []))
    checks = (
        ("name", _contains(instance.name, q)),
        ("hostname", _contains(instance.hostname, q)),
        ("tenant", _contains(tenant.name, q) or _contains(tenant.slug, q)),
        ("SEN", bool(sens)),
        ("host", instance.host is not None and _contains(instance.host.name, q)),
    )
    return InstanceHit(instance=instance, matched=tuple(k for k, hit in checks if hit), sens=sens)


def staff_search(access: Access, q: str, *, limit: int = SEARCH_LIMIT) -> StaffSearch:
    """Instances (not deleted) whose name, hostname, tenant name or slug, license SEN or host
    name contains ``q``; tenants whose name or slug does; hosts whose name does. Exact
    matches of a name, hostname or SEN come first.

    Read through the callers' ``for_user`` scoping like every selector (the pages and the
    API let only staff in); hosts are platform admins' only, so support finds instances by
    their host's name but gets no host rows. At most four queries, whatever the matches.
    """
    q = q.strip()
    if len(q) < SEARCH_MIN_LENGTH:
        return StaffSearch(q=q, too_short=bool(q))
    licenses = License.objects.for_user(access).filter(sen__icontains=q)
    instances = (
        instance_list(access)
        .filter(
            Q(name__icontains=q)
            | Q(hostname__icontains=q)
            | Q(tenant__name__icontains=q)
            | Q(tenant__slug__icontains=q)
            | Q(host__name__icontains=q)
            # A subquery, not a join: an instance with two matching licenses is one row.
            | Q(pk__in=licenses.values("instance_id"))
        )
        .annotate(
            exact=Case(
                When(Q(name__iexact=q) | Q(hostname__iexact=q), then=Value(0)),
                When(
                    Exists(licenses.filter(instance=OuterRef("pk"), sen__iexact=q)), then=Value(0)
                ),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        .order_by("exact", "name")
        .prefetch_related(
            Prefetch(
                "licenses",
                queryset=licenses.only("id", "instance_id", "sen").order_by("sen"),
                to_attr="matching_licenses",
            )
        )
    )
    tenants = tenant_list_with_counts(access).filter(Q(name__icontains=q) | Q(slug__icontains=q))
    hosts = host_list(access).filter(name__icontains=q)
    found_instances = list(instances[: limit + 1])
    found_tenants = list(tenants[: limit + 1])
    found_hosts = list(hosts[: limit + 1])
    return StaffSearch(
        q=q,
        instances=[_instance_hit(i, q) for i in found_instances[:limit]],
        tenants=found_tenants[:limit],
        hosts=found_hosts[:limit],
        truncated=any(len(rows) > limit for rows in (found_instances, found_tenants, found_hosts)),
    )
