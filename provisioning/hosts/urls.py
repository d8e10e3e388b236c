"""UI routes for managed hosts (platform admins)."""

from django.urls import path

from provisioning.hosts import views

app_name = "hosts"
urlpatterns = [
    path("hosts/", views.host_list_view, name="list"),
    path("hosts/enrol/", views.host_enrol_view, name="enrol"),
    path("hosts/<uuid:pk>/", views.host_detail, name="detail"),
    path("hosts/<uuid:pk>/trust/", views.host_trust_view, name="trust"),
    path("hosts/<uuid:pk>/provision/", views.host_provision_view, name="provision"),
    path("hosts/<uuid:pk>/health/", views.host_health_view, name="health"),
]
