"""UI routes for managed hosts (platform admins)."""

from django.urls import path

from provisioning import host_views

app_name = "hosts"
urlpatterns = [
    path("hosts/", host_views.host_list_view, name="list"),
    path("hosts/enrol/", host_views.host_enrol_view, name="enrol"),
    path("hosts/<uuid:pk>/", host_views.host_detail, name="detail"),
    path("hosts/<uuid:pk>/trust/", host_views.host_trust_view, name="trust"),
    path("hosts/<uuid:pk>/provision/", host_views.host_provision_view, name="provision"),
    path("hosts/<uuid:pk>/health/", host_views.host_health_view, name="health"),
]
