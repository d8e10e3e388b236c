"""API of tenants, memberships, the caller's tokens and the current user.

Thin: rows come from selectors (``for_user`` scoped), every change goes through a service.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from panel.access import Access, access_for
from panel.api.mixins import ScopedQuerysetMixin
from panel.api.permissions import PanelPermission, PlatformAdminForChanges, TenantAdminForChanges
from panel.api.schema import FORBIDDEN, NOT_FOUND, VALIDATION_ERROR
from panel.api.serializers import request_body_refuse_fields
from tenants import selectors, services
from tenants.api.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenSerializer,
    InvitationSerializer,
    MembershipSerializer,
    MeSerializer,
    TenantSerializer,
    TenantUpdateSerializer,
)
from tenants.models import ApiToken, Invitation, Membership


class MembershipFilter(django_filters.FilterSet):
    tenant = django_filters.UUIDFilter(field_name="tenant_id")
    role = django_filters.ChoiceFilter(choices=Membership.Role.choices)

    class Meta:
        model = Membership
        fields = ["tenant", "role"]


class MeView(APIView):
    """The current user, their memberships and staff roles, and the token in use."""

    permission_classes = [PanelPermission]

    @extend_schema(responses={200: MeSerializer}, operation_id="me_retrieve")
    def get(self, request: Request) -> Response:
        access = access_for(request)
        memberships = selectors.membership_list(access).filter(user=request.user)
        roles = [
            name
            for name, held in (
                ("support", access.is_support),
                ("platform-admin", access.is_platform_admin),
            )
            if held
        ]
        user = request.user
        data = {
            "username": user.get_username(),
            "email": user.email,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "staff_roles": roles,
            "can_write": access.changes_anything,
            "memberships": memberships,
            "token": access.token,
        }
        return Response(MeSerializer(data, context={"request": request}).data)


@extend_schema_view(
    create=extend_schema(responses={201: TenantSerializer, 400: VALIDATION_ERROR, 403: FORBIDDEN}),
    update=extend_schema(
        request=TenantUpdateSerializer,
        responses={200: TenantSerializer, 400: VALIDATION_ERROR, 403: FORBIDDEN, 404: NOT_FOUND},
    ),
    partial_update=extend_schema(
        request=TenantUpdateSerializer,
        responses={200: TenantSerializer, 400: VALIDATION_ERROR, 403: FORBIDDEN, 404: NOT_FOUND},
    ),
    retrieve=extend_schema(responses={200: TenantSerializer, 404: NOT_FOUND}),
)
class TenantViewSet(
    ScopedQuerysetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Tenants the caller sees (staff: all). Platform admins create and change them."""

    permission_classes = [PanelPermission, PlatformAdminForChanges]
    lookup_value_converter = "uuid"
    search_fields = ["name", "slug"]
    ordering_fields = ["name", "slug", "created_at"]

    def scoped_queryset(self, access: Access) -> QuerySet:
        return selectors.tenant_list(access)

    def get_serializer_class(self) -> type:
        if self.action in ("update", "partial_update"):
            return TenantUpdateSerializer
        return TenantSerializer

    def perform_create(self, serializer: TenantSerializer) -> None:
        serializer.instance = services.tenant_create(actor=self.access, **serializer.validated_data)

    def perform_update(self, serializer: TenantUpdateSerializer) -> None:
        serializer.instance = services.tenant_update(
            actor=self.access, tenant=serializer.instance, **serializer.validated_data
        )


@extend_schema_view(
    create=extend_schema(
        responses={201: MembershipSerializer, 400: VALIDATION_ERROR, 403: FORBIDDEN}
    ),
    retrieve=extend_schema(responses={200: MembershipSerializer, 404: NOT_FOUND}),
    destroy=extend_schema(responses={204: None, 403: FORBIDDEN, 404: NOT_FOUND}),
)
class MembershipViewSet(
    ScopedQuerysetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Who belongs to the caller's tenants. Tenant admins remove members and invite new ones
    (``/api/invitations/``); only platform admins add an account by username; support staff
    read them (README, Roles)."""

    serializer_class = MembershipSerializer
    permission_classes = [PanelPermission, TenantAdminForChanges]
    lookup_value_converter = "uuid"
    filterset_class = MembershipFilter
    search_fields = ["user__username", "tenant__name"]
    ordering_fields = ["created_at", "role"]

    def scoped_queryset(self, access: Access) -> QuerySet:
        return selectors.membership_list(access)

    def perform_create(self, serializer: MembershipSerializer) -> None:
        data = serializer.validated_data
        serializer.instance = services.membership_create(
            actor=self.access, tenant=data["tenant"], username=data["user"], role=data["role"]
        )

    def perform_destroy(self, instance: Membership) -> None:
        services.membership_delete(actor=self.access, membership=instance)


@extend_schema_view(
    create=extend_schema(
        responses={201: InvitationSerializer, 400: VALIDATION_ERROR, 403: FORBIDDEN},
        description="Invite an email address to a tenant: the accept link goes by mail only. "
        "The answer does not depend on whether an account has this address.",
    ),
    retrieve=extend_schema(responses={200: InvitationSerializer, 404: NOT_FOUND}),
    destroy=extend_schema(
        responses={204: None, 403: FORBIDDEN, 404: NOT_FOUND},
        description="Withdraw the invitation (its link stops working; it stays listed).",
    ),
)
class InvitationViewSet(
    ScopedQuerysetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Invitations by email to the caller's tenants: tenant admins and platform admins invite
    and withdraw; support reads; viewers see none."""

    serializer_class = InvitationSerializer
    permission_classes = [PanelPermission, TenantAdminForChanges]
    lookup_value_converter = "uuid"
    search_fields = ["email", "tenant__name"]
    ordering_fields = ["created_at", "expires_at"]

    def scoped_queryset(self, access: Access) -> QuerySet:
        return selectors.invitation_list(access)

    def perform_create(self, serializer: Any) -> None:
        data = serializer.validated_data
        serializer.instance = services.invitation_create(
            actor=self.access, tenant=data["tenant"], email=data["email"], role=data["role"]
        )

    def perform_destroy(self, instance: Invitation) -> None:
        services.invitation_revoke(actor=self.access, invitation=instance)


@extend_schema_view(
    create=extend_schema(
        request=ApiTokenSerializer,
        responses={201: ApiTokenCreatedSerializer, 400: VALIDATION_ERROR, 403: FORBIDDEN},
        description="Create a token. The response's `token` is the secret, shown only this once.",
    ),
    retrieve=extend_schema(responses={200: ApiTokenSerializer, 404: NOT_FOUND}),
    destroy=extend_schema(
        responses={204: None, 403: FORBIDDEN, 404: NOT_FOUND},
        description="Revoke the token (it stays listed as revoked).",
    ),
)
class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The caller's own API tokens: private to their owner, nobody else lists or revokes them."""

    serializer_class = ApiTokenSerializer
    permission_classes = [PanelPermission]
    lookup_value_converter = "uuid"
    ordering_fields = ["created_at", "name", "last_used_at"]

    def get_queryset(self) -> QuerySet:
        if not self.request.user.is_authenticated:  # the schema generator's anonymous request
            return ApiToken.objects.none()
        qs = selectors.token_list(self.request.user)
        token = access_for(self.request).token
        if token is not None and token.tenant_id is not None:
            # Through a tenant-bound token the caller sees only that tenant's tokens.
            qs = qs.filter(tenant_id=token.tenant_id)
        return qs

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, secret = services.token_create(
            actor=access_for(request), user=request.user, **serializer.validated_data
        )
        data = ApiTokenCreatedSerializer(
            token, context={**self.get_serializer_context(), "secret": secret}
        ).data
        return Response(data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Any) -> None:
        services.token_revoke(actor=access_for(self.request), token=instance)

    @extend_schema(
        request=None, responses={200: ApiTokenSerializer, 403: FORBIDDEN, 404: NOT_FOUND}
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        """Revoke the token: it stops working at once and stays listed as revoked."""
        token = self.get_object()
        request_body_refuse_fields(request)
        token = services.token_revoke(actor=access_for(request), token=token)
        return Response(self.get_serializer(token).data)


__all__ = ["ApiTokenViewSet", "InvitationViewSet", "MeView", "MembershipViewSet", "TenantViewSet"]
