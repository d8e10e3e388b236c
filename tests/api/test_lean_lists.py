"""The instance and backup lists read only the columns their answers show (no credentials
decrypted per row), and answer exactly what the serializers say of the whole rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework import serializers
from rest_framework.test import APIRequestFactory

from backups.api.serializers import BackupSerializer
from backups.models import Backup
from panel.api.rows import ValuesShape
from provisioning.api.serializers import InstanceSerializer
from provisioning.models import AtlassianInstance, License
from tests.backups.factories import backup_host, make_point, with_backup_host
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db

SECRET_COLUMNS = ('"db_password"', '"extra_env"', '"ssh_private_key"', '"key"')


@pytest.fixture
def fleet(acme, app_host):
    with_backup_host(app_host, backup_host())
    for i in range(3):
        inst = make_instance(acme, f"acme-{i}", host=app_host, extra_env={"AGENT": "x"})
        License.objects.create(instance=inst, product="jira-software", key=f"AAAB-{i}-secret")
        make_point(inst)
    # Each computed field and the masking in another state: degraded, a published port, a
    # copy, no host, a failure naming the host's address (masked for customers), licenses
    # without dates and with both.
    make_instance(acme, "acme-degraded", host=app_host, health="degraded")
    make_instance(
        acme, "acme-git", host=app_host, product="bitbucket", version="8.19.0", host_port=7999
    )
    source = AtlassianInstance.objects.get(name="acme-0")
    make_instance(acme, "acme-copy", copy_of=source, copy_of_name="acme-0", context_path="/j")
    failed = make_instance(
        acme,
        "acme-failed",
        status="failed",
        status_reason=f"ssh root@{app_host.address}:{app_host.ssh_port} refused",
    )
    today = timezone.now().date()
    License.objects.create(instance=failed, product="jira-software", key="AAAB-nodates")
    License.objects.create(
        instance=failed,
        product="jira-software",
        key="AAAB-dates",
        expiry_date=today + timedelta(days=40),
        maintenance_expiry_date=today + timedelta(days=9),
    )
    return AtlassianInstance.objects.filter(tenant=acme)


def _context(user):
    request = APIRequestFactory().get("/api/")
    request.user = user
    return {"request": request}


def _selects(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT")]


@pytest.mark.parametrize("who", ["alice", "sam"])
def test_the_instance_list_answers_what_the_serializer_says_of_the_whole_row(
    api, request, fleet, who
):
    user = request.getfixturevalue(who)
    client = api(user)
    with CaptureQueriesContext(connection) as captured:
        listed = client.get("/api/instances/").json()["results"]
    selects = _selects(captured)  # read now: the next request resets Django's query log
    whole = AtlassianInstance.objects.select_related("tenant", "host").prefetch_related("licenses")
    context = _context(user)
    for row in listed:
        assert row == InstanceSerializer(whole.get(pk=row["id"]), context=context).data
        assert client.get(f"/api/instances/{row['id']}/").json() == row
    assert len(listed) == 7 and listed[0]["licenses"][0]["id"]
    shown = {row["name"]: row for row in listed}
    assert shown["acme-degraded"]["display_status"] == "degraded"
    assert shown["acme-git"]["published_url"] == "ssh://acme-git.example.com:7999/"
    assert shown["acme-copy"]["copy_of"] == str(fleet.get(name="acme-0").pk)
    assert shown["acme-failed"]["host_name"] is None
    assert [lic["days_left"] for lic in shown["acme-failed"]["licenses"]] == [9, None]
    masked = "127.0.0.11" not in shown["acme-failed"]["status_reason"]
    assert masked is (who == "alice")
    instances = [s for s in selects if 'FROM "provisioning_atlassianinstance"' in s]
    licenses = [s for s in selects if 'FROM "provisioning_license"' in s]
    assert len(instances) == 2 and len(licenses) == 1  # the count, the page; its licenses
    assert not any(c in sql for sql in instances + licenses for c in SECRET_COLUMNS)


@pytest.mark.parametrize("who", ["alice", "sam"])
def test_the_backup_list_answers_what_the_serializer_says_of_the_whole_row(
    api, request, fleet, who
):
    user = request.getfixturevalue(who)
    client = api(user)
    with CaptureQueriesContext(connection) as captured:
        listed = client.get("/api/backups/").json()
    page = _selects(captured)[-1]  # read now: the next request resets Django's query log
    assert listed["count"] == 3 == Backup.objects.count()
    for row in listed["results"]:
        assert row == BackupSerializer(Backup.objects.get(pk=row["id"])).data
        assert client.get(f"/api/backups/{row['id']}/").json() == row
    assert 'FROM "backups_backup"' in page and "tenants_tenant" not in page
    assert not any(c in page for c in SECRET_COLUMNS)


def test_a_field_that_is_no_column_must_be_given(db):
    class Odd(serializers.ModelSerializer):
        url = serializers.CharField(source="base_url")

        class Meta:
            model = AtlassianInstance
            fields = ["name", "url"]

    with pytest.raises(ImproperlyConfigured, match="Odd.url is not a column"):
        ValuesShape(Odd())
    shape = ValuesShape(Odd(), computed={"url": lambda row: row["hostname"]}, needs=["hostname"])
    assert shape.columns == ["hostname", "name"]
    assert shape.represent({"name": "a", "hostname": "a.example.com"}) == {
        "name": "a",
        "url": "a.example.com",
    }


def test_a_filtered_backup_list_is_counted_from_its_rows(api, alice, fleet):
    client = api(alice)
    instance = fleet.first()
    answer = client.get(f"/api/backups/?instance={instance.pk}").json()
    assert answer["count"] == 1 and answer["results"][0]["instance"] == str(instance.pk)
    assert client.get("/api/backups/?status=failed").json()["count"] == 0


def test_the_instance_actions_still_get_whole_rows(api, alice, fleet, no_broker):
    instance = fleet.first()
    response = api(alice).post(f"/api/instances/{instance.pk}/restart/")
    assert response.status_code == 202, response.content
