from django.apps import AppConfig


class PanelConfig(AppConfig):
    """Shared infrastructure: management commands, templates tags, the operation registry."""

    name = "panel"
    verbose_name = "Panel"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from panel import operations, twofactor

        operations.load_operation_modules()
        user_logged_in.connect(twofactor.two_factor_on_login, dispatch_uid="panel-two-factor")
