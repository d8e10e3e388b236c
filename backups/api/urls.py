"""API routes of the backups app."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from backups.api import views

router = SimpleRouter(trailing_slash=True, use_regex_path=False)
router.register("backups", views.BackupViewSet, basename="api-backup")
router.register("backup-policies", views.BackupPolicyViewSet, basename="api-backup-policy")
router.register("restores", views.RestoreViewSet, basename="api-restore")
router.register("restore-drills", views.RestoreDrillViewSet, basename="api-restore-drill")
router.register("point-in-time", views.RecoveryViewSet, basename="api-point-in-time")
router.register("restore-requests", views.RestoreRequestViewSet, basename="api-restore-request")
router.register("evacuations", views.EvacuationViewSet, basename="api-evacuation")
urlpatterns = [
    *router.urls,
    path("dr-dashboard/", views.DrDashboardView.as_view(), name="api-dr-dashboard"),
]
