from django.apps import AppConfig


class BackupsConfig(AppConfig):
    """Backup policies, retained backup points, restores and drills."""

    name = "backups"
