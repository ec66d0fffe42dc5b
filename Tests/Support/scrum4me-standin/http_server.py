"""`standin.py serve-http`: Streamable HTTP on 127.0.0.1, stateless, bearer token per request.

The MCP work is done by the SDK's `StreamableHTTPSessionManager` (stateless mode) around the
same low-level server as on stdio; this ASGI wrapper in front of it checks the token
(401 with JSON-RPC error -32001), records presence and the call log, picks JSON or SSE for
the answer, and injects faults. The SDK's answer streams through (copied for the call
log) unless a fault changes it; then it is captured whole and sent afterwards.

Routes: POST /mcp; GET|DELETE /mcp -> 405; GET /health -> {"ok":true,...}; else 404.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import sys
from typing import Any

import anyio
import anyio.to_thread
import uvicorn
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

import store as st
import wire
from tools import VERSION, CallCtx, Config, Standin, log

INSTANCE_HEADER = "x-scrum4me-worker-instance"
CHUNK_BYTES = 7
CHUNK_DELAY = 0.01


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers") or []:
        key = k.decode("latin-1").lower()
        val = v.decode("latin-1")
        out[key] = out[key] + ", " + val if key in out else val
    return out


def _bearer(h: dict[str, str]) -> str | None:
    a = h.get("authorization", "").strip()
    if a[:7].lower() == "bearer " and a[7:].strip():
        return a[7:].strip()
    return None


def _accepts(h: dict[str, str]) -> tuple[bool, bool]:
    raw = h.get("accept")
    if raw is None or not raw.strip():
        return True, True
    types_ = [p.split(";")[0].strip().lower() for p in raw.split(",")]
    has_json = any(t in ("application/json", "application/*", "*/*") for t in types_)
    has_sse = any(t in ("text/event-stream", "text/*", "*/*") for t in types_)
    return has_json, has_sse


def _listed(h: dict[str, str]) -> tuple[bool, bool]:
    raw = (h.get("accept") or "").lower()
    return "application/json" in raw, "text/event-stream" in raw


def parse_sse(body: bytes) -> list[dict[str, Any]]:
    """The JSON messages carried by an SSE body (data lines joined per event)."""
    text = body.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    out = []
    for block in text.split("\n\n"):
        data = [ln[5:].lstrip(" ") if ln.startswith("data:") else None for ln in block.split("\n")]
        data = [d for d in data if d is not None]
        if not data:
            continue
        try:
            out.append(json.loads("\n".join(data)))
        except ValueError:
            pass
    return out


def sse_body(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(
        b"event: message\r\ndata: " + json.dumps(m, separators=(",", ":")).encode() + b"\r\n\r\n" for m in messages
    )


class StandinHTTP:
    def __init__(self, store: st.Store, cfg: Config, response_mode: str = "json", strict_accept: bool = True):
        self.store = store
        self.cfg = cfg
        self.response_mode = response_mode
        self.strict_accept = strict_accept
        self.standin = Standin(store, cfg, None)
        self.mgr_json = StreamableHTTPSessionManager(app=self.standin.server, json_response=True, stateless=True)
        self.mgr_sse = StreamableHTTPSessionManager(app=self.standin.server, json_response=False, stateless=True)

    # ---- ASGI ----------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/") or "/"
        method = scope["method"]
        if path == "/health":
            if method in ("GET", "HEAD"):
                await self._json(send, 200, {"ok": True, "name": "scrum4me-standin", "version": VERSION})
            else:
                await self._json(send, 405, {"error": "method not allowed"}, [(b"allow", b"GET")])
            return
        if path == "/mcp":
            if method == "POST":
                await self._post(scope, receive, send)
            else:
                await self._json(
                    send,
                    405,
                    {"jsonrpc": "2.0", "error": {"code": -32000, "message": "Method not allowed: use POST /mcp"}, "id": None},
                    [(b"allow", b"POST")],
                )
            return
        await self._json(send, 404, {"error": "not found", "path": scope["path"]})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        stack = contextlib.AsyncExitStack()
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await stack.enter_async_context(self.mgr_json.run())
                    await stack.enter_async_context(self.mgr_sse.run())
                except Exception as e:  # noqa: BLE001
                    await send({"type": "lifespan.startup.failed", "message": repr(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                with contextlib.suppress(Exception):
                    await stack.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _send_body(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        hs = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        hs.append((b"content-length", str(len(body)).encode()))
        with contextlib.suppress(Exception):
            await send({"type": "http.response.start", "status": status, "headers": hs})
            await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _json(self, send: Any, status: int, obj: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        await self._send_body(
            send, status, [(b"content-type", b"application/json")] + (extra or []), json.dumps(obj).encode()
        )

    async def _db(self, fn: Any, *a: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: fn(*a))

    async def _abort(self, send: Any) -> None:
        """`reset`: close the connection with no answer (RST where possible)."""
        cycle = getattr(send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            await anyio.sleep(0.05)  # let the server see the connection go before the app returns
            return
        # Fallback (server internals not reachable): start an answer and break it off.
        log("reset_fallback")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        raise ConnectionAbortedError("injected reset")

    # ---- POST /mcp -----------------------------------------------------------------

    async def _post(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        h = _headers(scope)
        chunks = []
        while True:
            m = await receive()
            if m["type"] == "http.disconnect":
                return
            chunks.append(m.get("body", b""))
            if not m.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            obj = json.loads(body)
        except ValueError:
            obj = None
        info = wire.describe(obj)

        token = _bearer(h)
        auth = await self._db(self.store.auth, token) if token else None
        if auth is None:
            msg = "Missing Bearer token" if not token else "Invalid or revoked scrum4me token"
            if info is not None:
                await self._db(wire.log_call, self.store, info, "http", None, h.get(INSTANCE_HEADER), "unauthorized", msg, None)
            await self._json(
                send, 401, {"jsonrpc": "2.0", "error": {"code": -32001, "message": msg}, "id": None},
                [(b"www-authenticate", b'Bearer realm="scrum4me"')],
            )
            return

        instance = (h.get(INSTANCE_HEADER) or "").strip() or f"http-{auth['name']}"
        await self._db(
            self.store.register_worker, instance, auth["id"], auth["user_id"], "http", None,
            (scope.get("client") or ["?"])[0], h.get("x-scrum4me-worker-runtime"), None,
        )

        async def log_call(status: str, message: str | None, fault: str | None, job_id: str | None = None) -> None:
            if info is not None:
                await self._db(wire.log_call, self.store, info, "http", auth, instance, status, message, fault, job_id)

        fault = None
        if info is not None and await self._db(self.store.has_faults):
            fault = await self._db(self.store.take_fault, info["method"], info["tool"], "http", auth["id"])
        kind = fault["kind"] if fault else None
        after = bool(fault and fault["after"])
        if fault:
            log("fault", kind=kind, method=info["method"], tool=info["tool"], after=after)

        # Answer format.
        has_json, has_sse = _accepts(h)
        listed_json, listed_sse = _listed(h)
        if kind in ("sse", "sse_chunked"):
            use_sse = True
        elif kind == "json":
            use_sse = False
        else:
            if self.strict_accept and not (listed_json and listed_sse):
                await log_call("rejected", "406 Not Acceptable", kind)
                await self._json(
                    send, 406,
                    {"jsonrpc": "2.0", "error": {"code": -32000, "message": "Not Acceptable: Client must accept both application/json and text/event-stream"}, "id": None},
                )
                return
            if not (has_json or has_sse):
                await log_call("rejected", "406 Not Acceptable", kind)
                await self._json(
                    send, 406,
                    {"jsonrpc": "2.0", "error": {"code": -32000, "message": "Not Acceptable: accept application/json or text/event-stream"}, "id": None},
                )
                return
            use_sse = (self.response_mode == "sse" and has_sse) or not has_json

        # Faults that answer before the tool runs.
        if fault and not after:
            if kind == "http_500":
                await log_call("fault", "HTTP 500", kind)
                await self._send_body(send, 500, [(b"content-type", b"text/plain")], b"Internal Server Error (injected fault)")
                return
            if kind == "http_401":
                await log_call("fault", "HTTP 401", kind)
                await self._json(
                    send, 401,
                    {"jsonrpc": "2.0", "error": {"code": -32001, "message": "Invalid or revoked scrum4me token"}, "id": None},
                    [(b"www-authenticate", b'Bearer realm="scrum4me"')],
                )
                return
            if kind == "reset":
                await log_call("fault", None, kind)
                await self._abort(send)
                return
            if kind == "malformed":
                await log_call("fault", None, kind)
                await self._send_body(
                    send, 200, [(b"content-type", b"application/json")],
                    wire.malformed_text(info["id"], fault["message"]).encode(),
                )
                return
            if kind == "is_error":
                text = wire.fault_message("is_error", fault["message"])
                await log_call("fault", text, kind)
                resp = wire.error_response(info["id"], info["method"], text)
                if use_sse:
                    await self._send_body(send, 200, [(b"content-type", b"text/event-stream")], sse_body([resp]))
                else:
                    await self._json(send, 200, resp)
                return
            if kind == "stall":
                await anyio.sleep(float(fault["seconds"] or 0))

        # Let the SDK answer, captured whole.
        ctx = CallCtx(
            transport="http",
            secret=token,
            instance_id=instance,
            worktree_root=auth.get("worktree_root"),
            repo_roots=auth.get("repo_roots") or {},
            disconnected=anyio.Event(),
        )
        inner = dict(scope)
        inner["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"accept"] + [
            (b"accept", b"application/json, text/event-stream")
        ]
        inner["standin"] = {"ctx": ctx}
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await ctx.disconnected.wait()
            return {"type": "http.disconnect"}

        cap: dict[str, Any] = {"status": 500, "headers": [], "body": []}
        # Without a fault that changes the answer, the SDK's answer streams straight through
        # (an SSE answer's headers and keep-alive pings arrive as the SDK sends them) and is
        # only copied for the call log; otherwise it is held back whole and sent afterwards.
        passthrough = not (fault and (after or kind in ("text_only", "sse_chunked")))

        logged = False

        def parse_captured() -> tuple[int, list, bytes, bool, list[dict[str, Any]], dict[str, Any] | None]:
            status = cap["status"]
            headers = cap["headers"]
            raw = b"".join(cap["body"])
            ctype = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"").decode("latin-1")
            is_sse = ctype.startswith("text/event-stream")
            messages: list[dict[str, Any]] = []
            if status == 200:
                if is_sse:
                    messages = parse_sse(raw)
                else:
                    with contextlib.suppress(ValueError):
                        o = json.loads(raw)
                        messages = [o] if isinstance(o, dict) else []
            response = next((m for m in messages if wire.is_response(m)), None)
            return status, headers, raw, is_sse, messages, response

        async def log_outcome(status: int, raw: bytes, response: dict[str, Any] | None, label: str | None) -> None:
            nonlocal logged
            if logged or info is None:
                return
            logged = True
            if response is not None:
                s_, m_, j_ = wire.outcome(response)
            else:
                s_, m_, j_ = ("http_" + str(status)), raw[:300].decode("utf-8", "replace"), None
            await log_call(s_, m_, label, j_)

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                cap["status"] = message["status"]
                cap["headers"] = list(message.get("headers") or [])
            elif message["type"] == "http.response.body":
                cap["body"].append(message.get("body", b""))
                if passthrough and not message.get("more_body"):
                    # log before the last byte leaves, so a client that saw the answer sees the log
                    st_, _, raw_, _, _, resp_ = parse_captured()
                    await log_outcome(st_, raw_, resp_, kind)
            if passthrough:
                with contextlib.suppress(Exception):
                    await send(message)

        async def watch_disconnect() -> None:
            while True:
                m = await receive()
                if m["type"] == "http.disconnect":
                    ctx.disconnected.set()
                    return

        mgr = self.mgr_sse if use_sse else self.mgr_json
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_disconnect)
            await mgr.handle_request(inner, replay, capture)
            tg.cancel_scope.cancel()
        if ctx.disconnected.is_set() and not cap["body"]:
            await log_call("disconnected", "client went away before the answer", kind)
            return

        status, headers, raw, is_sse, messages, response = parse_captured()

        fault_label = kind + ("(after)" if after and kind != "text_only" else "") if kind else None
        if fault and (after or kind == "text_only") and response is not None:
            if kind == "text_only":
                new = wire.strip_structured(response)
                messages = [new if m is response else m for m in messages]
                response = new
            elif kind == "is_error":
                new = wire.error_response(response.get("id"), info["method"], wire.fault_message("is_error", fault["message"]))
                messages = [new if m is response else m for m in messages]
                response = new
            elif kind in ("http_500", "http_401", "reset", "malformed"):
                s, m_, j = wire.outcome(response)
                await log_call(s, m_, fault_label, j)
                if kind == "http_500":
                    await self._send_body(send, 500, [(b"content-type", b"text/plain")], b"Internal Server Error (injected fault)")
                elif kind == "http_401":
                    await self._json(
                        send, 401,
                        {"jsonrpc": "2.0", "error": {"code": -32001, "message": "Invalid or revoked scrum4me token"}, "id": None},
                    )
                elif kind == "reset":
                    await self._abort(send)
                else:
                    await self._send_body(
                        send, 200, [(b"content-type", b"application/json")],
                        wire.malformed_text(response.get("id"), fault["message"]).encode(),
                    )
                return
            elif kind == "stall":
                await anyio.sleep(float(fault["seconds"] or 0))
            if is_sse:
                raw = sse_body(messages)
            else:
                raw = json.dumps(response).encode()

        await log_outcome(status, raw, response, fault_label)
        if passthrough:
            return

        if kind == "sse_chunked":
            hs = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            delay = float(fault["seconds"]) if fault and fault["seconds"] else CHUNK_DELAY
            try:
                await send({"type": "http.response.start", "status": status, "headers": hs})
                for i in range(0, len(raw), CHUNK_BYTES):
                    await send({"type": "http.response.body", "body": raw[i : i + CHUNK_BYTES], "more_body": True})
                    await anyio.sleep(delay)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except Exception:  # noqa: BLE001
                pass
            return
        await self._send_body(send, status, headers, raw)


async def serve_http(cfg: Config, port: int, port_file: str | None, response_mode: str, strict_accept: bool) -> int:
    store = st.Store(cfg.state)
    store.init()
    app = StandinHTTP(store, cfg, response_mode=response_mode, strict_accept=strict_accept)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        http="h11",
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await anyio.sleep(0.02)
        if port_file:
            tmp = port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{bound}\n")
            os.replace(tmp, port_file)
        log("serving_http", url=f"http://127.0.0.1:{bound}/mcp", state=store.path, lease_seconds=cfg.lease_seconds,
            poll_seconds=cfg.poll_seconds, response_mode=response_mode, strict_accept=strict_accept)

    async with anyio.create_task_group() as tg:
        tg.start_soon(announce)
        await server.serve(sockets=[sock])
        tg.cancel_scope.cancel()
    if port_file:
        with contextlib.suppress(OSError):
            os.unlink(port_file)
    log("exit", reason="http server stopped")
    return 0
