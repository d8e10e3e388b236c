"""API shapes of the certificates app (secrets are write-only and never returned)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from certificates.models import Certificate, DnsProviderAccount, DnsRecord, DnsZone, ProxySite
from panel.access import access_for
from panel.api.serializers import StrictFieldsMixin
from provisioning.selectors import host_mask

MAX_EXPIRING_DAYS = 3650


def _viewer_is_staff(context: dict[str, Any]) -> bool:
    request = context.get("request")
    return request is not None and access_for(request).is_staff_role


class HostMaskedErrorsMixin:
    """Customers read ``last_error`` without host addresses, SSH users or backup hosts."""

    masked_fields: tuple[str, ...] = ("last_error",)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)  # type: ignore[misc]
        context = self.context  # type: ignore[attr-defined]
        if not _viewer_is_staff(context) and any(data.get(f) for f in self.masked_fields):
            if "_host_mask" not in context:
                context["_host_mask"] = host_mask()
            for name in self.masked_fields:
                data[name] = context["_host_mask"].text(data.get(name))
        return data


class CertificateListQuerySerializer(serializers.Serializer):
    expiring = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_EXPIRING_DAYS,
        help_text="Only certificates that expire within this many days.",
    )


class CertificateSerializer(HostMaskedErrorsMixin, serializers.ModelSerializer):
    instance = serializers.UUIDField(source="instance_id", read_only=True, allow_null=True)
    zone = serializers.CharField(source="zone.name", read_only=True, allow_null=True, default=None)
    last_renewal = serializers.DateTimeField(source="issued_at", read_only=True)
    next_renewal = serializers.DateTimeField(source="renew_after", read_only=True)

    class Meta:
        model = Certificate
        fields = [
            "id",
            "instance",
            "zone",
            "names",
            "challenge",
            "status",
            "issuer",
            "serial",
            "not_before",
            "not_after",
            "last_renewal",
            "next_renewal",
            "next_attempt_at",
            "failures",
            "last_error",
        ]
        read_only_fields = fields


class DnsRecordSerializer(serializers.ModelSerializer):
    zone = serializers.CharField(source="zone.name", read_only=True, allow_null=True, default=None)
    type = serializers.CharField(source="rtype", read_only=True)

    class Meta:
        model = DnsRecord
        fields = [
            "id",
            "name",
            "type",
            "value",
            "ttl",
            "zone",
            "customer_managed",
            "status",
            "detail",
            "published_at",
            "checked_at",
        ]
        read_only_fields = fields


class ProblemSerializer(serializers.Serializer):
    """One problem of an instance's address; ``detail`` (the raw error) is for staff only."""

    component = serializers.CharField()
    problem = serializers.CharField()
    fix = serializers.CharField()
    detail = serializers.CharField(
        required=False, allow_null=True, help_text="Support staff only: the underlying error."
    )

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        if not _viewer_is_staff(self.context):
            data.pop("detail", None)
        return data


class ProxySiteSerializer(HostMaskedErrorsMixin, serializers.ModelSerializer):
    class Meta:
        model = ProxySite
        fields = ["status", "config", "config_hash", "deployed_at", "last_error"]
        read_only_fields = fields


class EndpointSerializer(serializers.Serializer):
    """Everything about an instance's public address."""

    base_url = serializers.CharField()
    certificate = CertificateSerializer(allow_null=True)
    dns_records = DnsRecordSerializer(many=True)
    proxy = ProxySiteSerializer(allow_null=True)
    problems = ProblemSerializer(many=True)
    checked_at = serializers.DateTimeField(allow_null=True)


def _json_object(value: Any) -> dict:
    if not isinstance(value, dict):
        raise serializers.ValidationError("Expected an object of names and values.")
    return value


class DnsProviderAccountSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """A DNS provider account. ``config`` holds the provider's settings (Route53: region,
    endpoint_url; RFC 2136: server, port, tsig_key_name, tsig_algorithm, timeout);
    ``credentials`` its secrets (Route53: access_key_id, secret_access_key; RFC 2136:
    tsig_secret, base64), which are write-only: only the names of those set are returned."""

    credentials = serializers.JSONField(
        write_only=True,
        required=False,
        help_text="Secrets; stored encrypted, never returned. On a change they replace the "
        "stored ones as a whole; leave the field out to keep them.",
    )
    credentials_set = serializers.SerializerMethodField(
        help_text="The names of the secrets stored (never their values)."
    )
    zones: serializers.SlugRelatedField[DnsZone] = serializers.SlugRelatedField(
        many=True, read_only=True, slug_field="name"
    )

    class Meta:
        model = DnsProviderAccount
        fields = [
            "id",
            "name",
            "kind",
            "config",
            "credentials",
            "credentials_set",
            "zones",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]

    def get_credentials_set(self, obj: DnsProviderAccount) -> list[str]:
        return sorted(k for k, v in (obj.credentials or {}).items() if v)

    def validate_config(self, value: Any) -> dict:
        return _json_object(value)

    def validate_credentials(self, value: Any) -> dict:
        return _json_object(value)


class DnsProviderAccountUpdateSerializer(DnsProviderAccountSerializer):
    """A change of an account: its name, settings or secrets; the kind stays."""

    class Meta(DnsProviderAccountSerializer.Meta):
        read_only_fields = ["id", "kind", "created_at"]


class DnsCheckLineSerializer(serializers.Serializer):
    subject = serializers.CharField(help_text="'account', or the zone's name.")
    ok = serializers.BooleanField()
    detail = serializers.CharField(help_text="What the provider answered, or why it failed.")


class DnsAccountCheckSerializer(serializers.Serializer):
    """The connection test of an account: the provider accepts it, and serves each zone."""

    ok = serializers.BooleanField()
    checked_at = serializers.DateTimeField()
    lines = DnsCheckLineSerializer(many=True)


class DnsZoneSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    account = serializers.PrimaryKeyRelatedField(queryset=DnsProviderAccount.objects.all())

    class Meta:
        model = DnsZone
        fields = [
            "id",
            "name",
            "account",
            "provider_zone_id",
            "default_ttl",
            "wildcard",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]
