"""Every product restored onto another host: a point of an instance on app1, with marker data,
restored into a new instance on app2, runs there on its own database and base URL.

The stand-ins keep the images' rule that a home's database config file is written on the first
start only, so a copy reaches RUNNING only if the restore pointed the copied file at the copy's
database (with the source's database named in it, the copy's own ``db`` has no such database).
Crowd is set up first through its setup step (it ignores database variables); Bitbucket's
``shared/bitbucket.properties`` is written as a database migration would, so its rewrite is
seen too. The six products run as parallel operations (different instances never share a
lock), built once for the module; each test then reads one product's outcome.
"""

from __future__ import annotations

import secrets
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connections

from backups.models import Backup
from backups.restore import BASE_URL_READ, _family
from backups.services import backup_start, restore_start
from panel.access import access_for_user
from provisioning.compose import instance_jdbc_url
from provisioning.homefiles import db_config_read
from provisioning.models import AtlassianInstance, Host, InstanceStatus, Operation
from provisioning.products import spec_for
from tests.support.backup_lab import LabWorld, create_instance, sh
from tests.support.lab import run_operation, step_text

pytestmark = [pytest.mark.lab, pytest.mark.django_db]

# product: (version, name part, context path). Crowd lives under /crowd (its image's default).
PRODUCTS: dict[str, tuple[str, str, str]] = {
    "jira-software": ("9.12.0", "jira", ""),
    "jira-servicemanagement": ("5.12.0", "jsm", ""),
    "confluence": ("8.5.0", "wiki", ""),
    "bitbucket": ("8.19.0", "git", ""),
    "bamboo": ("9.6.0", "ci", ""),
    "crowd": ("5.3.0", "sso", "/crowd"),
}
PARALLEL = 3  # the lab machine is small and shared: three products at a time


@dataclass
class Outcome:
    """One product's run: its source on app1, the restore's operation and the copy on app2."""

    product: str
    source: AtlassianInstance | None = None
    copy: AtlassianInstance | None = None
    restore: Operation | None = None
    marker: str = ""
    seconds: float = 0.0
    error: str = ""
    notes: list[str] = field(default_factory=list)


def _wait_state(lab: LabWorld, inst: AtlassianInstance, state: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        try:
            seen = lab.api("info", instance=inst)["state"]
        except OSError as exc:
            seen = str(exc)
        if seen == state:
            return
        time.sleep(1)
    raise AssertionError(f"{inst.name} is {seen!r}, not {state}, after {timeout:.0f} s")


def _one_product(lab: LabWorld, app2: Host, product: str) -> Outcome:
    """Source on app1 with marker data, a point of it, a restore onto app2 (all inline)."""
    started = time.monotonic()
    outcome = Outcome(product)
    version, part, context = PRODUCTS[product]
    spec = spec_for(product)
    try:
        source = create_instance(
            access_for_user(lab.platform),
            lab.tenant,
            lab.app_host,
            f"m{lab.suffix}-{part}",
            product=product,
            version=version,
            context_path=context,
            heap_min_mb=min(512, spec.min_heap_mb),
            heap_max_mb=spec.min_heap_mb,
        )
        lab.extra_projects.append(source.name)
        outcome.source = source
        if product == "crowd":
            # Crowd's database is chosen in its setup wizard; the stand-in's setup call writes
            # shared/crowd.cfg.xml as finishing the wizard does.
            lab.api(
                "setup",
                {
                    "jdbc_url": instance_jdbc_url(source),
                    "user": source.db_user,
                    "password": source.db_password,
                },
                instance=source,
            )
        _wait_state(lab, source, "RUNNING")
        if product == "bitbucket":
            # What a database migration leaves in home; the environment's JDBC_URL outranks it.
            lab.api(
                "files",
                {
                    "path": "shared/bitbucket.properties",
                    "content": f"jdbc.url={instance_jdbc_url(source)}\n"
                    f"jdbc.user={source.db_user}\njdbc.password={source.db_password}\n",
                },
                instance=source,
            )
        outcome.marker = f"marker of {product} {secrets.token_hex(3)}"
        lab.api("items", {"title": outcome.marker}, instance=source)
        op = run_operation(backup_start(actor=access_for_user(lab.admin), instance=source))
        assert op.status == "succeeded", f"backup: {op.error}\n{step_text(op)}"
        point = Backup.objects.get(pk=op.result["backup"])
        name = f"m{lab.suffix}-{part}-copy"
        lab.extra_projects.append(name)
        op = restore_start(
            actor=access_for_user(lab.support),
            backup=point,
            mode="new_instance",
            name=name,
            hostname=f"{name}.staging.example",
            host=app2,
        )
        outcome.restore = run_operation(op)
        outcome.copy = AtlassianInstance.objects.select_related("host").get(name=name)
    except Exception:  # noqa: BLE001 - reported by this product's test, not by the others'
        outcome.error = traceback.format_exc()
    finally:
        connections.close_all()  # this thread's connections
        outcome.seconds = time.monotonic() - started
    return outcome


@pytest.fixture(scope="module")
def matrix(lab: LabWorld, django_db_blocker: Any) -> Iterator[dict[str, Outcome]]:
    """All six products backed up on app1 and restored onto app2, in parallel operations."""
    started = time.monotonic()
    with django_db_blocker.unblock():
        app2 = lab.app2_host()
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            outcomes = list(pool.map(lambda p: _one_product(lab, app2, p), PRODUCTS))
    print(
        f"\nproduct matrix: {time.monotonic() - started:.0f} s in all; "
        + ", ".join(f"{o.product} {o.seconds:.0f} s" for o in outcomes)
    )
    try:
        yield {o.product: o for o in outcomes}
    finally:
        # Free app1 and app2 for the package's later tests (deleted rows no longer count
        # against the hosts' memory).
        names = [n for n in lab.extra_projects if n.startswith(f"m{lab.suffix}-")]
        lab.projects_remove(names)
        with django_db_blocker.unblock():
            AtlassianInstance.objects.filter(name__in=names).update(status=InstanceStatus.DELETED)


@pytest.mark.parametrize("product", list(PRODUCTS))
def test_a_point_restored_onto_app2_runs_there_with_its_data_its_database_and_base_url(
    lab, matrix, product
):
    outcome = matrix[product]
    assert not outcome.error, outcome.error
    op, copy, source = outcome.restore, outcome.copy, outcome.source
    assert op.status == "succeeded", f"{op.error}\n{step_text(op)}"
    spec = spec_for(product)

    # on app2, running its own project there
    app2 = lab.app2
    assert copy.host_id == app2.pk and copy.status == InstanceStatus.RUNNING
    directory = f"{app2.data_root}/instances/{copy.name}"
    workdir = sh(
        "docker",
        "inspect",
        "-f",
        '{{ index .Config.Labels "com.docker.compose.project.working_dir" }}',
        f"{copy.name}-app-1",
    ).strip()
    assert workdir == directory
    info = lab.api("info", instance=copy)
    assert info["state"] == "RUNNING" and info["product"] == product

    # the marker row came along
    assert outcome.marker in lab.titles(instance=copy)

    # the copied home's config file names the copy's database, user and password
    with open(f"{directory}/home/{spec.db_config_file}", "rb") as fh:
        named = db_config_read(product, fh.read())
    assert named is not None
    assert (named.database, named.user, named.password) == (
        copy.db_name,
        copy.db_user,
        copy.db_password,
    )
    steps = step_text(op)
    assert f"{spec.db_config_file} named database {source.db_name} as user {source.db_user}" in (
        steps
    )
    assert f"it now names {copy.db_name} as user {copy.db_user}" in steps
    assert copy.db_password not in steps and source.db_password not in steps

    # its own base URL, where the product keeps it
    assert op.result["base_url"] == copy.base_url == f"https://{copy.hostname}{copy.context_path}"
    assert info["base_url"] == copy.base_url
    stored = lab.psql(BASE_URL_READ[_family(product)], instance=copy).strip()
    assert copy.base_url in stored
    # the source still runs on its own
    assert lab.api("info", instance=source)["base_url"] == source.base_url
