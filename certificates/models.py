"""Models of the certificates app (filled in by its own issue)."""
