from django.apps import AppConfig


class PanelConfig(AppConfig):
    """Shared infrastructure: management commands, templates tags, the operation registry."""

    name = "panel"
    verbose_name = "Panel"

    def ready(self) -> None:
        from panel import operations

        operations.load_operation_modules()
