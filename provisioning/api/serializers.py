"""API shapes of instances, licenses and operations.

Read shapes never carry secrets: no database credentials, no license key (only its last four
characters), no host address or credentials (only the host's name). Write shapes narrow every
related field to what the caller administers, so a foreign object is "not found" (400).
"""

from __future__ import annotations

from functools import cache
from types import SimpleNamespace
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from panel.access import access_for
from panel.api.rows import ValuesShape
from panel.api.serializers import StrictFieldsMixin
from panel.operations import operation_kind_label, registered_kinds
from panel.plain_text import refuse_control_characters
from panel.sanitize import sanitize_data
from provisioning import selectors, validators
from provisioning.licenses import MAX_KEY_CHARS, license_key_check
from provisioning.models import AtlassianInstance, License, Operation, OperationStep
from provisioning.services import instance_validate_heap, instance_validate_product_version
from tenants.models import Tenant
from tenants.selectors import tenants_administered
from tenants.tiers import ServiceTier, objectives_for

MAX_INT = 2**31 - 1
STEPS_IN_DETAIL = 1000  # an operation's page embeds at most this many steps


# An instance's tier, labelled with its recovery objectives (the tenant's default tier uses the
# plain labels, so the schema shows two enums for the same values; see ENUM_NAME_OVERRIDES).
def _tier_label(tier: ServiceTier) -> str:
    goals = objectives_for(tier)
    hours = (goals.rpo.total_seconds() // 3600, goals.rto.total_seconds() // 3600)
    return f"{tier.label}: RPO {hours[0]:.0f} h, RTO {hours[1]:.0f} h"


TIER_CHOICES = [(tier.value, _tier_label(tier)) for tier in ServiceTier]


def _access(context: dict[str, Any]) -> Any:
    return access_for(context["request"])


def _raise_as_drf(exc: DjangoValidationError) -> None:
    if hasattr(exc, "error_dict"):
        raise serializers.ValidationError(exc.message_dict) from exc
    raise serializers.ValidationError(exc.messages) from exc


def _days_left(lic: License) -> int | None:
    return _days_until(lic.effective_expiry)


def _days_until(expiry: Any) -> int | None:
    return None if expiry is None else (expiry - timezone.now().date()).days


# --- licenses -------------------------------------------------------------------------------


class LicenseSummarySerializer(serializers.ModelSerializer):
    """What an instance's listing shows of each of its licenses."""

    days_left = serializers.SerializerMethodField()

    class Meta:
        model = License
        fields = [
            "id",
            "product",
            "decode_status",
            "sen",
            "license_type",
            "user_tier",
            "expiry_date",
            "maintenance_expiry_date",
            "evaluation",
            "days_left",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_days_left(self, obj: License) -> int | None:
        return _days_left(obj)


class LicenseSerializer(serializers.ModelSerializer):
    """A license and the facts decoded from it (or entered by hand). Never the key itself."""

    instance = serializers.UUIDField(source="instance_id", read_only=True)
    instance_name = serializers.CharField(source="instance.name", read_only=True)
    tenant = serializers.UUIDField(source="instance.tenant_id", read_only=True)
    tenant_name = serializers.CharField(source="instance.tenant.name", read_only=True)
    effective_expiry = serializers.DateField(read_only=True, allow_null=True)
    days_left = serializers.SerializerMethodField(
        help_text="Days until the earlier of license and maintenance expiry (negative: past)."
    )
    key_hint = serializers.SerializerMethodField(help_text="The key's last four characters.")

    class Meta:
        model = License
        fields = [
            "id",
            "instance",
            "instance_name",
            "tenant",
            "tenant_name",
            "product",
            "decode_status",
            "sen",
            "organisation",
            "license_type",
            "user_tier",
            "expiry_date",
            "maintenance_expiry_date",
            "evaluation",
            "effective_expiry",
            "days_left",
            "key_hint",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_days_left(self, obj: License) -> int | None:
        return _days_left(obj)

    def get_key_hint(self, obj: License) -> str:
        return f"…{obj.key[-4:]}" if obj.key else ""


class LicenseCreateSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """A license key for an instance the caller administers; facts by hand if it won't decode."""

    instance = serializers.PrimaryKeyRelatedField(
        queryset=AtlassianInstance.objects.none(),
        error_messages={"does_not_exist": "Unknown instance, or you are not an admin of it."},
    )
    key = serializers.CharField(
        write_only=True,
        max_length=MAX_KEY_CHARS,
        help_text="The license key as Atlassian issued it.",
    )

    class Meta:
        model = License
        fields = [
            "instance",
            "key",
            "sen",
            "organisation",
            "license_type",
            "user_tier",
            "expiry_date",
            "maintenance_expiry_date",
            "evaluation",
        ]
        # The facts end up in the instance's files and environment: one line each.
        extra_kwargs = {
            name: {"validators": [refuse_control_characters]}
            for name in ("sen", "organisation", "license_type", "user_tier")
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "request" in self.context:
            self.fields["instance"].queryset = selectors.instances_administered(
                _access(self.context)
            )

    def validate_key(self, value: str) -> str:
        try:
            return license_key_check(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


# --- instances ------------------------------------------------------------------------------


class InstanceSerializer(serializers.ModelSerializer):
    """An Atlassian instance as its users see it: where it lives, its state and licenses."""

    tenant = serializers.UUIDField(source="tenant_id", read_only=True)
    tenant_name = serializers.CharField(source="tenant.name", read_only=True)
    display_status = serializers.CharField(
        read_only=True, help_text="The status, or 'degraded' for a running instance failing health."
    )
    base_url = serializers.CharField(read_only=True)
    host_name = serializers.CharField(source="host.name", read_only=True, allow_null=True)
    tier = serializers.ChoiceField(choices=TIER_CHOICES, read_only=True)
    licenses = LicenseSummarySerializer(many=True, read_only=True)
    host_port = serializers.IntegerField(
        read_only=True,
        allow_null=True,
        help_text="Bitbucket and Bamboo: the port on the instance's address where git over SSH "
        "or the remote agents' broker is published.",
    )
    published_url = serializers.CharField(
        read_only=True,
        help_text="Bitbucket: the SSH clone base URL; Bamboo: the broker URL for remote agents; "
        "empty for the other products.",
    )
    copy_of = serializers.UUIDField(
        source="copy_of_id",
        read_only=True,
        allow_null=True,
        help_text="The instance this one is a copy of (a restore or a drill); null otherwise.",
    )
    copy_of_name = serializers.CharField(
        read_only=True, help_text="Its name, kept when that instance is deleted."
    )
    copy_point = serializers.UUIDField(
        read_only=True, allow_null=True, help_text="The backup point the copy was made from."
    )
    copy_point_taken_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When that point was taken."
    )
    outbound_disabled = serializers.BooleanField(
        read_only=True, help_text="Outgoing and incoming mail are off (every copy starts so)."
    )

    class Meta:
        model = AtlassianInstance
        fields = [
            "id",
            "name",
            "tenant",
            "tenant_name",
            "product",
            "version",
            "status",
            "display_status",
            "status_reason",
            "status_changed_at",
            "health",
            "health_changed_at",
            "hostname",
            "context_path",
            "base_url",
            "host_port",
            "published_url",
            "host_name",
            "tier",
            "heap_min_mb",
            "heap_max_mb",
            "licenses",
            "copy_of",
            "copy_of_name",
            "copy_point",
            "copy_point_taken_at",
            "outbound_disabled",
            "created_at",
            "updated_at",
            "deleted_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance: AtlassianInstance) -> dict[str, Any]:
        return _reason_masked(self.context, super().to_representation(instance))


def _reason_masked(context: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    # The reason is often an operation's error, which may name a host's address or user.
    if data.get("status_reason") and not _viewer_sees_host_internals(context, None):
        data["status_reason"] = _host_mask(context).text(data["status_reason"])
    return data


def instance_rows(queryset: Any, context: dict[str, Any]) -> list[dict[str, Any]]:
    """What ``InstanceSerializer(many=True)`` answers for ``queryset`` (a page of the list:
    a ``values(*instance_list_columns())`` queryset or its rows), from plain rows: two queries
    (the instances with their tenant's and host's names, then their licenses), no model built
    per row."""
    instance_shape, license_shape = _instance_shapes()
    rows = list(queryset)
    licenses: dict[Any, list[dict[str, Any]]] = {row["id"]: [] for row in rows}
    if rows:
        # In the order of the prefetch the serializer reads (License's own ordering).
        for lic in License.objects.filter(instance_id__in=list(licenses)).values(
            *license_shape.columns
        ):
            licenses[lic["instance_id"]].append(license_shape.represent(lic))
    return [
        _reason_masked(context, instance_shape.represent({**row, "licenses": licenses[row["id"]]}))
        for row in rows
    ]


def instance_list_columns() -> list[str]:
    """The columns :func:`instance_rows` reads: ``queryset.values(*instance_list_columns())``."""
    return _instance_shapes()[0].columns


@cache
def _instance_shapes() -> tuple[ValuesShape, ValuesShape]:
    """:class:`ValuesShape` of InstanceSerializer (its model properties read from the row, the
    licenses given in the row) and of LicenseSummarySerializer; built once, as they depend on
    the serializers' declarations only."""

    def prop(model: Any, name: str) -> Any:
        getter = getattr(model, name).fget
        return lambda row: getter(SimpleNamespace(**row))

    expiry = prop(License, "effective_expiry")
    license_shape = ValuesShape(
        LicenseSummarySerializer(),
        computed={"days_left": lambda row: _days_until(expiry(row))},
        needs=["instance_id", "expiry_date", "maintenance_expiry_date"],
    )
    instance_shape = ValuesShape(
        InstanceSerializer(),
        computed={
            "display_status": prop(AtlassianInstance, "display_status"),
            "base_url": prop(AtlassianInstance, "base_url"),
            "published_url": prop(AtlassianInstance, "published_url"),
            "licenses": lambda row: row["licenses"],
        },
        needs=["id", "status", "health", "hostname", "context_path", "host_port", "product"],
    )
    return instance_shape, license_shape


# The columns InstanceSerializer and LicenseSummarySerializer read: the list and detail load
# only these (no database password or extra environment decrypted per row, no host keys).
INSTANCE_COLUMNS = (
    *(
        name
        for name in InstanceSerializer.Meta.fields
        if name not in {"tenant_name", "display_status", "base_url", "published_url"}
        and name not in {"host_name", "licenses"}
    ),
    "host",
    "tenant__name",
    "host__name",
)
LICENSE_SUMMARY_COLUMNS = (
    "instance",
    *(name for name in LicenseSummarySerializer.Meta.fields if name != "days_left"),
)


class InstanceCreateSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """What a new instance needs. ``tenant`` may be left out by a caller with one tenant."""

    tenant = serializers.PrimaryKeyRelatedField(
        queryset=Tenant.objects.none(),
        required=False,
        help_text="A tenant you administer; optional when you belong to exactly one.",
        error_messages={"does_not_exist": "Unknown tenant, or you are not an admin of it."},
    )
    tier = serializers.ChoiceField(
        choices=TIER_CHOICES, required=False, help_text="Defaults to the tenant's service tier."
    )
    host = serializers.UUIDField(
        required=False,
        allow_null=True,
        help_text="Platform admins only: the app host to use (default: the best ready host).",
    )

    class Meta:
        model = AtlassianInstance
        fields = [
            "tenant",
            "name",
            "product",
            "version",
            "hostname",
            "context_path",
            "heap_min_mb",
            "heap_max_mb",
            "tier",
            "host",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "request" in self.context:
            self.fields["tenant"].queryset = tenants_administered(_access(self.context))

    def validate_name(self, value: str) -> str:
        try:
            validators.validate_instance_name(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc
        return value

    def validate_hostname(self, value: str) -> str:
        # The panel's own names, reserved names and records already in a managed zone.
        try:
            validators.validate_instance_hostname(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc
        return value

    def validate_host(self, value: Any) -> Any:
        if value is None:
            return None
        access = _access(self.context)
        if not access.is_platform_admin:
            raise serializers.ValidationError("Only platform administrators choose the host.")
        host = selectors.host_list(access).filter(pk=value, role="app").first()
        if host is None:
            raise serializers.ValidationError("Unknown app host.")
        return host

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("tenant") is None:
            attrs["tenant"] = self._only_tenant()
        tier = attrs.get("tier")
        if tier:
            allowed = selectors.tiers_choosable(_access(self.context), attrs["tenant"])
            if tier not in allowed:
                raise serializers.ValidationError({"tier": selectors.tier_refusal(tier, allowed)})
        try:
            instance_validate_product_version(attrs["product"], attrs["version"])
            instance_validate_heap(
                attrs["product"], attrs.get("heap_min_mb", 1024), attrs.get("heap_max_mb", 2048)
            )
        except DjangoValidationError as exc:
            _raise_as_drf(exc)
        return attrs

    def _only_tenant(self) -> Tenant:
        access = _access(self.context)
        if access.tenant_ids is None or len(access.tenant_ids) != 1:
            raise serializers.ValidationError({"tenant": "Choose the tenant of the new instance."})
        (only,) = access.tenant_ids
        tenant = self.fields["tenant"].queryset.filter(pk=only).first()
        if tenant is None:
            raise serializers.ValidationError(
                {"tenant": "Only admins of this tenant can create instances in it."}
            )
        return tenant


class InstanceUpgradeSerializer(StrictFieldsMixin, serializers.Serializer):
    version = serializers.CharField(max_length=40, help_text="An offered version of the product.")


class InstanceResizeSerializer(StrictFieldsMixin, serializers.Serializer):
    heap_min_mb = serializers.IntegerField(min_value=0, max_value=MAX_INT)
    heap_max_mb = serializers.IntegerField(min_value=0, max_value=MAX_INT)


class InstanceDeleteSerializer(StrictFieldsMixin, serializers.Serializer):
    confirm = serializers.CharField(
        max_length=100, help_text="The instance's name, to confirm the deletion."
    )

    def validate_confirm(self, value: str) -> str:
        name = self.context["instance"].name
        if value != name:
            raise serializers.ValidationError(f"Type the instance name ({name}) to confirm.")
        return value


# --- operations -----------------------------------------------------------------------------


def _viewer_sees_host_internals(context: dict[str, Any], obj: Any) -> bool:
    """Staff see host addresses, SSH users and backup hosts in operations; customers don't."""
    if "request" in context:
        return bool(_access(context).is_staff_role)
    return selectors.shows_host_internals(obj)


def _host_mask(context: dict[str, Any]) -> Any:
    """One :func:`provisioning.selectors.host_mask` per response (lists share the context)."""
    if "_host_mask" not in context:
        context["_host_mask"] = selectors.host_mask()
    return context["_host_mask"]


class SanitizedJSONField(serializers.JSONField):
    """JSON shown through :func:`panel.sanitize.sanitize_data`: secret-named keys and
    secret-looking values (e.g. a pending host operation's encrypted password) are redacted."""

    def to_representation(self, value: Any) -> Any:
        return sanitize_data(super().to_representation(value))


class OperationStepSerializer(serializers.ModelSerializer):
    """One log line of an operation (sanitized when it was written)."""

    class Meta:
        model = OperationStep
        fields = [
            "id",
            "created_at",
            "level",
            "message",
            "command",
            "exit_code",
            "duration_ms",
            "output",
        ]
        read_only_fields = fields


class OperationTargetSerializer(serializers.Serializer):
    """What an operation works on. Host names are shown to staff only."""

    instance = serializers.UUIDField(source="instance_id", allow_null=True)
    instance_name = serializers.CharField(source="instance.name", allow_null=True)
    host_name = serializers.SerializerMethodField()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_host_name(self, obj: Operation) -> str | None:
        if obj.host_id is None or not _access(self.context).is_staff_role:
            return None
        return obj.host.name


class OperationSerializer(serializers.ModelSerializer):
    """An operation: who asked for what on which target, how far it got, and how it ended."""

    kind_label = serializers.SerializerMethodField()
    tenant = serializers.UUIDField(source="tenant_id", read_only=True, allow_null=True)
    tenant_name = serializers.CharField(source="tenant.name", read_only=True, allow_null=True)
    target = OperationTargetSerializer(source="*", read_only=True)
    requested_by = serializers.CharField(
        source="requested_by.username", read_only=True, allow_null=True
    )
    requested_by_token = serializers.CharField(
        source="requested_by_token.name", read_only=True, allow_null=True
    )
    params = SanitizedJSONField(read_only=True)
    result = SanitizedJSONField(read_only=True)
    progress_percent = serializers.IntegerField(read_only=True)
    is_terminal = serializers.BooleanField(read_only=True)
    steps = serializers.SerializerMethodField(
        help_text=f"The first {STEPS_IN_DETAIL} steps of the log when one operation is "
        "retrieved (null in lists); page on with /steps/?after=<last id>."
    )

    class Meta:
        model = Operation
        fields = [
            "id",
            "kind",
            "kind_label",
            "status",
            "tenant",
            "tenant_name",
            "target",
            "requested_by",
            "requested_by_token",
            "params",
            "result",
            "error",
            "cancel_requested",
            "progress_current",
            "progress_total",
            "progress_percent",
            "is_terminal",
            "created_at",
            "started_at",
            "finished_at",
            "steps",
        ]
        read_only_fields = fields

    def get_kind_label(self, obj: Operation) -> str:
        # Labels are registered with the kinds (panel.registry), by every app.
        return operation_kind_label(obj.kind) if obj.kind in registered_kinds() else obj.kind

    def to_representation(self, instance: Operation) -> dict[str, Any]:
        data = super().to_representation(instance)
        texts = (data["params"], data["result"], data["error"])
        if any(texts) and not _viewer_sees_host_internals(self.context, instance):
            # A customer's copy: no host addresses, SSH users or backup hosts (the steps come
            # masked from the selector already).
            mask = _host_mask(self.context)
            data["params"] = mask.data(data["params"])
            data["result"] = mask.data(data["result"])
            data["error"] = mask.text(data["error"])
        return data

    @extend_schema_field(OperationStepSerializer(many=True, allow_null=True))
    def get_steps(self, obj: Operation) -> list | None:
        if not self.context.get("include_steps"):
            return None
        # The response's one host mask, shared with the masking of params, result and error.
        mask = None if selectors.shows_host_internals(obj) else _host_mask(self.context)
        steps = selectors.operation_steps(obj, mask=mask)[:STEPS_IN_DETAIL]
        return OperationStepSerializer(steps, many=True).data


class OperationStepsQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(
        min_value=0,
        max_value=2**63 - 1,
        default=0,
        help_text="Only steps with an id greater than this (the last step id you have).",
    )


class OperationStepsPageSerializer(serializers.Serializer):
    """New steps since ``after``, and whether to keep polling."""

    operation_status = serializers.CharField()
    is_terminal = serializers.BooleanField(help_text="Stop polling once true (and no steps).")
    progress_percent = serializers.IntegerField()
    next_after = serializers.IntegerField(help_text="Pass as ?after= on the next poll.")
    steps = OperationStepSerializer(many=True)
