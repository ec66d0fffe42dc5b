"""`standin.py serve-stdio`: MCP over stdio, one JSON-RPC message per line.

The SDK's low-level server does the MCP work; this module is the transport (a copy of the
SDK's stdio transport with hooks) so that faults can be injected per request and every
request is written to the call log. Presence is registered before the first line is read
and removed when stdin closes or on SIGTERM/SIGINT (a `reset` fault exits without
removing it, as a crash would).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from io import TextIOWrapper
from typing import Any

import anyio
import anyio.to_thread
import mcp.types as types
from mcp.shared.message import SessionMessage

import store as st
import tools
import wire
from tools import CallCtx, Config, Standin, log

RESET_EXIT_CODE = 70
PRESENCE_TICK_SECONDS = 5.0


async def serve_stdio(cfg: Config) -> int:
    store = st.Store(cfg.state)
    store.init()
    secret = os.environ.get("SCRUM4ME_TOKEN") or None
    instance = (os.environ.get("SCRUM4ME_WORKER_INSTANCE_ID") or "").strip() or tools.default_instance_id()
    runtime = (os.environ.get("SCRUM4ME_WORKER_RUNTIME") or "").strip() or "CLAUDE"
    caps = (os.environ.get("SCRUM4ME_WORKER_CAPABILITIES") or "code_edit,planning,review").strip()
    ctx = CallCtx(transport="stdio", secret=secret, instance_id=instance, env_repo_roots=True)
    pid = os.getpid()
    state: dict[str, Any] = {"registered": False, "auth": None}

    def register() -> None:
        auth = store.auth(secret)
        state["auth"] = auth
        if auth is None:
            return
        r = store.register_worker(instance, auth["id"], auth["user_id"], "stdio", pid, socket.gethostname(), runtime, caps)
        state["registered"] = True
        log("presence_registered", instance_id=instance, token=auth["name"], **({"note": r["note"]} if r.get("note") else {}))

    def unregister(why: str) -> None:
        if state["registered"]:
            try:
                store.remove_worker(instance, pid, why)
                log("presence_removed", instance_id=instance, reason=why)
            except Exception as e:  # noqa: BLE001
                log("presence_remove_failed", error=repr(e))
            state["registered"] = False

    # Presence first, before anything is answered (upstream incident 1).
    register()
    if state["auth"] is None:
        log("token_rejected", instance_id=instance, detail="SCRUM4ME_TOKEN missing, unknown or revoked")
    log(
        "serving_stdio",
        instance_id=instance,
        state=store.path,
        lease_seconds=cfg.lease_seconds,
        poll_seconds=cfg.poll_seconds,
    )

    def on_signal(signum: int, _frame: Any) -> None:
        unregister(f"signal {signal.Signals(signum).name}")
        log("exit", reason=f"signal {signal.Signals(signum).name}")
        os._exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    standin = Standin(store, cfg, ctx)
    server = standin.server

    read_w, read_r = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_w, write_r = anyio.create_memory_object_stream[SessionMessage](0)
    out = sys.stdout.buffer
    out_lock = anyio.Lock()
    pending: dict[str, dict[str, Any]] = {}

    async def emit(text: str) -> None:
        data = (text.rstrip("\n") + "\n").encode("utf-8")

        def _w() -> None:
            out.write(data)
            out.flush()

        async with out_lock:
            try:
                await anyio.to_thread.run_sync(_w)
            except (BrokenPipeError, ValueError, OSError):
                pass

    async def emit_obj(obj: dict[str, Any]) -> None:
        await emit(json.dumps(obj, separators=(",", ":")))

    async def db(fn: Any, *a: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: fn(*a))

    def hard_exit(why: str) -> None:
        log("exit", reason=why)
        try:
            sys.stderr.flush()
        finally:
            os._exit(RESET_EXIT_CODE)

    async def log_call(info: dict[str, Any], status: str, message: str | None, fault: str | None, job_id: str | None = None) -> None:
        await anyio.to_thread.run_sync(
            lambda: wire.log_call(store, info, "stdio", state["auth"], instance, status, message, fault, job_id)
        )

    async def forward(obj: dict[str, Any]) -> None:
        try:
            msg = types.JSONRPCMessage.model_validate(obj)
        except Exception as exc:  # noqa: BLE001
            await read_w.send(exc)
            return
        await read_w.send(SessionMessage(msg))

    async def forward_later(obj: dict[str, Any], seconds: float) -> None:
        await anyio.sleep(seconds)
        await forward(obj)

    async def reader(tg: anyio.abc.TaskGroup) -> None:
        stdin = anyio.wrap_file(TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace"))
        async for line in stdin:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                await read_w.send(exc)
                continue
            info = wire.describe(obj)
            if info is not None:
                if not state["registered"]:
                    await db(register)
                else:
                    state["auth"] = await db(store.auth, secret)
                fault = None
                if await db(store.has_faults):
                    auth = state["auth"]
                    fault = await db(store.take_fault, info["method"], info["tool"], "stdio", auth["id"] if auth else None)
                if fault is not None:
                    kind = fault["kind"]
                    log("fault", kind=kind, method=info["method"], tool=info["tool"], after=bool(fault["after"]))
                    if kind == "text_only" or fault["after"]:
                        info["after"] = fault
                    elif kind == "reset":
                        await log_call(info, "fault", None, "reset")
                        hard_exit("injected fault: reset")
                    elif kind == "malformed":
                        await log_call(info, "fault", None, "malformed")
                        await emit(wire.malformed_text(info["id"], fault["message"]))
                        continue
                    elif kind == "is_error":
                        text = wire.fault_message("is_error", fault["message"])
                        await log_call(info, "fault", text, "is_error")
                        await emit_obj(wire.error_response(info["id"], info["method"], text))
                        continue
                    elif kind == "stall":
                        info["stalled"] = fault
                        pending[json.dumps(info["id"])] = info
                        tg.start_soon(forward_later, obj, float(fault["seconds"] or 0))
                        continue
                pending[json.dumps(info["id"])] = info
            await forward(obj)
        # stdin closed: stop everything, even a pending wait_for_job
        tg.cancel_scope.cancel()

    async def write_delayed(obj: dict[str, Any], seconds: float) -> None:
        await anyio.sleep(seconds)
        await emit_obj(obj)

    async def writer(tg: anyio.abc.TaskGroup) -> None:
        async for sm in write_r:
            obj = sm.message.model_dump(by_alias=True, mode="json", exclude_none=True)
            info = pending.pop(json.dumps(obj.get("id")), None) if wire.is_response(obj) else None
            if info is None:
                await emit_obj(obj)
                continue
            fault = info.get("after")
            fault_kind = fault["kind"] if fault else (info["stalled"]["kind"] if info.get("stalled") else None)
            if fault is not None:
                kind = fault["kind"]
                if kind == "text_only":
                    obj = wire.strip_structured(obj)
                elif kind == "is_error":
                    obj = wire.error_response(obj.get("id"), info["method"], wire.fault_message("is_error", fault["message"]))
                elif kind == "malformed":
                    await log_call(info, "fault", None, "malformed(after)")
                    await emit(wire.malformed_text(obj.get("id"), fault["message"]))
                    continue
                elif kind == "reset":
                    await log_call(info, "fault", None, "reset(after)")
                    hard_exit("injected fault: reset (after)")
                elif kind == "stall":
                    status, message, job_id = wire.outcome(obj)
                    await log_call(info, status, message, "stall(after)", job_id)
                    tg.start_soon(write_delayed, obj, float(fault["seconds"] or 0))
                    continue
                fault_kind = kind + ("(after)" if fault["after"] and kind != "text_only" else "")
            status, message, job_id = wire.outcome(obj)
            await log_call(info, status, message, fault_kind, job_id)
            await emit_obj(obj)

    async def ticker() -> None:
        while True:
            await anyio.sleep(PRESENCE_TICK_SECONDS)
            if state["registered"]:
                try:
                    await db(store.touch_worker, instance, pid)
                except Exception as e:  # noqa: BLE001
                    log("presence_tick_failed", error=repr(e))

    reason = "stdin closed"
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader, tg)
            tg.start_soon(writer, tg)
            tg.start_soon(ticker)
            await server.run(read_r, write_w, server.create_initialization_options(), raise_exceptions=False)
            reason = "server ended"
            tg.cancel_scope.cancel()
    finally:
        await anyio.to_thread.run_sync(lambda: unregister(reason))
        log("exit", reason=reason)
    return 0
