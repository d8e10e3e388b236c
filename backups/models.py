"""Models of the backups app (filled in by its own issue)."""
