"""The tenant a member of several chooses in the header: it narrows their access and nobody
else's (staff, API tokens), and only to a tenant they belong to."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from panel.access import ACTIVE_TENANT_SESSION_KEY, access_for_user, access_narrowed_to_tenant
from tenants.models import ApiToken, Membership, Tenant
from tenants.selectors import tenants_switchable
from tenants.services import tenant_switch

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_in_globex(alice, globex):
    """Alice, admin of Acme, is also a viewer in Globex."""
    Membership.objects.create(user=alice, tenant=globex, role=Membership.Role.VIEWER)
    return alice


def test_access_lists_the_members_tenants_by_name_at_no_extra_query(
    alice_in_globex, acme, globex, django_assert_num_queries
):
    with django_assert_num_queries(2):  # groups, memberships (with the tenants' names)
        access = access_for_user(alice_in_globex)
    assert access.member_tenants == ((acme.pk, "Acme"), (globex.pk, "Globex"))
    assert access.active_tenant_id is None and access.active_tenant_name == ""


def test_narrowing_keeps_only_the_chosen_tenant_and_the_admin_role_there(
    alice_in_globex, acme, globex
):
    access = access_for_user(alice_in_globex)
    on_globex = access_narrowed_to_tenant(access, globex.pk)
    assert on_globex.tenant_ids == frozenset({globex.pk})
    assert on_globex.admin_tenant_ids == frozenset()  # a viewer there
    assert on_globex.active_tenant_name == "Globex"
    on_acme = access_narrowed_to_tenant(access, acme.pk)
    assert on_acme.admin_tenant_ids == frozenset({acme.pk})
    assert on_acme.member_tenants == access.member_tenants  # the switcher still lists both


def test_narrowing_to_a_tenant_the_user_does_not_belong_to_changes_nothing(alice_in_globex, db):
    other = Tenant.objects.create(name="Initech", slug="initech", contact_email="i@x.example")
    access = access_for_user(alice_in_globex)
    assert access_narrowed_to_tenant(access, other.pk) is access


def test_staff_and_api_tokens_are_never_narrowed(sam, alice_in_globex, acme, globex):
    Membership.objects.create(user=sam, tenant=acme)
    staff = access_for_user(sam)
    assert access_narrowed_to_tenant(staff, acme.pk) is staff
    assert tenants_switchable(staff) == ()
    token = ApiToken.objects.create(
        user=alice_in_globex, name="t", prefix="abcd1234", key_hash="x" * 64
    )
    with_token = access_for_user(alice_in_globex, token)
    assert access_narrowed_to_tenant(with_token, globex.pk) is with_token
    assert tenants_switchable(with_token) == ()


def test_only_a_member_of_several_tenants_has_a_switcher(alice, bob, alice_in_globex):
    assert tenants_switchable(access_for_user(bob)) == ()
    assert len(tenants_switchable(access_for_user(alice_in_globex))) == 2


def test_the_switch_writes_the_session_and_refuses_a_foreign_tenant(alice_in_globex, globex, db):
    access = access_for_user(alice_in_globex)
    session = {}  # a dict stands in for the request.session mapping
    tenant_switch(actor=access, session=session, tenant_id=globex.pk)
    assert session == {ACTIVE_TENANT_SESSION_KEY: str(globex.pk)}
    tenant_switch(actor=access, session=session, tenant_id=None)
    assert session == {}
    other = Tenant.objects.create(name="Initech", slug="initech", contact_email="i@x.example")
    with pytest.raises(PermissionDenied):
        tenant_switch(actor=access, session=session, tenant_id=other.pk)
    assert session == {}
