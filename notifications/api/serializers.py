"""API shapes of the notifications app: a tenant's (or the platform staff's) notification
settings, a test notification and the delivery log. The webhook secret is write-only."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from notifications.models import (
    NotificationDelivery,
    NotificationEvent,
    NotificationPreference,
    platform_event_choices,
    tenant_event_choices,
)
from notifications.services import MAX_RECIPIENTS, notification_recipients_clean
from panel.api.serializers import StrictFieldsMixin


class NotificationEventChoiceSerializer(serializers.Serializer):
    """An event an audience can choose to hear about."""

    key = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field, not Field.label


class NotificationSettingsSerializer(StrictFieldsMixin, serializers.Serializer):
    """Who is told about which events, by email and by a signed webhook. A tenant without
    settings of its own answers its defaults (``chosen`` false): every event by email to its
    contact address. ``webhook_secret`` is write-only; empty or left out keeps the stored
    one."""

    tenant = serializers.UUIDField(
        source="tenant_id", read_only=True, allow_null=True, help_text="Null: platform staff."
    )
    tenant_name = serializers.CharField(
        source="tenant.name", read_only=True, allow_null=True, default=None
    )
    chosen = serializers.SerializerMethodField(
        help_text="False while the defaults apply (nothing was saved yet)."
    )
    email_enabled = serializers.BooleanField()
    recipients = serializers.ListField(
        source="recipient_list",
        child=serializers.CharField(max_length=254),
        max_length=MAX_RECIPIENTS * 5,
        help_text=f"Email addresses (at most {MAX_RECIPIENTS}; duplicates and case are "
        "folded). Platform staff: empty means every platform administrator's address.",
    )
    events = serializers.ListField(
        child=serializers.CharField(max_length=40),
        help_text="Keys of the events to tell about; `events_available` lists them.",
    )
    events_available = serializers.SerializerMethodField()
    webhook_enabled = serializers.BooleanField()
    webhook_url = serializers.URLField(
        allow_blank=True,
        max_length=500,
        help_text="Public http(s) address on an allowed port; checked when saved.",
    )
    webhook_secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        min_length=16,
        max_length=200,
        trim_whitespace=False,
        help_text="Signs each webhook (HMAC-SHA256). Never returned; empty keeps the stored one.",
    )
    webhook_secret_set = serializers.SerializerMethodField()
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)

    def get_chosen(self, obj: NotificationPreference) -> bool:
        return not obj._state.adding

    @extend_schema_field(NotificationEventChoiceSerializer(many=True))
    def get_events_available(self, obj: NotificationPreference) -> list[dict[str, str]]:
        choices = platform_event_choices() if obj.tenant_id is None else tenant_event_choices()
        return [{"key": key, "label": label} for key, label in choices]

    def get_webhook_secret_set(self, obj: NotificationPreference) -> bool:
        return bool(obj.webhook_secret)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["events"] = sorted(data["events"] or [])
        return data

    def validate_recipients(self, value: list[str]) -> list[str]:
        try:
            return notification_recipients_clean(value)
        except ValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc


class NotificationDeliverySerializer(serializers.ModelSerializer):
    """One delivery of a notification by email or webhook, and how it went."""

    event = serializers.CharField(source="notification.event", read_only=True)
    subject = serializers.CharField(source="notification.subject", read_only=True)
    url = serializers.CharField(source="notification.url", read_only=True)

    class Meta:
        model = NotificationDelivery
        fields = [
            "id",
            "event",
            "subject",
            "url",
            "channel",
            "destination",
            "status",
            "attempts",
            "response_code",
            "last_error",
            "created_at",
            "last_attempt_at",
            "next_attempt_at",
            "delivered_at",
        ]
        read_only_fields = fields


class NotificationTestSerializer(serializers.ModelSerializer):
    """A test notification just sent, with a delivery per channel set up (none: nothing was
    sent, turn on email or a webhook first)."""

    deliveries = NotificationDeliverySerializer(many=True, read_only=True)

    class Meta:
        model = NotificationEvent
        fields = ["id", "event", "subject", "deliveries"]
        read_only_fields = fields
