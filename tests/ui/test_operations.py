"""Operation pages: status, progress, plain-words errors, the live log and cancelling."""

from __future__ import annotations

import pytest
from django.urls import reverse

from provisioning.models import Operation
from tests.support.factories import make_operation, make_step

pytestmark = pytest.mark.django_db


def _log(client, op: Operation, after: int | None = None, **headers):
    params = {} if after is None else {"after": after}
    return client.get(reverse("provisioning:operation_log", args=[op.pk]), params, **headers)


def test_the_operation_page_shows_status_progress_and_the_log_so_far(browser, alice, acme_op):
    make_step(
        acme_op,
        "docker compose pull",
        command="docker compose pull",
        exit_code=0,
        duration_ms=1520,
        output="Pulled jira-software",
    )
    content = (
        browser(alice)
        .get(reverse("provisioning:operation_detail", args=[acme_op.pk]))
        .content.decode()
    )
    assert 'data-status="running"' in content
    assert '<progress max="100" value="25"' in content
    assert "Pulling image atlassian/jira-software:9.12.0" in content
    assert "<code>docker compose pull</code>" in content and "exit 0" in content
    assert "1520 ms" in content and "Pulled jira-software" in content
    assert 'id="operation-cancel"' in content
    last = acme_op.steps.order_by("id").last()
    assert f'hx-get="/operations/{acme_op.pk}/log/?after={last.id}"' in content
    assert 'hx-trigger="every 1s"' in content


def test_a_failed_operation_says_why_in_plain_words_and_does_not_poll(browser, alice, acme_jira):
    op = make_operation(
        acme_jira,
        kind="instance.create",
        status="failed",
        error="No ready app host has enough free memory and disk for this instance.",
    )
    content = (
        browser(alice).get(reverse("provisioning:operation_detail", args=[op.pk])).content.decode()
    )
    assert 'data-testid="operation-error"' in content
    assert "Why it failed:</strong> No ready app host has enough free memory" in content
    assert 'hx-trigger="every 1s"' not in content
    assert 'id="operation-cancel"' not in content


def test_the_log_partial_returns_only_steps_after_the_given_id(browser, alice, acme_op):
    first = acme_op.steps.get()
    second = make_step(acme_op, "Starting containers")
    third = make_step(acme_op, "Waiting for Jira to answer", level="warning")
    response = _log(browser(alice), acme_op, after=first.id, HTTP_HX_REQUEST="true")
    content = response.content.decode()
    assert response.status_code == 200
    assert f'id="step-{first.id}"' not in content
    assert f'id="step-{second.id}"' in content and f'id="step-{third.id}"' in content
    assert content.index("Starting containers") < content.index("Waiting for Jira")
    # The poller is replaced out of band by one that asks after the newest step, and the
    # status header is refreshed with it.
    assert f'?after={third.id}"' in content
    assert 'id="op-log-poller"' in content and 'id="op-status"' in content
    assert content.count('hx-swap-oob="true"') == 2
    assert "<html" not in content
    assert response["Cache-Control"] == "no-store"


def test_the_log_partial_with_nothing_new_keeps_polling_from_the_same_step(browser, alice, acme_op):
    last = acme_op.steps.get()
    response = _log(browser(alice), acme_op, after=last.id)
    content = response.content.decode()
    assert response.status_code == 200
    assert "<li" not in content
    assert f'?after={last.id}"' in content and 'hx-trigger="every 1s"' in content


def test_the_log_partial_answers_286_once_the_operation_has_ended(browser, alice, acme_op):
    client = browser(alice)
    last = acme_op.steps.get()
    assert _log(client, acme_op, after=last.id).status_code == 200
    make_step(acme_op, "Jira answers on https://acme-jira.example.com")
    Operation.objects.filter(pk=acme_op.pk).update(status="succeeded", lock_key=None)
    response = _log(client, acme_op, after=last.id)
    content = response.content.decode()
    assert response.status_code == 286
    # The final steps still arrive with the 286, and the header shows the end state.
    assert "Jira answers on" in content
    assert 'data-status="succeeded"' in content and 'value="100"' in content
    assert 'hx-trigger="every 1s"' not in content and 'data-state="ended"' in content


def test_a_garbled_after_parameter_starts_from_the_beginning(browser, alice, acme_op):
    response = _log(browser(alice), acme_op, after=None)
    assert "Pulling image" in response.content.decode()
    response = browser(alice).get(
        reverse("provisioning:operation_log", args=[acme_op.pk]) + "?after=abc"
    )
    assert response.status_code == 200 and "Pulling image" in response.content.decode()


def test_a_tenant_admin_cancels_a_pending_operation(browser, alice, acme_jira):
    op = make_operation(acme_jira, status="pending")
    client = browser(alice)
    response = client.post(reverse("provisioning:operation_cancel", args=[op.pk]))
    assert response["Location"] == reverse("provisioning:operation_detail", args=[op.pk])
    op.refresh_from_db()
    assert op.status == "cancelled"
    page = client.get(response["Location"]).content.decode()
    assert "Cancelled before it started." in page
    assert 'id="operation-cancel"' not in page


def test_cancelling_a_running_operation_asks_it_to_stop(browser, alice, acme_op):
    client = browser(alice)
    client.post(reverse("provisioning:operation_cancel", args=[acme_op.pk]))
    acme_op.refresh_from_db()
    assert acme_op.status == "running" and acme_op.cancel_requested
    page = client.get(reverse("provisioning:operation_detail", args=[acme_op.pk])).content
    assert b"Cancel requested" in page


def test_cancel_must_be_posted(browser, alice, acme_op):
    response = browser(alice).get(reverse("provisioning:operation_cancel", args=[acme_op.pk]))
    assert response.status_code == 405
    acme_op.refresh_from_db()
    assert not acme_op.cancel_requested


def test_host_operations_are_visible_only_to_staff_and_cancelled_only_by_platform_admins(
    browser, alice, sam, pat, app_host
):
    op = Operation.objects.create(
        kind="host.provision", host=app_host, status="pending", lock_key=f"host:{app_host.pk}"
    )
    url = reverse("provisioning:operation_detail", args=[op.pk])
    assert browser(alice).get(url).status_code == 404
    assert b'id="operation-cancel"' not in browser(sam).get(url).content
    cancel = reverse("provisioning:operation_cancel", args=[op.pk])
    assert browser(sam).post(cancel).status_code == 403
    assert b'id="operation-cancel"' in browser(pat).get(url).content
    browser(pat).post(cancel)
    op.refresh_from_db()
    assert op.status == "cancelled"


def test_the_operations_list_filters_by_status(browser, alice, acme_jira, acme_op):
    done = make_operation(acme_jira, kind="instance.stop", status="failed", error="boom")
    client = browser(alice)
    url = reverse("provisioning:operation_list")
    everything = client.get(url).content.decode()
    assert f'data-operation="{acme_op.pk}"' in everything
    assert f'data-operation="{done.pk}"' in everything
    active = client.get(url, {"status": "active"}).content.decode()
    assert f'data-operation="{acme_op.pk}"' in active
    assert f'data-operation="{done.pk}"' not in active
    partial = client.get(
        url, {"status": "failed"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="operation-table"
    ).content.decode()
    assert partial.lstrip().startswith('<div id="operation-table"')
    assert f'data-operation="{done.pk}"' in partial


def test_an_empty_operations_list_says_where_operations_come_from(browser, charlie):
    page = browser(charlie).get(reverse("provisioning:operation_list")).content.decode()
    assert 'data-testid="empty-operations"' in page


def test_a_poll_after_the_session_ended_sends_the_whole_page_to_login(browser, alice, acme_op):
    client = browser(alice)
    page = reverse("provisioning:operation_detail", args=[acme_op.pk])
    client.post(reverse("logout"))
    response = _log(
        client,
        acme_op,
        after=0,
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL=f"http://testserver{page}",
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/login/?next={page.replace('/', '%2F')}"
    assert b"Log in" not in response.content
