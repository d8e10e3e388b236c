"""UI routes of the audit log."""

from django.urls import path

from tenants import audit

app_name = "audit"
urlpatterns = [
    path("audit/", audit.audit_page, name="list"),
    path("audit/export.csv", audit.audit_export, name="export"),
]
