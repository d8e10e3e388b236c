"""Secrets are encrypted at rest and survive key rotation."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from provisioning.models import AtlassianInstance


def _raw_password(instance: AtlassianInstance) -> str:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT db_password FROM provisioning_atlassianinstance WHERE id = %s", [instance.pk]
        )
        return cur.fetchone()[0]


@pytest.mark.django_db
def test_the_database_holds_only_ciphertext_of_an_instance_password(acme_jira):
    raw = _raw_password(acme_jira)
    assert raw.startswith("fernet:") and "pw-acme-jira-secret" not in raw
    assert AtlassianInstance.objects.get(pk=acme_jira.pk).db_password == "pw-acme-jira-secret"


@pytest.mark.django_db
def test_rotation_re_encrypts_under_the_new_key_and_the_old_key_can_go(acme_jira, settings):
    old_key = settings.PANEL_ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    before = _raw_password(acme_jira)
    settings.PANEL_ENCRYPTION_KEYS = [new_key, old_key]
    call_command("secrets_rotate")
    after = _raw_password(acme_jira)
    assert after != before
    settings.PANEL_ENCRYPTION_KEYS = [new_key]  # the old key is dropped
    assert AtlassianInstance.objects.get(pk=acme_jira.pk).db_password == "pw-acme-jira-secret"
