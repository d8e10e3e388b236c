"""API routes for managed hosts (platform admins only)."""

from rest_framework.routers import SimpleRouter

from provisioning.hosts.api import HostViewSet

router = SimpleRouter(trailing_slash=True)
router.register("hosts", HostViewSet, basename="api-host")
urlpatterns = router.urls
