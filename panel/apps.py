"""The panel app: shared infrastructure, the registry and the operation runner."""

from django.apps import AppConfig


class PanelConfig(AppConfig):
    """Shared infrastructure: management commands, templates tags, the operation registry."""

    name = "panel"
    verbose_name = "Panel"

    def ready(self) -> None:
        from panel import operations

        # Each app imports its own operations module from its ready(); these are extra handler
        # modules named in settings (tests' diagnostic kind). They need no models.
        operations.operation_modules_load()
