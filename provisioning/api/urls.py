"""API routes of the provisioning app: instances (and their actions, their resource use),
licenses, operations, and hosts' resource use."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from provisioning.api import usage, views

router = SimpleRouter(trailing_slash=True, use_regex_path=False)
router.register("instances", views.InstanceViewSet, basename="api-instance")
router.register("licenses", views.LicenseViewSet, basename="api-license")
router.register("operations", views.OperationViewSet, basename="api-operation")
urlpatterns = [
    *router.urls,
    path(
        "instances/<uuid:pk>/usage/", usage.InstanceUsageView.as_view(), name="api-instance-usage"
    ),
    path("hosts/<uuid:pk>/usage/", usage.HostUsageView.as_view(), name="api-host-usage"),
]
