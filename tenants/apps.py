"""The tenants app: customers, their members, API tokens, two-factor and the audit log."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _support_can_view_everything(sender: AppConfig, **kwargs: object) -> None:
    """Support staff may view (never change) every model in the Django admin; re-applied after
    each migrate so new apps' models are covered too."""
    from django.contrib.auth.models import Group, Permission

    from panel.access import PLATFORM_ADMIN_GROUP, SUPPORT_GROUP

    Group.objects.get_or_create(name=PLATFORM_ADMIN_GROUP)
    support, _ = Group.objects.get_or_create(name=SUPPORT_GROUP)
    support.permissions.add(*Permission.objects.filter(codename__startswith="view_"))


class TenantsConfig(AppConfig):
    """Customers (tenants), their members, API tokens and the audit log."""

    name = "tenants"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from tenants import twofactor

        user_logged_in.connect(twofactor.two_factor_on_login, dispatch_uid="panel-two-factor")
        # Notifications (failed operations, the scan and the retry sweep) are registered by the
        # notifications app's ready().
        # Not limited to this app: the other apps' permissions are created by their own signal.
        post_migrate.connect(_support_can_view_everything, dispatch_uid="support-view-perms")
