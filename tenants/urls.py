"""UI routes of the tenants app: API tokens and the staff list of tenants."""

from django.urls import path

from tenants import views

app_name = "tenants"
urlpatterns = [
    path("tokens/", views.token_list_view, name="token_list"),
    path("tokens/<uuid:pk>/revoke/", views.token_revoke_view, name="token_revoke"),
    path("staff/tenants/", views.staff_tenant_list, name="staff_tenants"),
]
