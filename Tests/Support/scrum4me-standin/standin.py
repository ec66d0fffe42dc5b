#!/usr/bin/env python3
"""Stand-in for the Scrum4Me MCP server (`scrum4me-mcp`), for fleet's tests.

    standin.py serve-stdio --state DB [--lease-seconds 300] [--poll-seconds 5]
    standin.py serve-http  --state DB --port N --port-file PATH [--lease-seconds S] [--poll-seconds S]
                           [--response-mode json|sse] [--lenient-accept]
    standin.py admin --state DB COMMAND ...        (prints JSON; see `admin --help`)

The state file can also come from STANDIN_STATE; the lease and poll lengths from
STANDIN_LEASE_SECONDS and STANDIN_POLL_SECONDS (flags win). See Tests/Support/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _reexec_in_fixture_venv() -> None:
    """Run under the fixtures venv (scripts/setup-fixtures.sh) when started with a python without `mcp`."""
    import importlib.util

    if importlib.util.find_spec("mcp") is not None:
        os.environ.pop("FLEET_FIXTURES_REEXEC", None)  # not for our children
        return
    if os.environ.get("FLEET_FIXTURES_REEXEC"):
        sys.stderr.write("%s: the MCP SDK is missing; run scripts/setup-fixtures.sh and use its python\n" % os.path.basename(__file__))
        sys.exit(2)
    repo = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
    for venv in (os.environ.get("FLEET_VENV"), os.path.join(repo, ".venv-fixtures")):
        py = os.path.join(venv, "bin", "python") if venv else ""
        if py and os.access(py, os.X_OK):
            os.environ["FLEET_FIXTURES_REEXEC"] = "1"
            os.execv(py, [py, os.path.abspath(__file__), *sys.argv[1:]])
    os.environ["FLEET_FIXTURES_REEXEC"] = "1"
    _reexec_in_fixture_venv()


_reexec_in_fixture_venv()

import store as st  # noqa: E402


def _env_float(name: str, default: float) -> float:
    v = os.environ.get(name)
    if v is None or v.strip() == "":
        return default
    try:
        return float(v)
    except ValueError:
        raise SystemExit(f"standin: {name} must be a number, not {v!r}")


def _state(args: argparse.Namespace) -> str:
    s = args.state or os.environ.get("STANDIN_STATE")
    if not s:
        raise SystemExit("standin: no state file (--state PATH or STANDIN_STATE)")
    return s


def _json_arg(s: str | None, what: str) -> dict | None:
    if s is None:
        return None
    try:
        v = json.loads(s)
    except ValueError as e:
        raise SystemExit(f"standin: {what} is not valid JSON: {e}")
    if not isinstance(v, dict):
        raise SystemExit(f"standin: {what} must be a JSON object")
    return v


def _out(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _timing(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lease-seconds", type=float, default=None, help="lease length (default 300, env STANDIN_LEASE_SECONDS)")
    p.add_argument("--poll-seconds", type=float, default=None, help="wait_for_job poll interval (default 5, env STANDIN_POLL_SECONDS)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="standin.py", description="Scrum4Me MCP stand-in for fleet tests")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve-stdio", help="MCP over stdio (token etc. from the environment)")
    s.add_argument("--state", default=None)
    _timing(s)

    h = sub.add_parser("serve-http", help="MCP over Streamable HTTP on 127.0.0.1")
    h.add_argument("--state", default=None)
    h.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: pick a free one)")
    h.add_argument("--port-file", default=None, help="write the bound port here once listening")
    h.add_argument("--response-mode", choices=("json", "sse"), default=os.environ.get("STANDIN_RESPONSE_MODE", "json"),
                   help="json: answer application/json unless the client only accepts SSE (default); "
                        "sse: answer text/event-stream whenever the client accepts it (as upstream does)")
    h.add_argument("--lenient-accept", action="store_true",
                   help="do not insist that Accept lists both application/json and text/event-stream")
    _timing(h)

    a = sub.add_parser("admin", help="operate on the state file directly; prints JSON")
    a.add_argument("--state", default=None)
    asub = a.add_subparsers(dest="admin_cmd", required=True)

    asub.add_parser("init", help="create the state file and schema")

    x = asub.add_parser("add-token", help="add (or update) a token; creates the user if needed")
    x.add_argument("--user", required=True)
    x.add_argument("--token", required=True, help="the secret")
    x.add_argument("--name", default=None, help="display name (default <user>-<n>)")
    x.add_argument("--worktree-root", default=None, help="HTTP: worktree root for this token's claims")
    x.add_argument("--repo-root", action="append", default=[], metavar="PRODUCT=PATH",
                   help="HTTP: repo root of a product for this token's claims (repeatable)")

    asub.add_parser("tokens", help="list tokens (never the secrets)")

    x = asub.add_parser("revoke", help="revoke a token (by secret, id or name)")
    x.add_argument("token")

    x = asub.add_parser("settings", help="set a user's worker settings")
    x.add_argument("--user", required=True)
    x.add_argument("--min-quota-pct", type=int, required=True)

    x = asub.add_parser("enqueue", help="queue jobs; prints the new job ids")
    x.add_argument("--user", required=True)
    x.add_argument("--kind", required=True, choices=st.JOB_KINDS)
    x.add_argument("--product", default=None)
    x.add_argument("--count", type=int, default=1)
    x.add_argument("--config", default=None, help="JSON object merged over the default config")
    x.add_argument("--script", default=None, help="JSON object handed to the scripted agent as payload.script")
    x.add_argument("--group", default=None, help="fail-cascade group: a failed task job cancels its group")
    x.add_argument("--worktree", choices=("auto", "yes", "no"), default="auto",
                   help="make a git worktree on claim (auto: task and sprint jobs)")
    x.add_argument("--push-outcome", choices=st.PUSH_OUTCOMES, default="ok",
                   help="simulated push on done: anything but ok turns done into FAILED 'push failed (...)'")
    x.add_argument("--sprint-run-status", choices=st.SPRINT_RUN_STATES, default=None)

    x = asub.add_parser("cancel", help="cancel a job")
    x.add_argument("job")
    x.add_argument("--reason", default=None)

    x = asub.add_parser("jobs", help="every job with all columns and its status history")
    x.add_argument("--id", default=None)
    x.add_argument("--status", default=None)

    x = asub.add_parser("job", help="one job (object, not array)")
    x.add_argument("job")

    x = asub.add_parser("workers", help="presence rows")
    x.add_argument("--events", action="store_true", help="also the register/replace/remove history")

    x = asub.add_parser("drop-worker", help="delete a presence row (simulate a lost registration)")
    x.add_argument("instance")

    x = asub.add_parser("calls", help="the call log")
    x.add_argument("--tool", default=None)
    x.add_argument("--method", default=None)
    x.add_argument("--since", default=None, help="ISO-8601 time")

    x = asub.add_parser("fault", help="inject a fault")
    x.add_argument("--tool", required=True, help="tool name, * for every tools/call, or a method (initialize, tools/list)")
    x.add_argument("--kind", required=True, choices=st.FAULT_KINDS)
    x.add_argument("--count", type=int, default=1, help="how many matching calls it hits (-1: unlimited)")
    x.add_argument("--seconds", type=float, default=None, help="stall: how long (default 5); sse_chunked: delay per chunk")
    x.add_argument("--message", default=None, help="is_error: the text; malformed: the raw line/body")
    x.add_argument("--after", action="store_true",
                   help="run the tool first, then break the answer (reset, malformed, is_error, stall, http_500, http_401)")
    x.add_argument("--token", default=None, help="only calls with this token (secret, id or name)")

    asub.add_parser("faults", help="list faults and how often each fired")
    asub.add_parser("clear-faults", help="delete every fault")

    x = asub.add_parser("sprint-status", help="set a sprint job's sprint_run_status")
    x.add_argument("job")
    x.add_argument("status", choices=st.SPRINT_RUN_STATES)
    x.add_argument("--reason", default=None, help="pause reason (PAUSED)")

    x = asub.add_parser("expire-lease", help="make a claimed job's lease lapse now")
    x.add_argument("job")

    x = asub.add_parser("sweep", help="requeue/fail stale jobs now (as wait_for_job does)")
    x.add_argument("--user", default=None)
    return p


def run_admin(args: argparse.Namespace) -> int:
    store = st.Store(_state(args))
    store.init()
    c = args.admin_cmd
    try:
        if c == "init":
            _out(store.init())
        elif c == "add-token":
            roots = {}
            for r in args.repo_root:
                if "=" not in r:
                    raise st.StoreError(f"--repo-root wants PRODUCT=PATH, not {r!r}")
                k, v = r.split("=", 1)
                roots[k] = os.path.abspath(v)
            _out(store.add_token(args.user, args.token, args.name,
                                 os.path.abspath(args.worktree_root) if args.worktree_root else None, roots))
        elif c == "tokens":
            _out(store.tokens())
        elif c == "revoke":
            _out(store.revoke(args.token))
        elif c == "settings":
            _out(store.settings(args.user, args.min_quota_pct))
        elif c == "enqueue":
            ids = store.enqueue(
                args.user, args.kind, args.product, args.count, _json_arg(args.config, "--config"),
                _json_arg(args.script, "--script"), args.group, args.worktree, args.push_outcome, args.sprint_run_status,
            )
            _out(ids)
        elif c == "cancel":
            _out(store.cancel(args.job, args.reason))
        elif c == "jobs":
            _out(store.jobs(args.id, args.status))
        elif c == "job":
            rows = store.jobs(args.job)
            if not rows:
                raise st.StoreError(f"unknown job {args.job}")
            _out(rows[0])
        elif c == "workers":
            _out(store.workers(args.events))
        elif c == "drop-worker":
            _out({"ok": store.drop_worker(args.instance)})
        elif c == "calls":
            _out(store.calls(args.tool, args.method, args.since))
        elif c == "fault":
            _out(store.add_fault(args.tool, args.kind, args.count, args.seconds, args.message, args.after, args.token))
        elif c == "faults":
            _out(store.faults())
        elif c == "clear-faults":
            _out(store.clear_faults())
        elif c == "sprint-status":
            _out(store.set_sprint_status(args.job, args.status, args.reason))
        elif c == "expire-lease":
            _out(store.expire_lease(args.job))
        elif c == "sweep":
            uid = None
            if args.user:
                with store.read() as conn:
                    r = conn.execute("SELECT id FROM users WHERE name=?", (args.user,)).fetchone()
                if r is None:
                    raise st.StoreError(f"unknown user {args.user}")
                uid = r["id"]
            _out(store.requeue_stale(uid, actor="admin"))
        else:  # pragma: no cover
            raise st.StoreError(f"unknown admin command {c}")
    except st.StoreError as e:
        sys.stderr.write(json.dumps({"error": str(e)}) + "\n")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "admin":
        return run_admin(args)

    import anyio

    from tools import Config

    cfg = Config(
        state=_state(args),
        lease_seconds=args.lease_seconds if args.lease_seconds is not None else _env_float("STANDIN_LEASE_SECONDS", 300.0),
        poll_seconds=args.poll_seconds if args.poll_seconds is not None else _env_float("STANDIN_POLL_SECONDS", 5.0),
    )
    if args.cmd == "serve-stdio":
        from stdio_server import serve_stdio

        return anyio.run(serve_stdio, cfg)
    if args.cmd == "serve-http":
        from http_server import serve_http

        return anyio.run(serve_http, cfg, args.port, args.port_file, args.response_mode, not args.lenient_accept)
    return 2


if __name__ == "__main__":
    sys.exit(main())
