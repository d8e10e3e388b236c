"""Lab fixtures for the fault-tolerance tests (without the no-broker patch: these tests use the
real worker, so operations really go through Redis)."""

from tests.provisioning.conftest import (  # noqa: F401 - shared lab fixtures
    enrol_lab_host,
    lab_hosts,
    lab_state,
    run_operation,
    step_text,
)
