"""API routes of the provisioning app: instances (and their actions), licenses, operations."""

from rest_framework.routers import SimpleRouter

from provisioning.api import views

router = SimpleRouter(trailing_slash=True, use_regex_path=False)
router.register("instances", views.InstanceViewSet, basename="api-instance")
router.register("licenses", views.LicenseViewSet, basename="api-license")
router.register("operations", views.OperationViewSet, basename="api-operation")
urlpatterns = router.urls
