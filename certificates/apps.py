from django.apps import AppConfig


class CertificatesConfig(AppConfig):
    """DNS zones and records, ACME certificates and the reverse proxy."""

    name = "certificates"
