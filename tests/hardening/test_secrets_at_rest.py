"""Secrets never appear in clear: not in a dump of the whole database, not in operation logs,
not in the audit trail. Every encrypted field of every model must be covered here."""

from __future__ import annotations

import subprocess

import pytest
from django.apps import apps
from django.db import connection

from panel.access import access_for_user
from panel.crypto import EncryptedJSONField, EncryptedTextField
from panel.operations import operation_execute, operation_start
from provisioning.models import AtlassianInstance, Host, Operation
from provisioning.services import license_add
from tenants.services import token_create

MARKER = "SeCrEtMaRkEr7f3a"

pytestmark = pytest.mark.django_db(transaction=True)


def _encrypted_fields() -> list[tuple[type, str]]:
    return [
        (model, field.name)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextField | EncryptedJSONField)
    ]


def _fill_secrets(alice, acme) -> dict[str, str]:
    """Create one row per kind of secret, each holding the marker."""
    secrets = {}
    host = Host.objects.create(
        name="secret-host",
        role="app",
        address="127.0.0.99",
        ssh_private_key="-----BEGIN OPENSSH PRIVATE KEY-----\n"
        f"{MARKER}hostkey\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    secrets["ssh key"] = f"{MARKER}hostkey"
    instance = AtlassianInstance.objects.create(
        tenant=acme,
        name="secret-jira",
        product="jira-software",
        version="9.12.0",
        hostname="secret.acme.example",
        host=host,
        db_name="secret_jira",
        db_user="secret_jira",
        db_password=f"{MARKER}dbpw",
        extra_env={"NEW_RELIC_LICENSE_KEY": f"{MARKER}newrelic"},
    )
    secrets["db password"] = f"{MARKER}dbpw"
    secrets["agent key"] = f"{MARKER}newrelic"
    license_add(actor=access_for_user(alice), instance=instance, key=f"AAAB{MARKER}licensekey")
    secrets["license key"] = f"AAAB{MARKER}licensekey"
    _token, clear = token_create(
        actor=access_for_user(alice), user=alice, name="ci", scope="write", tenant=acme
    )
    secrets["api token"] = clear
    # DNS provider credentials, the ACME account key, a certificate's private key
    from certificates.models import AcmeAccount, Certificate, DnsProviderAccount

    DnsProviderAccount.objects.create(
        name="route53",
        kind=DnsProviderAccount.Kind.choices[0][0],
        credentials={"aws_secret_access_key": f"{MARKER}aws"},
    )
    secrets["dns credentials"] = f"{MARKER}aws"
    AcmeAccount.objects.create(
        directory_url="https://127.0.0.1:14000/dir",
        key=f"-----BEGIN EC PRIVATE KEY-----\n{MARKER}acme\n-----END",
    )
    secrets["acme key"] = f"{MARKER}acme"
    Certificate.objects.create(
        instance=instance, names=[instance.hostname], private_key=f"{MARKER}certkey"
    )
    secrets["certificate key"] = f"{MARKER}certkey"
    # a tenant's webhook signing secret
    from notifications.models import NotificationPreference

    NotificationPreference.objects.create(
        tenant=acme, webhook_url="http://127.0.0.1:9/hook", webhook_secret=f"{MARKER}webhook"
    )
    secrets["webhook secret"] = f"{MARKER}webhook"
    # a user's authenticator secret (hex, as django-otp keeps it)
    from tenants.models import SealedTOTPDevice

    totp_key = f"{MARKER}totp".encode().hex()
    SealedTOTPDevice.objects.create(user=alice, name="phone", key=totp_key)
    secrets["totp secret"] = totp_key
    return secrets


def test_every_encrypted_field_is_covered_by_this_test(alice, acme):
    _fill_secrets(alice, acme)
    uncovered = [
        f"{model._meta.label}.{name}"
        for model, name in _encrypted_fields()
        if not model.objects.exclude(**{name: ""}).exclude(**{f"{name}__isnull": True}).exists()
    ]
    assert uncovered == [], f"fill these secret fields in _fill_secrets(): {uncovered}"


def test_a_dump_of_the_database_and_all_logs_hold_no_secret_in_clear(alice, acme):
    secrets = _fill_secrets(alice, acme)
    instance = AtlassianInstance.objects.get(name="secret-jira")
    # an operation whose handler prints secrets and fails with one in its message
    op = operation_start(
        kind="diagnostic",
        actor=access_for_user(alice),
        instance=instance,
        lock_key="x",
        params={"steps": 1, "sleep": 0, "leak_instance_secrets": True},
    )
    operation_execute(op.id)
    assert "could not log in with [redacted]" in Operation.objects.get(id=op.id).error
    # and the real instance rollout, which fails on the unreachable host
    create = operation_start(
        kind="instance.create",
        actor=access_for_user(alice),
        instance=instance,
        lock_key=f"instance:{instance.pk}",
    )
    operation_execute(create.id)
    assert Operation.objects.get(id=create.id).status == "failed"
    dump = subprocess.run(
        [
            "pg_dump",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "--data-only",
            connection.settings_dict["NAME"],
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "secret-jira" in dump  # the dump does hold the data...
    found = {name: value for name, value in secrets.items() if value in dump}
    assert found == {}, f"secrets in clear in the database: {sorted(found)}"
    assert MARKER not in dump
