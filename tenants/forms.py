"""Forms of the tenants pages: API tokens, invitations by email and accepting them."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any, cast

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import SetPasswordForm
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone

from panel.access import Access
from tenants.models import ApiToken, Membership, Tenant
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


class InvitationCreateForm(forms.Form):
    """Invite a person by email to one of the tenants the caller manages, with a role."""

    email = forms.EmailField(help_text="The invitation's link is sent to this address.")
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.VIEWER)
    tenant: forms.ModelChoiceField = forms.ModelChoiceField(queryset=Tenant.objects.none())

    def __init__(self, *args: Any, tenants: QuerySet, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "invite")
        super().__init__(*args, **kwargs)
        field = cast(forms.ModelChoiceField, self.fields["tenant"])
        field.queryset = tenants
        field.empty_label = None if tenants.count() == 1 else "Choose a tenant…"
        self.fields["email"].widget.attrs["autocomplete"] = "off"


class InvitationSignupForm(SetPasswordForm):
    """A new person's account from an invitation: a username and a password (twice)."""

    field_order = ["username", "new_password1", "new_password2"]

    username = forms.CharField(
        max_length=150,
        validators=[validate_single_line],
        help_text="Letters, digits and @/./+/-/_ only.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # SetPasswordForm validates the password against this (unsaved) user.
        super().__init__(get_user_model()(), *args, **kwargs)
        self.fields["username"].widget.attrs["autocomplete"] = "username"
