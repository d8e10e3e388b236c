"""Django admin for the certificates app (platform staff); secrets are never shown."""

from django.contrib import admin

from certificates.models import (
    AcmeAccount,
    Certificate,
    CertificateOrder,
    DnsProviderAccount,
    DnsRecord,
    DnsZone,
    ProxySite,
)


@admin.register(DnsProviderAccount)
class DnsProviderAccountAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "created_at")
    exclude = ("credentials",)


@admin.register(DnsZone)
class DnsZoneAdmin(admin.ModelAdmin):
    list_display = ("name", "account", "wildcard", "default_ttl")


@admin.register(DnsRecord)
class DnsRecordAdmin(admin.ModelAdmin):
    list_display = ("name", "rtype", "value", "status", "customer_managed", "instance")
    list_filter = ("status", "customer_managed")


@admin.register(AcmeAccount)
class AcmeAccountAdmin(admin.ModelAdmin):
    list_display = ("directory_url", "email", "uri")
    exclude = ("key",)


@admin.register(Certificate)
class CertificateAdmin(admin.ModelAdmin):
    list_display = ("__str__", "status", "issuer", "not_after", "renew_after", "failures")
    list_filter = ("status", "challenge")
    exclude = ("private_key",)


@admin.register(CertificateOrder)
class CertificateOrderAdmin(admin.ModelAdmin):
    list_display = ("registered_domain", "created_at", "succeeded")


@admin.register(ProxySite)
class ProxySiteAdmin(admin.ModelAdmin):
    list_display = ("instance", "host", "status", "deployed_at", "checked_at")
