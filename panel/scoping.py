"""Querysets that know which tenant owns each row: the only tenant filter in the code base."""

from __future__ import annotations

from typing import Any

from django.db import models

from panel.access import Access, access_for_user


class ScopedQuerySet(models.QuerySet):
    """A queryset narrowed by :meth:`for_user` to what a caller may see.

    Subclasses set ``tenant_path`` (the lookup from the model to its Tenant's id, e.g.
    ``"tenant"`` or ``"instance__tenant"``), or ``staff_only = True`` for platform-owned rows
    (hosts) that only platform admins see, or ``tenant_path = "id"`` on Tenant itself.
    """

    tenant_path: str = "tenant"
    staff_only: bool = False

    def for_user(self, who: Access | Any) -> ScopedQuerySet:
        """Rows ``who`` may see: ``who`` is an :class:`Access`, or a user (whose access is
        resolved through ``settings.PANEL_ACCESS_RESOLVER``)."""
        access = who if isinstance(who, Access) else access_for_user(who)
        if not access.is_authenticated:
            return self.none()
        if self.staff_only:
            return self if access.is_platform_admin else self.none()
        if access.tenant_ids is None:
            return self
        return self.filter(**{f"{self.tenant_path}__in": access.tenant_ids})


def scoped_manager(tenant_path: str = "tenant", staff_only: bool = False) -> models.Manager:
    """A manager whose querysets are :class:`ScopedQuerySet` with the given tenant path."""
    qs_class = type(
        f"ScopedQuerySet_{tenant_path.replace('__', '_')}",
        (ScopedQuerySet,),
        {"tenant_path": tenant_path, "staff_only": staff_only},
    )
    return models.Manager.from_queryset(qs_class)()


def tenant_id_of(obj: models.Model) -> Any:
    """The id of the tenant that owns ``obj`` (None for platform-owned rows), found by walking
    its manager's ``tenant_path``, so the panel needs no import of the Tenant model."""
    queryset = type(obj)._default_manager.all()
    path = queryset.tenant_path if isinstance(queryset, ScopedQuerySet) else "tenant"
    *hops, last = path.split("__")
    for hop in hops:
        obj = getattr(obj, hop)
    # "id" is the Tenant itself; otherwise read the foreign key's column, not the related row.
    return obj.pk if last == "id" else getattr(obj, f"{last}_id")
