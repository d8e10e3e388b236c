"""UI routes of the backups app."""

from django.urls import path

from backups import views

app_name = "backups"
urlpatterns = [
    path("instances/<uuid:pk>/backups/", views.instance_backups, name="instance_backups"),
    path("instances/<uuid:pk>/backups/start/", views.backup_start_view, name="backup_start"),
    path(
        "instances/<uuid:pk>/backups/request-restore/",
        views.restore_request_view,
        name="restore_request",
    ),
    path("instances/<uuid:pk>/backups/restore/", views.restore_view, name="restore"),
    path("instances/<uuid:pk>/backups/policy/", views.policy_view, name="policy"),
    path(
        "instances/<uuid:pk>/backups/point-in-time/enable/",
        views.wal_enable_view,
        name="wal_enable",
    ),
    path(
        "instances/<uuid:pk>/backups/point-in-time/base-backup/",
        views.wal_base_view,
        name="wal_base",
    ),
    path(
        "instances/<uuid:pk>/backups/point-in-time/restore/",
        views.restore_time_view,
        name="restore_time",
    ),
    path("hosts/<uuid:pk>/evacuate/", views.host_evacuate_view, name="host_evacuate"),
    path("hosts/<uuid:pk>/purge-fenced/", views.host_purge_fenced_view, name="host_purge_fenced"),
    path("staff/dr/", views.dr_dashboard_view, name="dr_dashboard"),
    path("staff/dr/drills/", views.drill_start_view, name="drill_start"),
    path("staff/restore-requests/", views.restore_requests_view, name="restore_requests"),
    path(
        "staff/restore-requests/<uuid:pk>/",
        views.restore_request_handle_view,
        name="restore_request_handle",
    ),
]
