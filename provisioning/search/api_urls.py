"""API route of the staff search."""

from django.urls import path

from provisioning.search.api import StaffSearchView

urlpatterns = [
    path("search/", StaffSearchView.as_view(), name="api-search"),
]
