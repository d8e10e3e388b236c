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


class DnsProviderAccountSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    credentials = serializers.JSONField(
        write_only=True, required=False, help_text="Secrets; stored encrypted, never returned."
    )

    class Meta:
        model = DnsProviderAccount
        fields = ["id", "name", "kind", "config", "credentials", "created_at"]
        read_only_fields = ["id", "created_at"]


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
