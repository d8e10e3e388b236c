"""panelctl's commands (argparse). Exit codes: 0 done (an operation succeeded), 1 the operation
failed or was cancelled (or the schema lacks a route, for ``schema-check``), 2 wrong usage or
not logged in, 3 the panel refused the request (4xx), 4 the panel failed (5xx), could not be
reached or serves a schema without panelctl's routes, 5 gave up following (``--timeout``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from panelctl import __version__
from panelctl.client import ROUTES, ApiError, Client, SchemaError, Unreachable
from panelctl.config import Config, ConfigError, config_load, config_save

OK, OPERATION_FAILED, USAGE, REFUSED, UNAVAILABLE, TIMED_OUT = 0, 1, 2, 3, 4, 5

PRODUCTS = (
    "jira-software",
    "jira-servicemanagement",
    "confluence",
    "bitbucket",
    "bamboo",
    "crowd",
)


class UserError(Exception):
    """Something the person asked for that cannot be done (exit code 3)."""


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def emit_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    cells = [[str(row.get(c) if row.get(c) is not None else "") for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    for line in [[c.upper() for c in columns], *cells]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def client_for(args: argparse.Namespace) -> Client:
    config = config_load(url=args.url, token=args.token)
    return Client(config.url, config.token, timeout=args.http_timeout)


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def instance_id(client: Client, ref: str) -> str:
    """An instance's id from its id or its name."""
    if is_uuid(ref):
        return ref
    found = [i for i in client.list_all("instances_list", {"search": ref}) if i["name"] == ref]
    if not found:
        raise UserError(f"no instance named {ref!r} that this token can see")
    if len(found) > 1:
        tenants = ", ".join(f"{i['tenant_name']} ({i['id']})" for i in found)
        raise UserError(f"several instances are named {ref!r}: {tenants}; give the id")
    return str(found[0]["id"])


# --- commands -------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    client = Client(args.url, args.token, timeout=args.http_timeout)
    me = client.call("me_retrieve").data  # checks the URL, the schema and the token
    path = config_save(Config(url=client.url, token=args.token))
    if args.json:
        emit_json({"url": client.url, "config": str(path), "me": me})
    else:
        token = me.get("token") or {}
        scope = f", {token['scope']} token" if token.get("scope") else ""
        print(f"Logged in to {client.url} as {me['username']}{scope}; saved to {path}")
    return OK


def cmd_whoami(args: argparse.Namespace) -> int:
    client = client_for(args)
    me = client.call("me_retrieve").data
    if args.json:
        emit_json(me)
    else:
        tenants = ", ".join(f"{m['tenant_name']} ({m['role']})" for m in me.get("memberships", []))
        print(f"{me['username']} on {client.url}" + (f": {tenants}" if tenants else ""))
    return OK


def cmd_schema_check(args: argparse.Namespace) -> int:
    client = client_for(args)
    schema = client.schema
    problems = schema.problems()
    routes: dict[str, str | None] = {}
    for operation_id in ROUTES:
        try:
            routes[operation_id] = " ".join(schema.route(operation_id))
        except SchemaError:
            routes[operation_id] = None
    if args.json:
        emit_json({"ok": not problems, "problems": problems, "routes": routes})
    else:
        for operation_id, route in routes.items():
            print(f"{'ok     ' if route else 'MISSING'}  {operation_id:28} {route or ''}".rstrip())
        for problem in problems:
            print(f"problem: {problem}", file=sys.stderr)
        print("The schema has every route panelctl uses." if not problems else "")
    return OK if not problems else OPERATION_FAILED


def cmd_instances_list(args: argparse.Namespace) -> int:
    client = client_for(args)
    items = client.list_all("instances_list", {"product": args.product, "search": args.search})
    if args.json:
        emit_json(items)
    else:
        emit_table(
            items, ("id", "name", "tenant_name", "product", "version", "display_status", "hostname")
        )
    return OK


def cmd_instances_show(args: argparse.Namespace) -> int:
    client = client_for(args)
    data = client.call(
        "instances_retrieve", path_params={"id": instance_id(client, args.instance)}
    ).data
    if args.json:
        emit_json(data)
    else:
        for key in ("id", "name", "tenant_name", "product", "version", "display_status"):
            print(f"{key:15} {data.get(key, '')}")
        for key in ("health", "hostname", "base_url", "status_reason"):
            if data.get(key):
                print(f"{key:15} {data[key]}")
    return OK


def idempotency(args: argparse.Namespace) -> dict[str, str]:
    return {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}


def cmd_instances_create(args: argparse.Namespace) -> int:
    client = client_for(args)
    body = {
        "name": args.name,
        "product": args.product,
        "version": args.version,
        "hostname": args.hostname,
        "tenant": args.tenant,
        "context_path": args.context_path,
        "heap_min_mb": args.heap_min_mb,
        "heap_max_mb": args.heap_max_mb,
        "tier": args.tier,
        "host": args.host,
    }
    answer = client.call(
        "instances_create",
        body={k: v for k, v in body.items() if v is not None},
        headers=idempotency(args),
    )
    return started(client, args, answer.data)


def cmd_backups_start(args: argparse.Namespace) -> int:
    client = client_for(args)
    body = {"instance": instance_id(client, args.instance)}
    if args.mode:
        body["mode"] = args.mode
    answer = client.call("backups_create", body=body, headers=idempotency(args))
    return started(client, args, answer.data)


def cmd_restores_start(args: argparse.Namespace) -> int:
    client = client_for(args)
    body: dict[str, Any] = {"mode": args.mode}
    for key in ("confirm", "name", "hostname", "host"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    if args.skip_safety:
        body["skip_safety"] = True
    answer = client.call(
        "backups_restore_create",
        path_params={"id": args.point},
        body=body,
        headers=idempotency(args),
    )
    return started(client, args, answer.data)


def started(client: Client, args: argparse.Namespace, operation: dict[str, Any]) -> int:
    """After a 202: show the operation, or follow it to its end with ``--wait``."""
    if args.wait:
        if not args.json:
            print(f"Operation {operation['id']} ({operation['kind']}) started; following it")
        return follow(client, args, str(operation["id"]))
    if args.json:
        emit_json(operation)
    else:
        print(
            f"Operation {operation['id']} ({operation['kind']}) {operation['status']}: "
            f"follow it with `panelctl operations follow {operation['id']}`"
        )
    return OK


def cmd_operations_show(args: argparse.Namespace) -> int:
    client = client_for(args)
    data = client.call("operations_retrieve", path_params={"id": args.operation}).data
    if args.json:
        emit_json(data)
    else:
        print(operation_summary(data))
        for step in data.get("steps") or []:
            print_step(step)
    return OK


def cmd_operations_follow(args: argparse.Namespace) -> int:
    return follow(client_for(args), args, args.operation)


def print_step(step: dict[str, Any]) -> None:
    stamp = step["created_at"][11:19]
    print(f"{stamp} {step['level']:7} {step['message']}")
    if step.get("command"):
        tail = []
        if step.get("exit_code") is not None:
            tail.append(f"exit {step['exit_code']}")
        if step.get("duration_ms") is not None:
            tail.append(f"{step['duration_ms']} ms")
        print(f"         $ {step['command']}" + (f"  ({', '.join(tail)})" if tail else ""))
    for line in (step.get("output") or "").splitlines():
        print(f"         | {line}")


def operation_summary(operation: dict[str, Any]) -> str:
    text = f"Operation {operation['id']} ({operation['kind']}) {operation['status']}"
    if operation.get("error"):
        text += f": {operation['error']}"
    return text


def follow(client: Client, args: argparse.Namespace, operation_id: str) -> int:
    """Print the operation's new steps until it ends; the exit code says how it ended."""
    after = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    while True:
        page = client.call(
            "operations_steps_retrieve", path_params={"id": operation_id}, query={"after": after}
        ).data
        if not args.json:
            for step in page["steps"]:
                print_step(step)
            sys.stdout.flush()
        after = page["next_after"]
        if page["is_terminal"] and not page["steps"]:
            break
        if not page["steps"]:
            if deadline is not None and time.monotonic() > deadline:
                print(f"gave up following {operation_id} after {args.timeout} s", file=sys.stderr)
                return TIMED_OUT
            time.sleep(args.interval)
    operation = client.call("operations_retrieve", path_params={"id": operation_id}).data
    if args.json:
        emit_json(operation)
    else:
        print(operation_summary(operation))
    return OK if operation["status"] == "succeeded" else OPERATION_FAILED


# --- the parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # Options every command takes, before or after its name (SUPPRESS: a subcommand's default
    # does not overwrite a value given before it).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine output (JSON)"
    )
    common.add_argument("--url", default=argparse.SUPPRESS, help="the panel (or PANELCTL_URL)")
    common.add_argument(
        "--token", default=argparse.SUPPRESS, help="an API token (or PANELCTL_TOKEN)"
    )

    parser = argparse.ArgumentParser(
        prog="panelctl",
        description="Command-line client for the panel's REST API.",
        epilog=__doc__.split("Exit codes: ", 1)[1].replace("\n", " ").join(["Exit codes: ", ""]),
    )
    parser.add_argument("--version", action="version", version=f"panelctl {__version__}")
    parser.add_argument("--json", action="store_true", help="machine output (JSON)")
    parser.add_argument("--url", help="the panel's URL (default: PANELCTL_URL, then the config)")
    parser.add_argument("--token", help="an API token (default: PANELCTL_TOKEN, then the config)")
    parser.add_argument(
        "--http-timeout", type=float, default=30.0, help="seconds per request (default 30)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        group: Any, name: str, handler: Callable[[argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(
            name, parents=[common], help=text, description=text
        )
        sub.set_defaults(handler=handler)
        return sub

    def group(name: str, text: str) -> Any:
        sub = commands.add_parser(name, help=text, description=text)
        return sub.add_subparsers(dest="action", required=True, metavar="ACTION")

    def waiting(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--wait", action="store_true", help="follow the operation to its end")
        sub.add_argument("--idempotency-key", help="repeat the request safely with the same key")
        following(sub)

    def following(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--interval", type=float, default=1.0, help="seconds between polls (default 1)"
        )
        sub.add_argument(
            "--timeout", type=float, default=0, help="give up after this many seconds (exit 5)"
        )

    login = commands.add_parser(
        "login", help="check a token and save it", description="Check a token and save it."
    )
    login.add_argument("--url", required=True, help="the panel, e.g. https://panel.example")
    login.add_argument("--token", required=True, help="an API token (pnl_…)")
    login.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    login.set_defaults(handler=cmd_login)

    command(commands, "whoami", cmd_whoami, "Who the token belongs to.")
    command(
        commands,
        "schema-check",
        cmd_schema_check,
        "Check that the panel's OpenAPI schema has every route and field panelctl uses.",
    )

    instances = group("instances", "List, show and create instances.")
    sub = command(instances, "list", cmd_instances_list, "The instances the token can see.")
    sub.add_argument("--product", choices=PRODUCTS)
    sub.add_argument("--search", help="part of a name or hostname")
    sub = command(instances, "show", cmd_instances_show, "One instance.")
    sub.add_argument("instance", help="id or name")
    sub = command(instances, "create", cmd_instances_create, "Create an instance (202).")
    sub.add_argument("--name", required=True)
    sub.add_argument("--product", required=True, help=", ".join(PRODUCTS))
    sub.add_argument("--version", required=True)
    sub.add_argument("--hostname", required=True)
    sub.add_argument("--tenant", help="tenant id (when you administer several)")
    sub.add_argument("--context-path")
    sub.add_argument("--heap-min-mb", type=int)
    sub.add_argument("--heap-max-mb", type=int)
    sub.add_argument("--tier", help="tier0 … tier3 (default: the tenant's)")
    sub.add_argument("--host", help="platform admins: the app host's id")
    waiting(sub)

    backups = group("backups", "Start backups.")
    sub = command(backups, "start", cmd_backups_start, "Back up an instance now (202).")
    sub.add_argument("instance", help="id or name")
    sub.add_argument("--mode", choices=("hot", "cold"), help="default: the policy's mode")
    waiting(sub)

    restores = group("restores", "Start restores.")
    sub = command(restores, "start", cmd_restores_start, "Restore a backup point (staff, 202).")
    sub.add_argument("point", help="the backup point's id")
    sub.add_argument("--mode", required=True, choices=("in_place", "new_instance"))
    sub.add_argument("--confirm", help="in place: the instance's name, to confirm")
    sub.add_argument("--skip-safety", action="store_true", help="in place: no safety backup")
    sub.add_argument("--name", help="new instance: its name")
    sub.add_argument("--hostname", help="new instance: its hostname")
    sub.add_argument("--host", help="new instance: the app host, by name")
    waiting(sub)

    operations = group("operations", "Show and follow operations.")
    sub = command(operations, "show", cmd_operations_show, "One operation and its steps.")
    sub.add_argument("operation", help="the operation's id")
    sub = command(
        operations,
        "follow",
        cmd_operations_follow,
        "Print new steps until the operation ends; exit 0 if it succeeded, 1 if not.",
    )
    sub.add_argument("operation", help="the operation's id")
    following(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as err:
        print(f"panelctl: {err}", file=sys.stderr)
        return USAGE
    except UserError as err:
        print(f"panelctl: {err}", file=sys.stderr)
        return REFUSED
    except ApiError as err:
        if args.json:
            emit_json({"error": {"status": err.status, "body": err.data}})
        print(f"panelctl: the panel answered HTTP {err.status}:", file=sys.stderr)
        for line in err.lines():
            print(f"  {line}", file=sys.stderr)
        return REFUSED if err.status < 500 else UNAVAILABLE
    except (Unreachable, SchemaError) as err:
        print(f"panelctl: {err}", file=sys.stderr)
        return UNAVAILABLE
    except KeyboardInterrupt:
        return 130
