"""Every ``PANEL_*`` setting the code reads is declared once in ``panel/settings.py`` and read as
``settings.X``: no second default hidden in the code (``getattr(settings, "PANEL_…", 40)``),
and no read of a name that is not declared (which would only fail when that line runs)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

import panel.settings as declared

ROOT = Path(__file__).resolve().parents[2]
# Not the project's code: the virtualenv, the tests themselves, generated and runtime trees.
SKIPPED = {".venv", ".git", "tests", "node_modules", "var", "staticfiles", "test-artifacts", ".lab"}


def _sources() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if not any(part in SKIPPED or part.startswith(".") for part in parts[:-1]):
            yield path


def _is_settings(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "settings"


def _reads(path: Path) -> Iterator[tuple[int, str, bool]]:
    """``(line, setting name or "<expression>", with_default)`` for each read of a setting in
    ``path`` through ``settings.NAME`` or ``getattr(settings, …)``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _is_settings(node.value)
            and node.attr.startswith("PANEL_")
        ):
            yield node.lineno, node.attr, False
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and _is_settings(node.args[0])
        ):
            name = node.args[1]
            label = name.value if isinstance(name, ast.Constant) else "<expression>"
            if isinstance(label, str) and (label.startswith("PANEL_") or label == "<expression>"):
                yield node.lineno, label, len(node.args) > 2


def test_no_setting_is_read_with_a_default_in_code() -> None:
    # A default in code is a second default (or the only one, then the setting is invisible
    # to whoever configures the panel); getattr(settings, name, default) with a computed name
    # is a private settings helper doing the same.
    found = [
        f"{path.relative_to(ROOT)}:{line}: getattr(settings, {name!r}, …)"
        for path in _sources()
        for line, name, with_default in _reads(path)
        if with_default
    ]
    assert not found, "settings read with a default in code:\n" + "\n".join(found)


def test_every_panel_setting_read_is_declared_in_panel_settings() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in _sources()
        for line, name, _ in _reads(path)
        if name.startswith("PANEL_") and not (hasattr(declared, name) and hasattr(settings, name))
    ]
    assert not found, "settings read but not declared in panel/settings.py:\n" + "\n".join(found)
