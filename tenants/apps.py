from django.apps import AppConfig


class TenantsConfig(AppConfig):
    """Customers (tenants), their members, API tokens and the audit log."""

    name = "tenants"
