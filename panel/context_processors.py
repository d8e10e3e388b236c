"""Template context shared by every page: the caller's access (roles, tenants)."""

from __future__ import annotations

from typing import Any

from panel.access import access_for


def panel(request: Any) -> dict[str, Any]:
    return {"access": access_for(request)}
