"""The consistency check as operations and tasks run it: a check that could not run is said to
have not run (never "no problems"), and a bug in it is not hidden."""

from __future__ import annotations

import pytest

from certificates import services, tasks
from certificates.models import ProxySite
from provisioning.remote import HostUnreachable
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


class Steps:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def step(self, message: str, *, level: str = "info", **kw) -> None:
        self.lines.append((level, message))

    def add_secrets(self, values) -> None:
        pass


def _unreachable(instance):
    raise HostUnreachable("Cannot reach app-1 at 192.0.2.10:22 over SSH: no answer within 10 s")


def test_a_check_that_could_not_run_is_not_reported_as_no_problems(acme, monkeypatch):
    inst = make_instance(acme, "acme-jira")
    monkeypatch.setattr("certificates.consistency.endpoint_check", _unreachable)
    steps = Steps()

    assert services.endpoint_check_safely(inst, ctx=steps) is None

    assert steps.lines == [
        (
            "warning",
            "The consistency check could not run: Cannot reach app-1 at 192.0.2.10:22 over "
            "SSH: no answer within 10 s",
        )
    ]
    assert not any("agree" in message for _, message in steps.lines)


def test_the_check_task_answers_none_not_zero_when_the_check_did_not_run(acme, monkeypatch):
    inst = make_instance(acme, "acme-jira")
    monkeypatch.setattr("certificates.consistency.endpoint_check", _unreachable)

    assert tasks.endpoint_check(str(inst.pk)) is None


def test_a_bug_in_the_check_reaches_the_caller(acme, monkeypatch):
    inst = make_instance(acme, "acme-jira")

    def broken(instance):
        raise KeyError("spec")

    monkeypatch.setattr("certificates.consistency.endpoint_check", broken)

    with pytest.raises(KeyError):
        services.endpoint_check_safely(inst, ctx=Steps())


def test_the_periodic_sweep_goes_on_past_an_instance_whose_check_crashed(
    acme, app_host, monkeypatch
):
    first = make_instance(acme, "acme-jira", host=app_host)
    second = make_instance(acme, "acme-wiki", host=app_host)
    for inst in (first, second):
        ProxySite.objects.create(instance=inst)
    checked = []

    def check(instance):
        checked.append(instance.name)
        if instance.name == "acme-jira":
            raise KeyError("spec")
        return []

    monkeypatch.setattr("certificates.consistency.endpoint_check", check)

    assert services.endpoints_check_all() == 1
    assert sorted(checked) == ["acme-jira", "acme-wiki"]
