"""UI routes of the certificates app."""

from django.urls import path  # noqa: F401

app_name = "certificates"
urlpatterns: list = []
