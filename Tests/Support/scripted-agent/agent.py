#!/usr/bin/env python3
"""Scripted agent: started by fleetd in place of the `claude` CLI.

It takes claude-style argv (unknown flags are accepted and ignored), reads the claimed
payload from $PAYLOAD_PATH and does what payload["script"]["mode"] says (default "done").
It talks to Scrum4Me over its own MCP connection, to the server named by `--mcp-config`
(a Claude Code style JSON file or inline JSON; the `scrum4me` entry, else the first one).

Modes: done, fail, report_failed, noreport, hang, hang_ignore_term, crash, orphan, sleep.
Script keys: mode, message, seconds, exit_code, summary, report_running, log_lines,
verify_result, new_session. See Tests/Support/README.md.

Stdout gets a few stream-json-like lines. With $SCRIPTED_AGENT_LOG set, one JSON line
is appended when the run starts (event "start") and one when it ends (event "end").
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

EXIT_REPORT_REFUSED = 3
EXIT_USAGE = 2

_start_iso = ""
_start_mono = 0.0
_argv_clean: list[str] = []
_job_id: str | None = None
_session = str(uuid.uuid4())


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


def now_iso() -> str:
    t = _dt.datetime.now(_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def emit(obj: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def err(msg: str) -> None:
    try:
        sys.stderr.write(msg.rstrip("\n") + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def run_log(event: str, **fields: Any) -> None:
    path = os.environ.get("SCRIPTED_AGENT_LOG")
    if not path:
        return
    rec = {
        "event": event,
        "job_id": _job_id,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "cwd": os.getcwd(),
        "start": _start_iso,
        "argv": _argv_clean,
        **fields,
    }
    line = (json.dumps(rec) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as e:
        err(f"scripted-agent: cannot write {path}: {e}")


def finish(code: int, outcome: str, **fields: Any) -> None:
    run_log("end", end=now_iso(), duration_ms=int((time.monotonic() - _start_mono) * 1000),
            exit_code=code, outcome=outcome, **fields)
    emit({"type": "result", "subtype": "success" if code == 0 else "error", "is_error": code != 0,
          "result": outcome, "session_id": _session, "num_turns": 1,
          "duration_ms": int((time.monotonic() - _start_mono) * 1000), "total_cost_usd": 0})
    sys.exit(code)


# ---- argv -----------------------------------------------------------------------------

_SECRETISH = re.compile(r"(bearer\s+\S+|sk-ant-[\w-]+|(token|secret|key)=\S+)", re.I)


def clean_argv(argv: list[str]) -> list[str]:
    out = []
    for a in argv:
        if a.lstrip().startswith("{"):
            out.append("<inline-json>")
        else:
            out.append(_SECRETISH.sub("<redacted>", a))
    return out


def mcp_config_arg(argv: list[str]) -> list[str]:
    """Every value given to --mcp-config (space separated values until the next flag)."""
    vals: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--mcp-config="):
            vals.append(a.split("=", 1)[1])
        elif a == "--mcp-config":
            i += 1
            while i < len(argv) and not argv[i].startswith("-"):
                vals.append(argv[i])
                i += 1
            continue
        i += 1
    return vals


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(v: Any) -> Any:
    """Claude Code's ${VAR} and ${VAR:-default} expansion in the MCP config."""
    if isinstance(v, str):
        return _VAR.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), v)
    if isinstance(v, list):
        return [expand(x) for x in v]
    if isinstance(v, dict):
        return {k: expand(x) for k, x in v.items()}
    return v


def load_server(argv: list[str]) -> dict[str, Any] | None:
    servers: dict[str, Any] = {}
    for v in mcp_config_arg(argv):
        try:
            if v.lstrip().startswith("{"):
                cfg = json.loads(v)
            else:
                with open(v) as f:
                    cfg = json.load(f)
        except (OSError, ValueError) as e:
            err(f"scripted-agent: cannot read --mcp-config {v}: {e}")
            continue
        servers.update(cfg.get("mcpServers") or {})
    if not servers:
        return None
    entry = servers.get("scrum4me") or next(iter(servers.values()))
    return expand(entry)


# ---- MCP --------------------------------------------------------------------------------


def _result_json(res: Any) -> tuple[bool, Any]:
    text = "".join(getattr(c, "text", "") for c in (res.content or []))
    if res.isError:
        return False, text
    if res.structuredContent is not None:
        return True, res.structuredContent
    try:
        return True, json.loads(text)
    except ValueError:
        return True, text


async def _with_session(server: dict[str, Any], calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[bool, Any]]:
    from mcp import ClientSession

    results: list[tuple[bool, Any]] = []

    async def run(session: Any) -> None:
        init = await session.initialize()
        emit({"type": "system", "subtype": "mcp", "server": "scrum4me",
              "protocol_version": str(init.protocolVersion)})
        for name, args in calls:
            res = await session.call_tool(name, args)
            ok, val = _result_json(res)
            emit({"type": "tool_result", "tool": f"mcp__scrum4me__{name}", "is_error": not ok,
                  "content": val if ok else str(val)[:500]})
            results.append((ok, val))
            if not ok:
                break

    kind = (server.get("type") or ("http" if server.get("url") else "stdio")).lower()
    if kind in ("http", "streamable-http", "streamable_http"):
        import httpx
        from mcp.client.streamable_http import streamable_http_client

        headers = {str(k): str(v) for k, v in (server.get("headers") or {}).items()}
        async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(60.0, read=300.0)) as client:
            async with streamable_http_client(server["url"], http_client=client) as (r, w, _sid):
                async with ClientSession(r, w) as session:
                    await run(session)
    else:
        from mcp.client.stdio import StdioServerParameters, stdio_client

        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in (server.get("env") or {}).items()})
        params = StdioServerParameters(command=server["command"], args=[str(a) for a in server.get("args") or []],
                                       env=env, cwd=server.get("cwd"))
        async with stdio_client(params) as (r, w):
            async with ClientSession(r, w) as session:
                await run(session)
    return results


def mcp_calls(server: dict[str, Any] | None, calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[bool, Any]]:
    if server is None:
        err("scripted-agent: no --mcp-config with an MCP server; cannot report")
        finish(EXIT_USAGE, "no mcp server")
    import anyio

    return anyio.run(_with_session, server, calls)


# ---- work ---------------------------------------------------------------------------------


def commit_in_worktree(payload: dict[str, Any]) -> str | None:
    wt = payload.get("worktree_path")
    if not wt:
        return None
    jid = str(payload.get("job_id"))
    name = f"scripted-agent-{jid[:8]}.txt"
    with open(os.path.join(wt, name), "a") as f:
        f.write(f"job {jid} done by scripted agent pid {os.getpid()} at {now_iso()}\n")
    git = ["git", "-C", wt, "-c", "safe.directory=*", "-c", "user.name=Scripted Agent",
           "-c", "user.email=scripted-agent@example.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["add", name], check=True, capture_output=True)
    subprocess.run(git + ["commit", "-q", "-m", f"scripted agent: job {jid}"], check=True, capture_output=True)
    sha = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    emit({"type": "assistant", "message": {"role": "assistant",
          "content": [{"type": "text", "text": f"committed {name} as {sha[:12]}"}]}})
    return sha


def do_done(payload: dict[str, Any], script: dict[str, Any], server: dict[str, Any] | None) -> None:
    jid = payload["job_id"]
    sha = commit_in_worktree(payload)
    # {"leave_dirty": true}: leave an uncommitted file in the worktree after the commit.
    if script.get("leave_dirty") and payload.get("worktree_path"):
        with open(os.path.join(payload["worktree_path"], "UNCOMMITTED.txt"), "w") as f:
            f.write("work in progress\n")
    calls: list[tuple[str, dict[str, Any]]] = []
    if script.get("report_running"):
        calls.append(("update_job_status", {"job_id": jid, "status": "running"}))
    if payload.get("kind") == "TASK_IMPLEMENTATION":
        v: dict[str, Any] = {"job_id": jid}
        if script.get("verify_result"):
            v["result"] = script["verify_result"]
        calls.append(("verify_task_against_plan", v))
    done: dict[str, Any] = {"job_id": jid, "status": "done",
                            "summary": script.get("summary") or f"scripted agent finished job {jid}"}
    if payload.get("branch_name"):
        done["branch"] = payload["branch_name"]
    calls.append(("update_job_status", done))
    results = mcp_calls(server, calls)
    last_ok, last_val = results[-1] if results else (False, "no result")
    if not last_ok or len(results) < len(calls):
        err(f"scripted-agent: the server refused the report: {last_val}")
        finish(EXIT_REPORT_REFUSED, "report refused", error=str(last_val)[:300], commit=sha)
    finish(int(script.get("exit_code", 0)), "done", commit=sha,
           reported_status=last_val.get("status") if isinstance(last_val, dict) else None)


def main() -> None:
    global _start_iso, _start_mono, _argv_clean, _job_id
    _reexec_in_fixture_venv()
    _start_iso = now_iso()
    _start_mono = time.monotonic()
    argv = sys.argv[1:]
    _argv_clean = clean_argv(argv)

    ppath = os.environ.get("PAYLOAD_PATH")
    if not ppath:
        err("scripted-agent: PAYLOAD_PATH is not set")
        run_log("start")
        finish(EXIT_USAGE, "no payload")
    try:
        with open(ppath) as f:
            payload = json.load(f)
    except (OSError, ValueError) as e:
        err(f"scripted-agent: cannot read payload {ppath}: {e}")
        run_log("start")
        finish(EXIT_USAGE, "bad payload")
    _job_id = payload.get("job_id")
    script = payload.get("script") or {}
    if not isinstance(script, dict):
        script = {}
    mode = str(script.get("mode") or "done")
    # {"attempts": ["crash", "done"]}: a mode per attempt (by the payload's retry_count).
    attempts = script.get("attempts")
    if isinstance(attempts, list) and attempts:
        mode = str(attempts[min(int(payload.get("retry_count") or 0), len(attempts) - 1)])
    run_log("start", mode=mode, kind=payload.get("kind"))
    # A run stopped with TERM logs its end too, so tests can see runs never overlap.
    if mode != "hang_ignore_term":
        signal.signal(signal.SIGTERM, lambda *_: finish(143, "terminated"))
    emit({"type": "system", "subtype": "init", "session_id": _session, "cwd": os.getcwd(),
          "model": (payload.get("config") or {}).get("model"), "tools": [], "mcp_servers": [],
          "job_id": _job_id, "mode": mode})
    for i in range(int(script.get("log_lines") or 0)):
        emit({"type": "assistant", "message": {"role": "assistant",
              "content": [{"type": "text", "text": f"filler line {i} " + "x" * 64}]}})

    server = load_server(argv)

    if mode == "done":
        do_done(payload, script, server)
    elif mode == "sleep":
        time.sleep(float(script.get("seconds") or 1))
        do_done(payload, script, server)
    elif mode == "orphan":
        kw: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
                              "close_fds": True}
        if script.get("new_session"):
            kw["start_new_session"] = True
        child = subprocess.Popen(["sleep", str(script.get("seconds") or 30)], **kw)
        emit({"type": "system", "subtype": "orphan", "pid": child.pid})
        run_log("orphan", orphan_pid=child.pid)
        do_done(payload, script, server)
    elif mode == "fail":
        err(str(script.get("message") or f"scripted-agent: scripted failure for job {_job_id}"))
        finish(int(script.get("exit_code", 1)), "failed")
    elif mode == "report_failed":
        msg = str(script.get("message") or f"scripted failure reported for job {_job_id}")
        results = mcp_calls(server, [("update_job_status", {"job_id": _job_id, "status": "failed", "error": msg})])
        ok, val = results[-1]
        if not ok:
            err(f"scripted-agent: the server refused the report: {val}")
            finish(EXIT_REPORT_REFUSED, "report refused", error=str(val)[:300])
        finish(int(script.get("exit_code", 0)), "reported failed")
    elif mode == "noreport":
        finish(int(script.get("exit_code", 0)), "exited without reporting")
    elif mode in ("hang", "hang_ignore_term"):
        if mode == "hang_ignore_term":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        else:
            signal.signal(signal.SIGTERM, lambda *_: finish(143, "terminated"))
        emit({"type": "system", "subtype": "hang", "pid": os.getpid()})
        while True:
            time.sleep(3600)
    elif mode == "crash":
        run_log("end", end=now_iso(), exit_code=-6, outcome="crash (abort)")
        err("scripted-agent: crashing (abort)")
        os.abort()
    else:
        err(f"scripted-agent: unknown mode {mode!r}")
        finish(EXIT_USAGE, f"unknown mode {mode}")


if __name__ == "__main__":
    main()
