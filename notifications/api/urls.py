"""API routes of the notifications app: a tenant's notification settings by the tenant's id,
and the platform staff's at ``notification-settings/platform/``."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from notifications.api.views import NotificationSettingsViewSet

router = SimpleRouter(trailing_slash=True, use_regex_path=False)
router.register(
    "notification-settings", NotificationSettingsViewSet, basename="api-notification-setting"
)

urlpatterns = [
    path(
        "notification-settings/platform/",
        NotificationSettingsViewSet.as_view(
            {"get": "retrieve", "put": "update", "patch": "partial_update"}, platform=True
        ),
        name="api-notification-setting-platform",
    ),
    path(
        "notification-settings/platform/test/",
        NotificationSettingsViewSet.as_view({"post": "send_test"}, platform=True),
        name="api-notification-setting-platform-test",
    ),
    path(
        "notification-settings/platform/deliveries/",
        NotificationSettingsViewSet.as_view({"get": "deliveries"}, platform=True),
        name="api-notification-setting-platform-deliveries",
    ),
    *router.urls,
]
