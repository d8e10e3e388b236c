"""UI routes of the provisioning app: instances, their actions and licenses, operations."""

from django.urls import path

from provisioning import views

app_name = "provisioning"
urlpatterns = [
    path("instances/", views.instance_list_view, name="instance_list"),
    path("instances/new/", views.instance_create_view, name="instance_create"),
    path("instances/<uuid:pk>/", views.instance_detail, name="instance_detail"),
    path(
        "instances/<uuid:pk>/actions/<slug:action>/",
        views.instance_action_view,
        name="instance_action",
    ),
    path(
        "instances/<uuid:pk>/mail/enable/",
        views.instance_outbound_enable_view,
        name="instance_outbound_enable",
    ),
    path(
        "instances/<uuid:pk>/database/password/",
        views.instance_db_password_view,
        name="instance_db_password",
    ),
    path("instances/<uuid:pk>/licenses/new/", views.license_add_view, name="license_add"),
    path("instances/<uuid:pk>/logs/", views.instance_logs_view, name="instance_logs"),
    path("operations/", views.operation_list_view, name="operation_list"),
    path("operations/<uuid:pk>/", views.operation_detail, name="operation_detail"),
    path("operations/<uuid:pk>/log/", views.operation_log, name="operation_log"),
    path("operations/<uuid:pk>/cancel/", views.operation_cancel_view, name="operation_cancel"),
    path("staff/instances/", views.staff_instance_search, name="staff_instances"),
]
