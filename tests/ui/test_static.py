"""The panel works offline: htmx and the stylesheet are served locally, never from a CDN."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR) / "templates"
REMOTE_ASSET = re.compile(
    r"<(script|link|img|iframe)\b[^>]*\b(src|href)=[\"']?(https?:)?//", re.IGNORECASE
)


def test_the_base_page_loads_htmx_and_css_from_our_own_static_files(browser, alice):
    content = browser(alice).get(reverse("dashboard")).content.decode()
    assert '<script src="/static/vendor/htmx.min.js"' in content
    assert '<link rel="stylesheet" href="/static/css/panel.css">' in content
    assert not REMOTE_ASSET.search(content)


def test_no_template_loads_a_script_or_stylesheet_from_another_site():
    offenders = [
        str(path.relative_to(TEMPLATES))
        for path in TEMPLATES.rglob("*.html")
        if REMOTE_ASSET.search(path.read_text())
    ]
    assert offenders == []


def test_the_vendored_htmx_is_served_with_its_licence(client):
    response = client.get("/static/vendor/htmx.min.js")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"htmx" in body and len(body) > 10_000
    licence = Path(settings.BASE_DIR) / "static" / "vendor" / "htmx.LICENSE"
    assert "Zero-Clause BSD" in licence.read_text() or "BSD" in licence.read_text()


def test_the_stylesheet_is_served(client):
    response = client.get("/static/css/panel.css")
    assert response.status_code == 200
