"""An ended session on a polling panel: htmx is told to load the login page as a whole page
(``HX-Redirect``), so the login form is never pasted into the panel it was refreshing."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.shortcuts import resolve_url

pytestmark = pytest.mark.django_db


def test_an_expired_session_on_the_polling_host_key_panel_gets_the_htmx_redirect(client, app_host):
    page = f"/hosts/{app_host.pk}/"
    response = client.get(
        page,
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="host-key-panel",
        HTTP_HX_CURRENT_URL=f"http://testserver{page}",
    )
    assert (
        response["HX-Redirect"]
        == f"{resolve_url(settings.LOGIN_URL)}?next=%2Fhosts%2F{app_host.pk}%2F"
    )
    assert b"<form" not in response.content


def test_an_expired_session_on_a_certificate_button_gets_the_htmx_redirect(client, acme_jira):
    response = client.post(
        f"/instances/{acme_jira.pk}/proxy/deploy/",
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL=f"http://testserver/instances/{acme_jira.pk}/",
    )
    assert response["HX-Redirect"].startswith(resolve_url(settings.LOGIN_URL))
    assert b"<form" not in response.content


def test_without_htmx_an_expired_session_still_goes_to_the_login_page(client, app_host):
    response = client.get(f"/hosts/{app_host.pk}/")
    assert response.status_code == 302
    assert response["Location"].startswith(resolve_url(settings.LOGIN_URL))
