"""UI routes of the tenants app: API tokens, the tenant switcher, the staff list of tenants,
members and invitations."""

from django.urls import path

from tenants import views

app_name = "tenants"
urlpatterns = [
    path("tokens/", views.token_list_view, name="token_list"),
    path("tokens/<uuid:pk>/revoke/", views.token_revoke_view, name="token_revoke"),
    path("tenant/switch/", views.tenant_switch_view, name="tenant_switch"),
    path("staff/tenants/", views.staff_tenant_list, name="staff_tenants"),
    path("members/", views.member_list_view, name="member_list"),
    path(
        "members/invitations/<uuid:pk>/revoke/",
        views.invitation_revoke_view,
        name="invitation_revoke",
    ),
    path("invitations/<str:token>/", views.invitation_accept_view, name="invitation_accept"),
]
