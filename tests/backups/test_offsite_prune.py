"""When retention ages points out, their off-site copies go too; a bucket that cannot be pruned
tells staff (once, until a prune succeeds) instead of leaving the copies there silently, and a
bug in the prune is not mistaken for a storage error."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from backups import offsite
from notifications.models import NotificationEvent

pytestmark = pytest.mark.django_db


def _denied(**_: object) -> None:
    raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "Delete")


def _prune_notices(instance) -> list[NotificationEvent]:
    return list(
        NotificationEvent.objects.filter(
            event=offsite.PRUNE_FAILED_EVENT, dedupe_key=f"offsite-prune:{instance.pk}"
        )
    )


def test_a_prune_the_bucket_refuses_tells_staff_once(acme_jira, monkeypatch, settings):
    settings.PANEL_BACKUP_S3_BUCKET = "panel-offsite"
    monkeypatch.setattr(offsite, "offsite_prune", lambda ctx, **kw: _denied(**kw))
    offsite.offsite_follow_retention(None, instance=acme_jira, keep=["20250301T020000Z"])
    offsite.offsite_follow_retention(None, instance=acme_jira, keep=["20250301T020000Z"])
    notices = _prune_notices(acme_jira)
    assert len(notices) == 1
    assert notices[0].tenant is None  # staff, not the tenant: they cannot fix the bucket
    assert acme_jira.name in notices[0].subject and "Access Denied" in notices[0].body
    assert notices[0].resolved_at is None


def test_an_unreachable_endpoint_is_told_and_a_later_prune_resolves_it(acme_jira, monkeypatch):
    def unreachable(ctx, **kw):
        raise EndpointConnectionError(endpoint_url="http://s3.invalid")

    monkeypatch.setattr(offsite, "offsite_prune", unreachable)
    offsite.offsite_follow_retention(None, instance=acme_jira, keep=[])
    assert [n.resolved_at for n in _prune_notices(acme_jira)] == [None]
    monkeypatch.setattr(offsite, "offsite_prune", lambda ctx, **kw: [])
    offsite.offsite_follow_retention(None, instance=acme_jira, keep=[])
    assert all(n.resolved_at is not None for n in _prune_notices(acme_jira))


def test_a_bug_in_the_prune_reaches_the_runner(acme_jira, monkeypatch):
    def broken(ctx, **kw):
        raise KeyError("Contents")

    monkeypatch.setattr(offsite, "offsite_prune", broken)
    with pytest.raises(KeyError):
        offsite.offsite_follow_retention(None, instance=acme_jira, keep=[])
    assert _prune_notices(acme_jira) == []
