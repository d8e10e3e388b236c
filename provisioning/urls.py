"""UI routes of the provisioning app."""

from django.urls import path  # noqa: F401

app_name = "provisioning"
urlpatterns: list = []
