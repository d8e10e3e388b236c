"""UI routes of the certificates app: an instance's address, and the DNS provider accounts and
zones of platform admins."""

from django.urls import path

from certificates import views

app_name = "certificates"
urlpatterns = [
    path("instances/<uuid:pk>/proxy-config/", views.instance_proxy_config, name="proxy_config"),
    path("instances/<uuid:pk>/apache.conf", views.instance_apache_export, name="apache_export"),
    path(
        "instances/<uuid:pk>/certificate/renew/",
        views.instance_certificate_renew,
        name="certificate_renew",
    ),
    path("instances/<uuid:pk>/proxy/deploy/", views.instance_proxy_deploy, name="proxy_deploy"),
    path("instances/<uuid:pk>/dns/update/", views.instance_dns_update, name="dns_update"),
    path(
        "instances/<uuid:pk>/endpoint/check/", views.instance_endpoint_check, name="endpoint_check"
    ),
    path("dns/", views.dns_overview, name="dns_overview"),
    path("dns/accounts/new/", views.dns_account_create, name="dns_account_create"),
    path("dns/accounts/<uuid:pk>/", views.dns_account_detail, name="dns_account_detail"),
    path("dns/accounts/<uuid:pk>/check/", views.dns_account_check, name="dns_account_check"),
    path("dns/accounts/<uuid:pk>/delete/", views.dns_account_delete, name="dns_account_delete"),
    path("dns/zones/new/", views.dns_zone_create, name="dns_zone_create"),
    path("dns/zones/<uuid:pk>/delete/", views.dns_zone_delete, name="dns_zone_delete"),
]
