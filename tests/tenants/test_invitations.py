"""Inviting people by email: the mail arrives through a real SMTP server, accepting makes a
member (signed in, or a new account), a link works once and not after it expired or was
withdrawn, another tenant's admin cannot withdraw it, and inviting tells nobody which
accounts exist."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from tenants.models import AuditEvent, Invitation, Membership

pytestmark = pytest.mark.django_db

LINK = re.compile(r"https://panel\.test(/invitations/[^/\s]+/)")


def _invite(client, tenant, email="dave@example.com", role="viewer"):
    return client.post(
        reverse("tenants:member_list"),
        {"invite-email": email, "invite-role": role, "invite-tenant": str(tenant.pk)},
    )


def _accept_path(smtp_server, count: int = 1) -> str:
    mail = smtp_server.wait_for(count)[count - 1]
    match = LINK.search(mail.text)
    assert match, mail.text
    return match.group(1)


def test_an_invitation_mail_arrives_and_accepting_it_signed_in_makes_a_member(
    browser, alice, acme, smtp_server
):
    dave = User.objects.create_user("dave", "dave@example.com", "pw-dave-123456")
    response = _invite(browser(alice), acme, role="admin")
    assert response.status_code == 302
    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["dave@example.com"] and "Acme" in mail.subject
    invitation = Invitation.objects.get()
    assert invitation.key_hash not in mail.text  # only the hash is stored, only the secret sent
    client = browser(dave)
    path = _accept_path(smtp_server)
    page = client.get(path)
    assert page.status_code == 200 and b"Acme" in page.content
    assert page["Cache-Control"] == "no-store"
    assert client.post(path).status_code == 302
    assert Membership.objects.get(user=dave, tenant=acme).role == "admin"
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert "invitation.create" in actions and "invitation.accept" in actions


def test_someone_new_chooses_a_username_and_password_on_the_accept_page(
    browser, alice, acme, smtp_server
):
    _invite(browser(alice), acme, email="erin@example.com")
    path = _accept_path(smtp_server)
    client = browser(None)
    response = client.post(
        path,
        {
            "username": "erin",
            "new_password1": "erins-long-passphrase-7",
            "new_password2": "erins-long-passphrase-7",
        },
    )
    assert response.status_code == 302 and response["Location"] == reverse("login")
    erin = User.objects.get(username="erin")
    assert erin.email == "erin@example.com" and erin.check_password("erins-long-passphrase-7")
    assert Membership.objects.get(user=erin, tenant=acme).role == "viewer"
    login = client.post(
        reverse("login"), {"username": "erin", "password": "erins-long-passphrase-7"}
    )
    assert login.status_code == 302 and login["Location"] == reverse("dashboard")


def test_a_used_link_is_refused_with_a_clear_message(browser, alice, bob, acme, smtp_server):
    dave = User.objects.create_user("dave", "dave@example.com", "pw-dave-123456")
    _invite(browser(alice), acme)
    path = _accept_path(smtp_server)
    browser(dave).post(path)
    response = browser(None).get(path)
    assert response.status_code == 410
    assert b"already been used" in response.content
    assert browser(bob).post(path).status_code == 410


def test_an_expired_link_is_refused_with_a_clear_message(browser, alice, acme, smtp_server):
    _invite(browser(alice), acme)
    path = _accept_path(smtp_server)
    Invitation.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    response = browser(None).get(path)
    assert response.status_code == 410 and b"has expired" in response.content


def test_a_withdrawn_link_is_refused_and_leaves_the_pending_list(browser, alice, acme, smtp_server):
    client = browser(alice)
    _invite(client, acme)
    path = _accept_path(smtp_server)
    invitation = Invitation.objects.get()
    assert b"dave@example.com" in client.get(reverse("tenants:member_list")).content
    revoke = client.post(reverse("tenants:invitation_revoke", args=[invitation.pk]))
    assert revoke.status_code == 302
    assert (
        b'data-email="dave@example.com"' not in client.get(reverse("tenants:member_list")).content
    )
    response = browser(None).get(path)
    assert response.status_code == 410 and b"withdrawn" in response.content
    assert AuditEvent.objects.filter(action="invitation.revoke").exists()


def test_an_unknown_link_is_not_found(browser):
    response = browser(None).get(reverse("tenants:invitation_accept", args=["not-a-real-secret"]))
    assert response.status_code == 404 and b"not valid" in response.content


def test_another_tenants_admin_cannot_withdraw_an_invitation(
    browser, api, alice, charlie, acme, smtp_server
):
    _invite(browser(alice), acme)
    invitation = Invitation.objects.get()
    assert (
        browser(charlie)
        .post(reverse("tenants:invitation_revoke", args=[invitation.pk]))
        .status_code
        == 404
    )
    assert api(charlie).delete(f"/api/invitations/{invitation.pk}/").status_code == 404
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.PENDING


def test_a_viewer_cannot_invite_or_withdraw(browser, api, alice, bob, acme, smtp_server):
    assert _invite(browser(bob), acme).status_code == 403
    _invite(browser(alice), acme)
    invitation = Invitation.objects.get()
    assert (
        browser(bob).post(reverse("tenants:invitation_revoke", args=[invitation.pk])).status_code
        == 403
    )
    assert api(bob).get("/api/invitations/").json()["results"] == []
    assert len(smtp_server.messages) == 1


def test_inviting_answers_the_same_whether_or_not_an_account_exists(
    browser, alice, acme, smtp_server
):
    User.objects.create_user("dave", "dave@example.com", "pw-dave-123456")
    client = browser(alice)
    known = client.post(
        reverse("tenants:member_list"),
        {
            "invite-email": "dave@example.com",
            "invite-tenant": str(acme.pk),
            "invite-role": "viewer",
        },
        follow=True,
    )
    unknown = client.post(
        reverse("tenants:member_list"),
        {"invite-email": "zed@example.com", "invite-tenant": str(acme.pk), "invite-role": "viewer"},
        follow=True,
    )

    def words(response) -> str:
        text = response.content.decode()
        return text.replace("dave@example.com", "X").replace("zed@example.com", "X")

    assert known.status_code == unknown.status_code == 200
    assert "Invitation sent to X" in words(known)
    assert [str(m) for m in known.context["messages"]] == [
        m.replace("zed@", "dave@") for m in map(str, unknown.context["messages"])
    ]
    smtp_server.wait_for(2)


def test_a_tenant_admin_can_no_longer_probe_usernames_through_the_api(api, alice, acme, sam):
    User.objects.create_user("dave", "dave@example.com", "pw-dave-123456")
    client = api(alice)
    answers = {
        name: client.post(
            "/api/memberships/", {"tenant": str(acme.pk), "user": name}, format="json"
        )
        for name in ("dave", "nobody-at-all", "sam")
    }
    assert {(r.status_code, r.content) for r in answers.values()} == {
        (answers["dave"].status_code, answers["dave"].content)
    }
    assert answers["dave"].status_code == 403
    assert b"/api/invitations/" in answers["dave"].content
    assert not Membership.objects.filter(user__username="dave").exists()


def test_the_api_invites_lists_and_withdraws(api, alice, acme, sam, smtp_server):
    client = api(alice)
    response = client.post(
        "/api/invitations/",
        {"tenant": str(acme.pk), "email": "dave@example.com", "role": "admin"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending" and "key_hash" not in body
    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["dave@example.com"]
    listed = client.get("/api/invitations/").json()["results"]
    assert [i["email"] for i in listed] == ["dave@example.com"]
    assert api(sam).delete(f"/api/invitations/{body['id']}/").status_code == 403
    assert client.delete(f"/api/invitations/{body['id']}/").status_code == 204
    assert client.get(f"/api/invitations/{body['id']}/").json()["status"] == "revoked"


def test_staff_cannot_join_through_a_customers_invitation(browser, alice, acme, sam, smtp_server):
    _invite(browser(alice), acme, email="sam@panel.test")
    path = _accept_path(smtp_server)
    response = browser(sam).post(path)
    assert response.status_code == 200 and b"Staff accounts cannot join" in response.content
    assert not Membership.objects.filter(user=sam).exists()
