"""UI routes of the certificates app."""

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
]
