"""API shapes of tenants, memberships, API tokens and the current user."""

from __future__ import annotations

from typing import Any, cast

from rest_framework import serializers

from panel.access import access_for
from panel.api.serializers import StrictFieldsMixin
from tenants.models import ApiToken, Invitation, Membership, Tenant
from tenants.selectors import tenant_list, tenants_managed
from tenants.tiers import ServiceTier
from tenants.validators import validate_single_line


def _access(context: dict[str, Any]) -> Any:
    return access_for(context["request"])


class TenantSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """A customer company."""

    class Meta:
        model = Tenant
        fields = ["id", "name", "slug", "contact_email", "default_tier", "created_at"]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {"default_tier": {"default": ServiceTier.TIER2}}


class TenantUpdateSerializer(TenantSerializer):
    """A tenant's editable facts; the slug is fixed once created."""

    class Meta(TenantSerializer.Meta):
        read_only_fields = ["id", "slug", "created_at"]
        extra_kwargs: dict = {}


class _UsernameField(serializers.CharField):
    """A user by username: written as the name, read as the user's username."""

    def to_representation(self, value: Any) -> str:
        return value.get_username() if hasattr(value, "get_username") else str(value)


class MembershipSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """A user's role in a tenant. ``tenant`` accepts only tenants the caller administers."""

    tenant = serializers.PrimaryKeyRelatedField(
        queryset=Tenant.objects.none(),
        error_messages={"does_not_exist": "Unknown tenant, or you are not an admin of it."},
    )
    tenant_name = serializers.CharField(source="tenant.name", read_only=True)
    # A username, looked up by the service: an unknown one and one that may not be added get
    # the same answer, so this cannot be used to find out which usernames exist.
    user = _UsernameField(max_length=150)

    class Meta:
        model = Membership
        fields = ["id", "tenant", "tenant_name", "user", "role", "created_at"]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {"role": {"default": Membership.Role.VIEWER}}
        # The service explains a duplicate membership itself, on the ``user`` field.
        validators: list = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "request" in self.context:
            self.fields["tenant"].queryset = tenants_managed(_access(self.context))


class InvitationSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """An invitation by email to a tenant. ``tenant`` accepts only tenants the caller
    administers; the link's secret is only in the mail, never in the API."""

    tenant: serializers.PrimaryKeyRelatedField = serializers.PrimaryKeyRelatedField(
        queryset=Tenant.objects.none(),
        error_messages={"does_not_exist": "Unknown tenant, or you are not an admin of it."},
    )
    tenant_name = serializers.CharField(source="tenant.name", read_only=True)
    invited_by = serializers.CharField(
        source="invited_by.get_username", read_only=True, allow_null=True
    )
    status = serializers.ChoiceField(choices=Invitation.Status.choices, read_only=True)

    class Meta:
        model = Invitation
        fields = [
            "id",
            "tenant",
            "tenant_name",
            "email",
            "role",
            "status",
            "invited_by",
            "created_at",
            "expires_at",
            "accepted_at",
            "revoked_at",
        ]
        read_only_fields = ["id", "created_at", "expires_at", "accepted_at", "revoked_at"]
        extra_kwargs = {"role": {"default": Membership.Role.VIEWER}}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "request" in self.context:
            field = cast(serializers.PrimaryKeyRelatedField, self.fields["tenant"])
            field.queryset = tenants_managed(_access(self.context))


class ApiTokenSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """One of the caller's API tokens (the secret itself is never shown again)."""

    tenant = serializers.PrimaryKeyRelatedField(
        queryset=Tenant.objects.none(),
        allow_null=True,
        default=None,
        help_text="The tenant this token works for; staff may leave it empty (cross-tenant).",
        error_messages={"does_not_exist": "Unknown tenant, or you are not a member of it."},
    )
    tenant_name = serializers.CharField(source="tenant.name", read_only=True, allow_null=True)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "scope",
            "tenant",
            "tenant_name",
            "prefix",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "is_active",
        ]
        read_only_fields = [
            "id",
            "prefix",
            "created_at",
            "last_used_at",
            "revoked_at",
            "is_active",
        ]
        extra_kwargs = {
            "scope": {"default": ApiToken.Scope.READ},
            "name": {"validators": [validate_single_line]},
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "request" in self.context:
            self.fields["tenant"].queryset = tenant_list(_access(self.context))


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    """A token just created: the only response that ever carries the clear secret."""

    token = serializers.SerializerMethodField(
        help_text="The secret to send as 'Authorization: Bearer <token>'. Shown only once."
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]

    def get_token(self, obj: ApiToken) -> str:
        return self.context["secret"]


class MeSerializer(serializers.Serializer):
    """The caller: who they are, where they belong, and the token in use (if any)."""

    username = serializers.CharField()
    email = serializers.EmailField(allow_blank=True)
    first_name = serializers.CharField(allow_blank=True)
    last_name = serializers.CharField(allow_blank=True)
    staff_roles = serializers.ListField(
        child=serializers.CharField(),
        help_text="'support' and/or 'platform-admin' (none when a tenant-bound token is used).",
    )
    can_write = serializers.BooleanField(
        help_text="Whether the caller may change anything: a token or session that writes, "
        "and the admin role in a tenant (see memberships) or a staff role. False for a viewer "
        "and for a read-only token."
    )
    memberships = MembershipSerializer(many=True)
    token = ApiTokenSerializer(allow_null=True)
