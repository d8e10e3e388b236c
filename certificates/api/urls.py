"""API routes of the certificates app."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from certificates.api import views

router = DefaultRouter(trailing_slash=True)
router.register("certificates", views.CertificateViewSet, basename="api-certificate")
router.register("dns-accounts", views.DnsProviderAccountViewSet, basename="api-dns-account")
router.register("dns-zones", views.DnsZoneViewSet, basename="api-dns-zone")

urlpatterns = [
    path("instances/<uuid:pk>/endpoint/", views.instance_endpoint, name="api-instance-endpoint"),
    path(
        "instances/<uuid:pk>/apache-config/",
        views.instance_apache_config,
        name="api-instance-apache-config",
    ),
    path(
        "instances/<uuid:pk>/certificate/renew/",
        views.instance_certificate_renew,
        name="api-instance-certificate-renew",
    ),
    path(
        "instances/<uuid:pk>/proxy/deploy/",
        views.instance_proxy_deploy,
        name="api-instance-proxy-deploy",
    ),
    path(
        "instances/<uuid:pk>/dns/update/", views.instance_dns_update, name="api-instance-dns-update"
    ),
    *router.urls,
]
