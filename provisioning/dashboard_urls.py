"""The dashboard at ``/``: a provisioning page, routed outside the app's namespace so that its
name stays plain ``dashboard`` (the login redirect and every template reverse that)."""

from django.urls import path

from provisioning import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
]
