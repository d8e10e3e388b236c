"""API routes of the tenants app: tenants, memberships, the caller's tokens, and /me/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from tenants.api import views
from tenants.audit import AuditEventViewSet

router = SimpleRouter(trailing_slash=True, use_regex_path=False)
router.register("tenants", views.TenantViewSet, basename="api-tenant")
router.register("memberships", views.MembershipViewSet, basename="api-membership")
router.register("invitations", views.InvitationViewSet, basename="api-invitation")
router.register("tokens", views.ApiTokenViewSet, basename="api-token")
router.register("audit-events", AuditEventViewSet, basename="api-audit-event")

urlpatterns = [
    path("me/", views.MeView.as_view(), name="api-me"),
    *router.urls,
]
