"""Forms of the tenants pages: API tokens."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone

from panel.access import Access
from tenants.models import ApiToken
from tenants.validators import validate_single_line


class TokenCreateForm(forms.Form):
    """A new API token: a name, read or write, one tenant (or all, for staff), an expiry."""

    # ``token_create``'s arguments that this form holds under another name (for its errors).
    SERVICE_FIELDS = {"expires_at": "expires_on"}

    name = forms.CharField(
        max_length=100,
        validators=[validate_single_line],
        help_text="What the token is for, e.g. 'CI deploys'.",
    )
    scope = forms.ChoiceField(choices=ApiToken.Scope.choices, initial=ApiToken.Scope.READ)
    tenant = forms.ModelChoiceField(queryset=None, required=True)  # type: ignore[arg-type]
    expires_on = forms.DateField(
        label="Valid until",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional. The token stops working at the end of this day (UTC).",
    )

    def __init__(self, *args: Any, access: Access, tenants: QuerySet, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "token")
        super().__init__(*args, **kwargs)
        field = self.fields["tenant"]
        field.queryset = tenants
        if access.is_staff_role:
            field.required = False
            field.empty_label = "All tenants (staff)"
            field.help_text = "Staff tokens may work across every tenant."
        else:
            field.empty_label = None if tenants.count() == 1 else "Choose a tenant…"
        self.fields["name"].widget.attrs["autocomplete"] = "off"

    def clean_expires_on(self) -> Any:
        value = self.cleaned_data.get("expires_on")
        if value is not None and value < timezone.now().date():
            raise ValidationError("Choose today or a later day.")
        return value

    def expires_at(self) -> datetime | None:
        day = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)
