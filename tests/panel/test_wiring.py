"""The panel reaches the tenants app only through the names its settings give: who may see
what (``PANEL_ACCESS_RESOLVER``) and who writes the audit trail (``PANEL_AUDIT_RECORDER``)."""

from __future__ import annotations

import contextvars
from typing import Any

import pytest
from django.test import RequestFactory

from panel.access import Access, access_for, access_for_user
from panel.audit import audit_record, audit_source
from panel.scoping import tenant_id_of
from provisioning.models import AtlassianInstance, Operation
from tenants.models import AuditEvent, Tenant

RECORDED: list[dict[str, Any]] = []


def only_globex_resolver(user: Any, token: Any = None) -> Access:
    """A stand-in resolver: everyone sees exactly the tenant slugged ``globex``."""
    return Access(
        user=user,
        token=token,
        tenant_ids=frozenset(Tenant.objects.filter(slug="globex").values_list("id", flat=True)),
    )


def recorder(**event: Any) -> None:
    RECORDED.append(event)


def test_access_comes_from_the_resolver_the_settings_name(settings, alice, acme_jira, globex_wiki):
    settings.PANEL_ACCESS_RESOLVER = "tests.panel.test_wiring.only_globex_resolver"

    assert list(AtlassianInstance.objects.for_user(alice)) == [globex_wiki]


def test_the_tenants_resolver_gives_alice_her_tenant(alice, acme, globex):
    access = access_for_user(alice)

    assert access.tenant_ids == frozenset({acme.id})
    assert access.administers_tenant(acme.id)
    assert not access.sees_tenant(globex.id)


def test_a_request_is_resolved_once(settings, alice, acme):
    request = RequestFactory().get("/")
    request.user = alice
    first = access_for(request)
    settings.PANEL_ACCESS_RESOLVER = "tests.panel.test_wiring.only_globex_resolver"

    assert access_for(request) is first


def test_a_misspelt_resolver_fails_loudly_instead_of_hiding_everything(settings, alice):
    settings.PANEL_ACCESS_RESOLVER = "tenants.access.no_such_resolver"

    with pytest.raises(ImportError):
        access_for_user(alice)


def test_audit_record_hands_sanitized_changes_and_its_source_to_the_recorder(
    settings, alice, acme_jira
):
    settings.PANEL_AUDIT_RECORDER = "tests.panel.test_wiring.recorder"
    RECORDED.clear()
    actor = access_for_user(alice)

    def in_a_task() -> None:
        audit_source("task")
        audit_record(
            actor=actor, action="instance.renamed", target=acme_jira, changes={"db_password": "x"}
        )

    # A context of its own, so the "task" source does not leak into later tests.
    contextvars.copy_context().run(in_a_task)

    assert AuditEvent.objects.count() == 0
    [event] = RECORDED
    assert event["actor"] is actor and event["target"] == acme_jira
    assert event["changes"]["db_password"] != "x"
    assert event["context"] == {"source": "task", "ip": None}


def test_the_tenants_recorder_stores_who_did_what_to_which_tenant(alice, acme, acme_jira):
    audit_record(actor=access_for_user(alice), action="instance.renamed", target=acme_jira)

    event = AuditEvent.objects.get()
    assert (event.actor, event.actor_label, event.tenant, event.action) == (
        alice,
        "alice",
        acme,
        "instance.renamed",
    )
    assert event.target_label == str(acme_jira)


def test_tenant_id_of_follows_each_models_tenant_path(acme, acme_jira, acme_license):
    host_work = Operation.objects.create(kind="diagnostic", tenant=None)

    assert tenant_id_of(acme) == acme.id
    assert tenant_id_of(acme_jira) == acme.id
    assert tenant_id_of(acme_license) == acme.id
    assert tenant_id_of(host_work) is None
