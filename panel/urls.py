"""Top-level routes: the web UI, the REST API under /api/, its schema and docs, and admin."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

api_patterns = [
    path("", include("tenants.api.urls")),
    path("", include("provisioning.api.urls")),
    path("", include("provisioning.hosts.api_urls")),
    path("", include("provisioning.search.api_urls")),
    path("", include("backups.api.urls")),
    path("", include("certificates.api.urls")),
    path("", include("notifications.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script from a URL: no inline script, so the
    # Content-Security-Policy needs no 'unsafe-inline' for scripts (panel/csp.py).
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

# A route that does not match under /api/ (e.g. a malformed id) answers JSON, as the API does.
handler404 = "panel.api.exceptions.page_not_found"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("", include("panel.ui_urls")),
    # Apps' URLconfs are included by dotted name: a string, not an import, so the project
    # package stays below the apps it routes to.
    path("", include("provisioning.dashboard_urls")),
    path("", include("tenants.account_urls")),
    path("", include("tenants.urls")),
    path("", include("tenants.audit_urls")),
    path("", include("provisioning.urls")),
    path("", include("provisioning.hosts.urls")),
    path("", include("provisioning.search.urls")),
    path("", include("backups.urls")),
    path("", include("certificates.urls")),
    path("", include("notifications.urls")),
]
