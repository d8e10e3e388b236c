"""The Django admin for staff: every model is there, and no secret is ever rendered."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from provisioning.models import Host, Operation
from tenants.models import ApiToken, AuditEvent
from tests.support.factories import make_operation, make_step

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(browser):
    user = User.objects.create_superuser("root", "root@example.com", "x")
    return browser(user)


@pytest.fixture
def everything(acme, alice, acme_jira, acme_license, app_host, make_token):
    Host.objects.filter(pk=app_host.pk).update(
        ssh_private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-host-key\n"
    )
    make_token(alice, tenant=acme)
    op = make_operation(acme_jira, status="failed", error="went wrong")
    make_step(op, "did a thing")
    AuditEvent.objects.create(actor=alice, actor_label="alice", action="instance.create")
    return {"token": ApiToken.objects.get(), "operation": op}


SECRETS = ("AAAB-secret-license-key", "pw-acme-jira-secret", "secret-host-key")


def test_every_model_has_an_admin_list_and_change_page_without_secrets(
    admin_client_, everything, acme_jira, acme_license, app_host, acme
):
    token = everything["token"]
    pages = [reverse("admin:index")]
    for model, obj in (
        ("tenants_tenant", acme),
        ("tenants_membership", acme.memberships.first()),
        ("tenants_apitoken", token),
        ("tenants_auditevent", AuditEvent.objects.first()),
        ("provisioning_host", app_host),
        ("provisioning_atlassianinstance", acme_jira),
        ("provisioning_license", acme_license),
        ("provisioning_operation", everything["operation"]),
        ("provisioning_operationstep", everything["operation"].steps.first()),
    ):
        pages.append(reverse(f"admin:{model}_changelist"))
        pages.append(reverse(f"admin:{model}_change", args=[obj.pk]))
    for url in pages:
        response = admin_client_.get(url)
        assert response.status_code == 200, url
        content = response.content.decode()
        for secret in SECRETS + (token.key_hash,):
            assert secret not in content, (url, secret)


def test_the_audit_log_and_operations_are_read_only(admin_client_, everything):
    event = AuditEvent.objects.first()
    assert admin_client_.get(reverse("admin:tenants_auditevent_add")).status_code == 403
    change = admin_client_.get(reverse("admin:tenants_auditevent_change", args=[event.pk]))
    assert b'name="_save"' not in change.content
    delete = reverse("admin:tenants_auditevent_delete", args=[event.pk])
    assert admin_client_.post(delete, {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=event.pk).exists()
    op = everything["operation"]
    assert (
        admin_client_.post(
            reverse("admin:provisioning_operation_delete", args=[op.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert Operation.objects.filter(pk=op.pk).exists()


def test_changes_made_in_the_admin_are_audited(admin_client_, acme):
    url = reverse("admin:tenants_tenant_change", args=[acme.pk])
    response = admin_client_.post(
        url,
        {
            "name": "Acme Corp",
            "slug": "acme",
            "contact_email": "ops@acme.example",
            "default_tier": "tier1",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    event = AuditEvent.objects.get(action="admin.tenant.change")
    assert event.source == "admin" and event.actor_label == "root"
    assert event.changes == {"fields": ["default_tier", "name"]}


def test_customers_cannot_open_the_admin(browser, alice):
    response = browser(alice).get(reverse("admin:index"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
