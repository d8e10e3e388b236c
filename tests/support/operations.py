"""A diagnostic operation kind for the runner's tests (loaded via PANEL_OPERATION_MODULES).

It logs steps with pauses so a test can watch them arrive, and can fail in chosen ways.
"""

from __future__ import annotations

import time

from django.db import transaction

from panel.operations import OperationContext, OperationFailed, operation_handler


@operation_handler("diagnostic")
def diagnostic_run(ctx: OperationContext) -> dict:
    params = ctx.operation.params
    total = int(params.get("steps", 3))
    ctx.progress(0, total)
    for i in range(total):
        ctx.check_cancelled()
        ctx.step(
            f"step {i + 1} of {total}",
            command=f"echo {i + 1}",
            exit_code=0,
            output=params.get("output", ""),
        )
        ctx.progress(i + 1)
        time.sleep(float(params.get("sleep", 0.2)))
    if params.get("leak_instance_secrets") and ctx.operation.instance_id:
        # As a careless command would: print the target's secrets, then fail quoting one.
        inst = ctx.operation.instance
        ctx.step("env dump", output=f"JDBC_PASSWORD={inst.db_password} {inst.extra_env}")
        raise OperationFailed(f"could not log in with {inst.db_password}")
    if params.get("fail_inside_transaction"):
        with transaction.atomic():
            ctx.step("logged inside a transaction that rolls back")
            raise OperationFailed("failed inside a transaction")
    if params.get("fail"):
        raise OperationFailed(params["fail"])
    if params.get("crash"):
        raise RuntimeError("boom")
    return {"steps": total}


@operation_handler("diagnostic.block")
def diagnostic_block(ctx: OperationContext) -> dict:
    """Hold a worker slot, as a long backup or upgrade does, until cancelled (or ``seconds``)."""
    deadline = time.monotonic() + float(ctx.operation.params.get("seconds", 60))
    ctx.step("holding this worker slot")
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(0.2)
    return {"held": True}
