"""Migration tests: move the test database to a past state and always bring it back.

A test that migrates backwards leaves every later migration unapplied for the tests that run
after it, and Django only re-applies what a target names: migrating tenants back to 0005
also unapplies provisioning 0006/0007 (they depend on tenants 0006), which a forward migrate to
`tenants 0006` does not bring back. So these tests end at the leaf nodes, even on failure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.state import StateApps

Targets = Sequence[tuple[str, str | None]]


def migrate_to(targets: Targets) -> StateApps:
    """Migrate the test database to `targets`; return the model state there."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(list(targets))
    # An app migrated to None has no node of its own to name in the state.
    return executor.loader.project_state(
        [(app, name) for app, name in targets if name is not None]
    ).apps


def migrate_to_latest() -> None:
    """Apply every migration (the state the rest of the suite expects)."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def pending_migrations() -> list[str]:
    """Migrations not applied to the test database (empty when it is complete)."""
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{m.app_label}.{m.name}" for m, _backwards in plan]


@contextmanager
def migrated_back_to(targets: Targets) -> Iterator[StateApps]:
    """The model state at `targets`; the database is at the latest migrations afterwards."""
    try:
        yield migrate_to(targets)
    finally:
        migrate_to_latest()
