from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    """Managed hosts, Atlassian instances, licenses and the operations that change them."""

    name = "provisioning"
