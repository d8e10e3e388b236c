"""UI routes for managed hosts (platform admins)."""

from django.urls import path  # noqa: F401

app_name = "hosts"
urlpatterns: list = []
