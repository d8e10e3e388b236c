"""Top-level routes: the web UI, the REST API under /api/, its schema and docs, and admin."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

# The refusals every operation can answer (401, 403, 429, bad pages and bodies), and times of
# day as DRF writes them, are added to the served schema by postprocessing hooks (kept with the
# default enum hook).
SCHEMA_SETTINGS = {
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "panel.api.schema.common_refusals",
        "panel.api.schema.times_of_day",
    ]
}

api_patterns = [
    path("", include("tenants.api.urls")),
    path("", include("provisioning.api.urls")),
    path("", include("provisioning.api.host_urls")),
    path("", include("backups.api.urls")),
    path("", include("certificates.api.urls")),
    path("schema/", SpectacularAPIView.as_view(custom_settings=SCHEMA_SETTINGS), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

# A route that does not match under /api/ (e.g. a malformed id) answers JSON, as the API does.
handler404 = "panel.api.exceptions.page_not_found"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("", include("panel.ui_urls")),
    path("", include("tenants.urls")),
    path("", include("tenants.audit_urls")),
    path("", include("provisioning.urls")),
    path("", include("provisioning.host_urls")),
    path("", include("backups.urls")),
    path("", include("certificates.urls")),
]
