"""Form of the notification settings page: recipients, events, webhook. The service
(:func:`notifications.services.notification_preference_update`) re-checks everything."""

from __future__ import annotations

from typing import Any

from django import forms

from notifications.models import (
    NotificationPreference,
    platform_event_choices,
    tenant_event_choices,
)
from notifications.services import notification_recipients_clean, webhook_url_check


class NotificationPreferenceForm(forms.Form):
    """Who gets which notifications, by email and by a signed webhook."""

    email_enabled = forms.BooleanField(label="Send notifications by email", required=False)
    recipients = forms.CharField(
        label="Email recipients",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"}),
        help_text="One address per line (at most 20).",
    )
    events = forms.MultipleChoiceField(
        label="Tell us when",
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    webhook_enabled = forms.BooleanField(label="Call a webhook", required=False)
    webhook_url = forms.URLField(
        label="Webhook URL",
        required=False,
        max_length=500,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text="The panel POSTs a JSON document here for every notification.",
    )
    webhook_secret = forms.CharField(
        label="Shared secret",
        required=False,
        min_length=16,
        max_length=200,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Signs each webhook (HMAC-SHA256). At least 16 characters, e.g. from "
        "`openssl rand -hex 32`.",
    )

    def __init__(
        self, *args: Any, preference: NotificationPreference, platform: bool, **kwargs: Any
    ) -> None:
        self.preference = preference
        if not args and "data" not in kwargs:
            kwargs.setdefault(
                "initial",
                {
                    "email_enabled": preference.email_enabled,
                    "recipients": preference.recipients,
                    "events": list(preference.events or []),
                    "webhook_enabled": preference.webhook_enabled,
                    "webhook_url": preference.webhook_url,
                },
            )
        super().__init__(*args, **kwargs)
        self.fields["events"].choices = (
            platform_event_choices() if platform else tenant_event_choices()
        )
        if preference.webhook_secret:
            self.fields[
                "webhook_secret"
            ].help_text = (
                "A secret is set. Leave this empty to keep it, or type a new one to replace it."
            )
        if platform:
            self.fields["recipients"].help_text += " Empty: every platform administrator's address."

    def clean_recipients(self) -> list[str]:
        return notification_recipients_clean(
            self.cleaned_data["recipients"].replace(",", "\n").splitlines()
        )

    def clean_webhook_url(self) -> str:
        url = self.cleaned_data["webhook_url"]
        if url:
            webhook_url_check(url)
        return url

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("webhook_enabled") and not data.get("webhook_url"):
            self.add_error("webhook_url", "Give the URL to call, or turn the webhook off.")
        if (
            data.get("webhook_enabled")
            and not data.get("webhook_secret")
            and not self.preference.webhook_secret
            and "webhook_secret" not in self.errors
        ):
            self.add_error("webhook_secret", "Set a shared secret to sign the webhooks.")
        return data
