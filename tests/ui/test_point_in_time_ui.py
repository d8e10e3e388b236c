"""Point-in-time recovery in the web UI: everyone who sees an instance's backups reads its
recoverable window, WAL lag, receiver and base backups; only staff turn it on, take a base
backup or restore to a second, and a refused restore comes back as errors on the form's fields
with what was typed still in them. The DR dashboard lists the archived instances with their
lag against the tier's RPO."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from backups.models import BaseBackup, WalArchive
from backups.selectors import wal_archive_overview
from provisioning.models import AtlassianInstance, Operation
from tests.backups.factories import backup_host, make_point, with_backup_host
from tests.support.factories import make_instance, make_operation

pytestmark = pytest.mark.django_db

ROUTES = ("backups:wal_enable", "backups:wal_base", "backups:restore_time")


@pytest.fixture(autouse=True)
def _no_broker(no_broker: list[str]) -> list[str]:
    """The operations started here are only checked as rows; no worker runs them."""
    return no_broker


def _placed(instance: AtlassianInstance, app) -> AtlassianInstance:
    AtlassianInstance.objects.filter(pk=instance.pk).update(host=app)
    instance.refresh_from_db()
    return instance


def archive_with_window(
    instance: AtlassianInstance, *, now: datetime, shipped_ago: timedelta = timedelta(seconds=10)
) -> WalArchive:
    """WAL archiving on, a base backup finished 2 h ago, a home point 3 h ago and WAL shipped
    ``shipped_ago``: the window runs from 2 h ago to then."""
    AtlassianInstance.objects.filter(pk=instance.pk).update(wal_archiving=True)
    instance.refresh_from_db()
    app, backup = instance.host, instance.host.backup_host if instance.host else None
    assert app is not None and backup is not None, "place the instance on a backed-up host"
    make_point(instance, taken_at=now - timedelta(hours=3), label="daily.0")
    BaseBackup.objects.create(
        instance=instance,
        backup_host=backup,
        app_host=app,
        label="20250301T100000Z",
        status=BaseBackup.Status.SUCCEEDED,
        started_at=now - timedelta(hours=2, minutes=1),
        finished_at=now - timedelta(hours=2),
        size_bytes=64 * 1024**2,
        duration_seconds=58,
    )
    return WalArchive.objects.create(
        instance=instance,
        enabled_at=now - timedelta(hours=2, minutes=5),
        shipped_at=now - shipped_ago,
        checked_at=now - shipped_ago,
        receiver_running=True,
    )


@pytest.fixture
def jira(acme_jira, app_host) -> AtlassianInstance:
    with_backup_host(app_host, backup_host())
    return _placed(acme_jira, app_host)


@pytest.fixture
def now() -> datetime:
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def archived(jira, now) -> AtlassianInstance:
    archive_with_window(jira, now=now)
    jira.refresh_from_db()
    return jira


def _page(client, instance) -> str:
    response = client.get(reverse("backups:instance_backups", args=[instance.pk]))
    assert response.status_code == 200
    return response.content.decode()


def _local(moment: datetime) -> str:
    """What the datetime-local picker posts: the UTC time without a zone, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _restore(client, instance, **data: str):
    return client.post(
        reverse("backups:restore_time", args=[instance.pk]),
        {"idempotency_key": data.pop("key", "ui-pitr-1"), **data},
    )


# --- what everyone sees ---------------------------------------------------------------------


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_a_customer_sees_the_window_and_base_backups_but_no_button_or_form(
    browser, request, archived, now, who
):
    html = _page(browser(request.getfixturevalue(who)), archived)
    assert 'data-testid="point-in-time"' in html and "Point-in-time recovery" in html
    start = (now - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    end = (now - timedelta(seconds=10)).strftime("%Y-%m-%d %H:%M:%S")
    assert f"{start}</time> – " in html and f">{end}</time> UTC" in html
    assert "(lag 10 s)" in html or "(lag 11 s)" in html
    assert 'data-testid="base-backup-row"' in html and "20250301T100000Z" in html
    assert "64.0\xa0MB" in html and "58 s" in html
    assert "Running" in html
    for marker in ('id="wal-base"', 'id="restore-time-form"', 'id="wal-enable"'):
        assert marker not in html


def test_customers_get_404_from_every_point_in_time_action_and_nothing_starts(
    browser, alice, bob, charlie, archived
):
    for user in (alice, bob, charlie):
        client = browser(user)
        for name in ROUTES:
            url = reverse(name, args=[archived.pk])
            data = {"target_time": _local(timezone.now()), "confirm": archived.name}
            assert client.post(url, data).status_code == 404, (user.username, name)
    assert not Operation.objects.exists()


def test_another_tenants_instance_is_a_404_for_staff_routes_too(browser, charlie, archived):
    client = browser(charlie)
    assert client.get(reverse("backups:instance_backups", args=[archived.pk])).status_code == 404


def test_the_panel_says_off_and_only_staff_can_turn_it_on(browser, alice, sam, jira):
    html = _page(browser(alice), jira)
    assert 'data-testid="pitr-state"' in html and "Off" in html
    assert 'id="wal-enable"' not in html and "Support turns it on" in html
    html = _page(browser(sam), jira)
    assert 'id="wal-enable"' in html and "The database restarts once" in html
    assert 'id="restore-time-form"' not in html and 'id="wal-base"' not in html


def test_the_window_is_not_open_before_the_first_base_backup(browser, sam, jira):
    AtlassianInstance.objects.filter(pk=jira.pk).update(wal_archiving=True)
    WalArchive.objects.create(instance=jira, receiver_running=False)
    html = _page(browser(sam), jira)
    assert "Not open yet" in html and "Nothing shipped yet" in html and "Not running" in html
    assert "No base backup yet." in html


def test_the_last_error_is_shown_with_host_internals_masked_for_customers(
    browser, alice, sam, archived
):
    WalArchive.objects.filter(instance=archived).update(
        error="rsync: connection to backup-one (127.0.0.21) refused"
    )
    assert "127.0.0.21" in _page(browser(sam), archived)
    html = _page(browser(alice), archived)
    assert 'data-testid="pitr-error"' in html and "rsync: connection" in html
    assert "127.0.0.21" not in html and "backup-one" not in html


def test_a_wal_lag_over_the_tiers_rpo_is_marked(browser, alice, jira, now):
    archive_with_window(jira, now=now, shipped_ago=timedelta(hours=9))  # tier 2: RPO 8 h
    html = _page(browser(alice), jira)
    assert 'data-testid="pitr-over-rpo"' in html


# --- staff: turn on, base backup ------------------------------------------------------------


def test_staff_turn_point_in_time_recovery_on_and_land_on_the_operation(browser, sam, jira):
    response = browser(sam).post(
        reverse("backups:wal_enable", args=[jira.pk]), {"idempotency_key": "ui-w-1"}
    )
    op = Operation.objects.get()
    assert op.kind == "backup.wal_enable" and op.instance == jira
    assert response["Location"] == reverse("provisioning:operation_detail", args=[op.pk])


def test_staff_take_a_base_backup_now(browser, sam, archived):
    client = browser(sam)
    html = _page(client, archived)
    assert 'id="wal-base"' in html and 'id="wal-enable"' not in html
    response = client.post(
        reverse("backups:wal_base", args=[archived.pk]), {"idempotency_key": "ui-b-1"}
    )
    op = Operation.objects.get()
    assert op.kind == "backup.wal_base"
    assert response["Location"] == reverse("provisioning:operation_detail", args=[op.pk])


def test_a_base_backup_while_another_operation_runs_names_it_and_goes_back(browser, sam, archived):
    running = make_operation(archived, kind="backup.create", status="running")
    client = browser(sam)
    response = client.post(
        reverse("backups:wal_base", args=[archived.pk]),
        {"idempotency_key": "ui-b-2"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == reverse("backups:instance_backups", args=[archived.pk])
    html = response.content.decode()
    assert "An operation is already running on this instance" in html
    assert f'href="/operations/{running.pk}/"' in html
    assert Operation.objects.count() == 1


def test_a_base_backup_without_archiving_is_refused_with_a_message(browser, sam, jira):
    response = browser(sam).post(
        reverse("backups:wal_base", args=[jira.pk]), {"idempotency_key": "ui-b-3"}, follow=True
    )
    assert response.status_code == 200
    assert "does not archive its WAL" in response.content.decode()
    assert not Operation.objects.exists()


# --- staff: restore to a time ---------------------------------------------------------------


def test_staff_see_the_restore_form_with_a_second_picker_read_as_utc(browser, sam, archived, now):
    html = _page(browser(sam), archived)
    assert 'id="restore-time-form"' in html
    assert 'type="datetime-local"' in html and 'step="1"' in html
    assert f'min="{_local(now - timedelta(hours=2))}"' in html
    assert "Restore to (UTC)" in html and "Read as UTC, to the second" in html
    explained = html.split('data-testid="restore-time-explained">')[1].split("</p>")[0]
    assert "exactly as it was at the chosen second" in explained
    assert "newest backup point taken before that second" in explained
    assert "each part&#x27;s time" in explained or "each part's time" in explained


def test_a_time_outside_the_window_is_an_error_on_the_time_and_keeps_what_was_typed(
    browser, sam, archived, now
):
    typed = _local(now - timedelta(hours=5))
    response = _restore(browser(sam), archived, target_time=typed, confirm="acme-jira")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="error-target_time"' in html
    assert "Choose a time inside the recoverable window" in html
    assert f'value="{typed}"' in html and 'value="acme-jira"' in html
    assert not Operation.objects.exists()


def test_a_time_in_the_future_is_outside_the_window_too(browser, sam, archived, now):
    typed = _local(now + timedelta(hours=1))
    response = _restore(browser(sam), archived, target_time=typed, confirm="acme-jira")
    assert b'data-testid="error-target_time"' in response.content
    assert not Operation.objects.exists()


def test_a_wrong_name_is_an_error_on_the_confirmation_and_keeps_the_time(
    browser, sam, archived, now
):
    typed = _local(now - timedelta(hours=1))
    response = _restore(browser(sam), archived, target_time=typed, confirm="acme")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="error-confirm"' in html and "Type acme-jira to confirm" in html
    assert 'data-testid="error-target_time"' not in html
    assert f'value="{typed}"' in html and 'value="acme"' in html
    assert not Operation.objects.exists()


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "yesterday at noon",
        "2025-13-40T99:00:00",
        "2025-02-30T10:00:00",
        "99999-01-01T00:00:00",
        "0001-01-01T00:00:00+01:00",
        "2025-03-01T25:00:00Z",
    ],
)
def test_a_missing_or_garbled_time_is_an_error_on_the_field_not_a_500(
    browser, sam, archived, typed
):
    response = _restore(browser(sam), archived, target_time=typed, confirm="acme-jira")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="error-target_time"' in html, typed
    assert 'value="acme-jira"' in html
    assert not Operation.objects.exists()


def test_a_time_inside_the_window_starts_the_restore_and_lands_on_the_operation(
    browser, sam, archived, now
):
    target = now - timedelta(hours=1, seconds=7)
    client = browser(sam)
    response = _restore(client, archived, target_time=_local(target), confirm="acme-jira")
    op = Operation.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("provisioning:operation_detail", args=[op.pk])
    assert op.kind == "backup.restore_time" and op.instance == archived
    # The picker's value is UTC, to the second, whatever the browser's zone.
    assert datetime.fromisoformat(op.params["target_time"]) == target
    assert op.params["target_time"].endswith("+00:00")
    page = client.get(response["Location"]).content.decode()
    assert f"to {target:%Y-%m-%d %H:%M:%S} UTC started" in page


def test_a_time_without_seconds_or_with_a_zone_is_read_to_the_second_in_utc(
    browser, sam, archived, now
):
    target = (now - timedelta(hours=1)).replace(second=0)
    _restore(
        browser(sam), archived, target_time=target.strftime("%Y-%m-%dT%H:%M"), confirm="acme-jira"
    )
    op = Operation.objects.get()
    assert datetime.fromisoformat(op.params["target_time"]) == target
    op.delete()
    zoned = (now - timedelta(hours=1)).astimezone(timezone.get_fixed_timezone(120))
    _restore(
        browser(sam),
        archived,
        target_time=zoned.isoformat(),
        confirm="acme-jira",
        key="ui-pitr-2",
    )
    op = Operation.objects.get()
    assert datetime.fromisoformat(op.params["target_time"]) == now - timedelta(hours=1)


def test_the_same_submit_twice_starts_one_restore(browser, sam, archived, now):
    client = browser(sam)
    data = {"target_time": _local(now - timedelta(hours=1)), "confirm": "acme-jira"}
    first = _restore(client, archived, **data)
    again = _restore(client, archived, **data)
    op = Operation.objects.get()
    assert first["Location"] == again["Location"]
    assert first["Location"] == reverse("provisioning:operation_detail", args=[op.pk])


def test_a_restore_while_another_operation_runs_names_it_and_keeps_the_form(
    browser, sam, archived, now
):
    running = make_operation(archived, kind="backup.create", status="running")
    typed = _local(now - timedelta(hours=1))
    response = _restore(browser(sam), archived, target_time=typed, confirm="acme-jira")
    assert response.status_code == 200
    html = response.content.decode()
    assert "An operation is already running on this instance" in html
    assert f'href="/operations/{running.pk}/"' in html
    assert f'value="{typed}"' in html
    assert Operation.objects.count() == 1


def test_opening_the_restore_route_goes_back_to_the_backups_page(browser, sam, archived):
    response = browser(sam).get(reverse("backups:restore_time", args=[archived.pk]))
    assert response["Location"] == reverse("backups:instance_backups", args=[archived.pk])


# --- the DR dashboard -----------------------------------------------------------------------


def test_the_dr_dashboard_lists_archived_instances_with_their_lag_against_the_rpo(
    browser, sam, acme, globex, archived, app_host, now
):
    late = _placed(make_instance(globex, "globex-late", tier="tier1"), app_host)
    archive_with_window(late, now=now, shipped_ago=timedelta(hours=2))  # tier 1: RPO 1 h
    WalArchive.objects.filter(instance=late).update(receiver_running=False, error="rsync: boom")
    make_instance(acme, "acme-plain", host=app_host)  # no archiving: not listed
    html = browser(sam).get(reverse("backups:dr_dashboard")).content.decode()
    table = html.split('data-testid="dr-archives"')[1].split("</table>")[0]
    assert table.count('data-testid="dr-archive"') == 2 and "acme-plain" not in table
    ok = table.split('data-instance="acme-jira"')[1].split("</tr>")[0]
    assert reverse("backups:instance_backups", args=[archived.pk]) in ok
    assert "Acme" in ok and "Tier 2" in ok and "over RPO" not in ok
    assert (now - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S") in ok  # the window's start
    assert "Succeeded" in ok and "Running" in ok
    bad = table.split('data-instance="globex-late"')[1].split("</tr>")[0]
    assert "Globex" in bad and "Tier 1" in bad and "2.0 h" in bad and "RPO 1 h" in bad
    assert 'data-testid="over-rpo"' in bad and "Not running" in bad and "rsync: boom" in bad


def test_the_dr_dashboard_says_when_no_instance_archives_its_wal(browser, sam, jira):
    html = browser(sam).get(reverse("backups:dr_dashboard")).content.decode()
    assert 'data-testid="dr-archives-empty"' in html
    assert "No instance archives its WAL yet" in html


def test_the_archive_overview_is_scoped_to_what_the_caller_sees(
    access_of, alice, charlie, sam, archived, globex, app_host, now
):
    other = _placed(make_instance(globex, "globex-wiki2"), app_host)
    archive_with_window(other, now=now)
    assert [r["instance"].name for r in wal_archive_overview(access_of(alice))] == ["acme-jira"]
    assert [r["instance"].name for r in wal_archive_overview(access_of(charlie))] == [
        "globex-wiki2"
    ]
    assert len(wal_archive_overview(access_of(sam))) == 2


def test_a_restore_to_a_time_into_a_new_instance_starts_a_copy_and_keeps_errors_on_fields(
    browser, sam, archived, now
):
    target = now - timedelta(hours=1)
    client = browser(sam)
    refused = _restore(client, archived, target_time=_local(target), mode="new_instance")
    assert refused.status_code == 200 and not Operation.objects.exists()
    form = refused.context["restore_time_form"]
    assert set(form.errors) >= {"name", "hostname"}
    assert form["target_time"].value() == _local(target)  # what was typed stays

    response = _restore(
        client,
        archived,
        key="ui-pitr-copy",
        target_time=_local(target),
        mode="new_instance",
        name="acme-jira-then",
        hostname="then.acme.example",
    )

    op = Operation.objects.get()
    assert response.status_code == 302 and op.kind == "backup.restore"
    assert op.instance.name == "acme-jira-then" and op.instance.copy_of == archived
    assert datetime.fromisoformat(op.params["target_time"]) == target
    page = client.get(response["Location"]).content.decode()
    assert "into acme-jira-then on host" in page
