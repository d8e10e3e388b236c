"""API shapes of the certificates app (secrets are write-only and never returned)."""

from __future__ import annotations

from rest_framework import serializers

from certificates.models import Certificate, DnsProviderAccount, DnsRecord, DnsZone, ProxySite


class CertificateSerializer(serializers.ModelSerializer):
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
    component = serializers.CharField()
    problem = serializers.CharField()
    fix = serializers.CharField()


class ProxySiteSerializer(serializers.ModelSerializer):
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


class DnsProviderAccountSerializer(serializers.ModelSerializer):
    credentials = serializers.JSONField(
        write_only=True, required=False, help_text="Secrets; stored encrypted, never returned."
    )

    class Meta:
        model = DnsProviderAccount
        fields = ["id", "name", "kind", "config", "credentials", "created_at"]
        read_only_fields = ["id", "created_at"]


class DnsZoneSerializer(serializers.ModelSerializer):
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
