"""panelctl: a command-line client for the panel's REST API (a pure HTTP client: it imports
neither Django nor any panel app, and finds its routes in the served OpenAPI schema)."""

__version__ = "0.1.0"
