#!/usr/bin/env python3
"""Scripted Anthropic Messages API on 127.0.0.1, for running the real `claude` CLI offline.

    python3 model.py --port 0 --port-file PATH --log PATH.jsonl [--bodies DIR] [--commit-file NAME]
    python3 model.py --loopback-up-only     # in a new network namespace: bring `lo` up, exit

Standard library only (any python3 >= 3.10). Binds 127.0.0.1 only; `--port 0` picks a free
port, written to `--port-file` (atomically, with a newline) once the server accepts
connections, and removed on exit (SIGTERM/SIGINT). Point the CLI at it with
`ANTHROPIC_BASE_URL=http://127.0.0.1:<port>`.

Endpoints:
- `POST /v1/messages` (any query string, e.g. `?beta=true`): `stream: true` answers SSE
  (message_start, content_block_start/delta/stop, message_delta, message_stop), else one
  JSON message. What it answers is decided by the conversation (below).
- `POST /v1/messages/count_tokens`: `{"input_tokens": N}` (a rough count).
- `GET /v1/models`, `GET /v1/models/<id>`: a minimal model list / model.
- `HEAD|GET /`, `/health`, `/api/hello` (the CLI's connectivity check, made only when
  non-essential traffic is not disabled): 200.
- anything else: logged as `unknown`, answered 404 with an Anthropic error body.

The script (a task job, driven by the conversation, so any number of retries or side
requests do not confuse it). Only requests that offer the `Bash` tool are the agent's
main loop; any other request (a title, a summary, a one-token check) gets a short text.
The main loop's next step is the first of these whose tool_use id has no tool_result yet:

1. `Bash`: `cat "$PAYLOAD_PATH"` (the job id, worktree and branch come from the payload:
   the prompt fleetd gives names only the payload's path).
2. `Bash`: in the cwd (the job's worktree), write `<commit-file>` (default
   `scripted-model-<8 of job id>.txt`) and `git commit` it with an inline identity.
3. `mcp__scrum4me__verify_task_against_plan` `{"job_id": ...}`.
4. `mcp__scrum4me__update_job_status` `{"job_id", "status": "done", "branch", "summary"}`.
5. A final text turn (`end_turn`).
A tool_result with `is_error` ends the run early with a text turn naming the failure.

Every request is appended to `--log` as one JSON line: `at, method, path, query, headers`
(the credential headers `x-api-key` and `authorization` replaced by `{"prefix": first 10
characters, "sha256": hex}`), `credential_header` (which one carried a credential),
`model, stream, max_tokens, tools` (the names offered), `messages` (count), `step`
(what was answered: `payload`, `commit`, `verify`, `report`, `final`, `aborted`, `side`,
or the endpoint kind), `tool_results` (our tool_use ids that have results, with
`is_error` and the first 300 characters). `--bodies DIR` also writes each body in full.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import re
import signal
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

SECRET_HEADERS = ("x-api-key", "authorization")
TOOL_PREFIX = "toolu_scripted_"
STEPS = ("payload", "commit", "toolsearch", "verify", "report")
MCP_TOOLS = ("mcp__scrum4me__verify_task_against_plan", "mcp__scrum4me__update_job_status")
MCP_NAME = re.compile(r"mcp__[A-Za-z0-9_-]+?__[A-Za-z0-9_-]+")


def now_iso() -> str:
    t = _dt.datetime.now(_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def diag(event: str, **fields: Any) -> None:
    try:
        sys.stderr.write(json.dumps({"at": now_iso(), "event": event, **fields}) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def redact(name: str, value: str) -> Any:
    if name.lower() not in SECRET_HEADERS:
        return value
    return {"prefix": value[:10], "sha256": hashlib.sha256(value.encode()).hexdigest()}


def text_of(content: Any) -> str:
    """The text of a tool_result's content (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def parse_payload(text: str) -> dict[str, Any]:
    """The claimed payload from `cat $PAYLOAD_PATH` output (tolerates text around the JSON)."""
    start, end = text.find("{"), text.rfind("}")
    if start >= 0 and end > start:
        try:
            obj = json.loads(text[start:end + 1])
            if isinstance(obj, dict):
                return obj
        except ValueError:
            pass
    found: dict[str, Any] = {}
    for key in ("job_id", "branch_name", "worktree_path", "kind"):
        m = re.search(r'"%s"\s*:\s*"([^"]*)"' % key, text)
        if m:
            found[key] = m.group(1)
    return found


def shell_quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


class Script:
    """Decides the next assistant turn from the conversation so far."""

    def __init__(self, commit_file: str | None) -> None:
        self.commit_file = commit_file

    def results(self, messages: list[Any]) -> dict[str, dict[str, Any]]:
        """Our tool_use ids that have a tool_result: {id: {is_error, text}}."""
        out: dict[str, dict[str, Any]] = {}
        for msg in messages:
            if not isinstance(msg, dict) or msg.get("role") != "user" or not isinstance(msg.get("content"), list):
                continue
            for block in msg["content"]:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    tid = str(block.get("tool_use_id", ""))
                    if tid.startswith(TOOL_PREFIX):
                        out[tid] = {"is_error": bool(block.get("is_error")), "text": text_of(block.get("content"))}
        return out

    def next_turn(self, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str, dict[str, Any]]:
        """(step, content blocks, stop_reason, results seen)."""
        tools = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
        messages = body.get("messages") or []
        if "Bash" not in tools:
            return "side", [{"type": "text", "text": "Scripted reply."}], "end_turn", {}
        results = self.results(messages)
        for tid, res in results.items():
            if res["is_error"]:
                return "aborted", [{"type": "text", "text": f"Stopping: tool {tid} failed: {res['text'][:500]}"}], "end_turn", results

        payload = parse_payload(results.get(TOOL_PREFIX + "payload", {}).get("text", ""))
        job_id = str(payload.get("job_id", ""))
        branch = str(payload.get("branch_name", ""))
        for step in STEPS:
            tid = TOOL_PREFIX + step
            if tid in results:
                continue
            if step == "toolsearch" and (all(t in tools for t in MCP_TOOLS) or "ToolSearch" not in tools):
                continue  # the MCP tools' schemas are loaded already (or cannot be deferred)
            if step == "payload":
                use = {"name": "Bash", "input": {"command": 'cat "$PAYLOAD_PATH"', "description": "Read the job payload"}}
                say = "I will read the job payload first."
            elif not job_id:
                text = "Stopping: no job_id in the payload output: " + results.get(TOOL_PREFIX + "payload", {}).get("text", "")[:300]
                return "aborted", [{"type": "text", "text": text}], "end_turn", results
            elif step == "commit":
                name = self.commit_file or f"scripted-model-{job_id[:8]}.txt"
                command = (
                    f"printf '%s\\n' {shell_quote('job ' + job_id + ' done by the scripted model')} > {shell_quote(name)}"
                    f" && git add {shell_quote(name)}"
                    f" && git -c user.name='Scripted Model' -c user.email=scripted-model@localhost"
                    f" commit -q -m {shell_quote('Scripted change for job ' + job_id)}"
                    f" && git rev-parse --abbrev-ref HEAD && git log -1 --format=%H"
                )
                use = {"name": "Bash", "input": {"command": command, "description": "Write a file and commit it"}}
                say = "Now I will make the change and commit it."
            elif step == "toolsearch":
                use = {"name": "ToolSearch", "input": {"query": "select:" + ",".join(MCP_TOOLS), "max_results": 5}}
                say = "Loading the Scrum4Me tools."
            elif step == "verify":
                use = {"name": "mcp__scrum4me__verify_task_against_plan", "input": {"job_id": job_id}}
                say = "Verifying the task against its plan."
            else:
                args: dict[str, Any] = {"job_id": job_id, "status": "done",
                                        "summary": "Scripted model: wrote and committed one file."}
                if branch:
                    args["branch"] = branch
                use = {"name": "mcp__scrum4me__update_job_status", "input": args}
                say = "Reporting the job as done."
            blocks = [{"type": "text", "text": say}, {"type": "tool_use", "id": tid, **use}]
            return step, blocks, "tool_use", results
        return "final", [{"type": "text", "text": f"Job {job_id} is done: committed on {branch or 'the branch'} and reported."}], "end_turn", results


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def chunks(s: str, n: int = 40) -> list[str]:
    return [s[i:i + n] for i in range(0, len(s), n)] or [""]


def message_events(msg: dict[str, Any]) -> bytes:
    """The SSE body of one message, as the Messages API streams it."""
    start = dict(msg, content=[], stop_reason=None, stop_sequence=None,
                 usage=dict(msg["usage"], output_tokens=1))
    out = [sse("message_start", {"type": "message_start", "message": start}), sse("ping", {"type": "ping"})]
    for i, block in enumerate(msg["content"]):
        if block["type"] == "text":
            out.append(sse("content_block_start", {"type": "content_block_start", "index": i,
                                                   "content_block": {"type": "text", "text": ""}}))
            for part in chunks(block["text"]):
                out.append(sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "text_delta", "text": part}}))
        else:
            out.append(sse("content_block_start", {"type": "content_block_start", "index": i,
                                                   "content_block": {"type": "tool_use", "id": block["id"],
                                                                     "name": block["name"], "input": {}}}))
            for part in chunks(json.dumps(block["input"])):
                out.append(sse("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "input_json_delta", "partial_json": part}}))
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(sse("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                                     "usage": {"output_tokens": msg["usage"]["output_tokens"]}}))
    out.append(sse("message_stop", {"type": "message_stop"}))
    return b"".join(out)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], log_path: str, bodies: str | None, script: Script) -> None:
        super().__init__(addr, Handler)
        self.log_path = log_path
        self.bodies = bodies
        self.script = script
        self.lock = threading.Lock()
        self.count = 0

    def record(self, entry: dict[str, Any], body: bytes) -> None:
        with self.lock:
            self.count += 1
            entry["n"] = self.count
            if self.bodies and body:
                with open(os.path.join(self.bodies, f"{self.count:04d}.json"), "wb") as f:
                    f.write(body)
            with open(self.log_path, "a") as f:
                f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the JSONL log says it all
        pass

    def _entry(self, body: bytes) -> dict[str, Any]:
        url = urlsplit(self.path)
        headers = {k.lower(): redact(k, v) for k, v in self.headers.items()}
        cred = [h for h in SECRET_HEADERS if h in headers]
        return {"at": now_iso(), "method": self.command, "path": url.path, "query": url.query,
                "headers": headers, "credential_header": cred[0] if cred else None, "body_bytes": len(body)}

    def _send(self, status: int, ctype: str, data: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_scripted_" + uuid.uuid4().hex[:16])
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, "application/json", json.dumps(obj).encode())

    def _error(self, status: int, kind: str, message: str) -> None:
        self._json(status, {"type": "error", "error": {"type": kind, "message": message}})

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        entry = self._entry(b"")
        path = urlsplit(self.path).path.rstrip("/")
        if path in ("", "/health", "/api/hello"):
            entry["step"] = "health"
            self._json(200, {"ok": True, "name": "scripted-model"})
        elif path == "/v1/models":
            entry["step"] = "models"
            self._json(200, {"data": [model_info("claude-sonnet-4-5")], "has_more": False,
                             "first_id": "claude-sonnet-4-5", "last_id": "claude-sonnet-4-5"})
        elif path.startswith("/v1/models/"):
            entry["step"] = "model"
            self._json(200, model_info(path.rsplit("/", 1)[1]))
        else:
            entry["step"] = "unknown"
            self._error(404, "not_found_error", f"scripted model: no {self.command} {path}")
        self.server.record(entry, b"")

    def do_POST(self) -> None:
        body = self._read_body()
        entry = self._entry(body)
        path = urlsplit(self.path).path.rstrip("/")
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            req = None
        if not isinstance(req, dict):
            entry["step"] = "bad_json"
            self.server.record(entry, body)
            self._error(400, "invalid_request_error", "body is not a JSON object")
            return
        if path == "/v1/messages/count_tokens":
            entry["step"] = "count_tokens"
            self.server.record(entry, body)
            self._json(200, {"input_tokens": max(1, len(body) // 4)})
            return
        if path != "/v1/messages":
            entry["step"] = "unknown"
            self.server.record(entry, body)
            self._error(404, "not_found_error", f"scripted model: no POST {path}")
            return

        model = str(req.get("model") or "claude-sonnet-4-5")
        step, content, stop, results = self.server.script.next_turn(req)
        entry.update({
            "model": model, "stream": bool(req.get("stream")), "max_tokens": req.get("max_tokens"),
            "tools": [t.get("name") for t in req.get("tools") or [] if isinstance(t, dict)],
            "mcp_names": sorted(set(MCP_NAME.findall(body.decode("utf-8", "replace")))),
            "messages": len(req.get("messages") or []), "step": step,
            "tool_results": {k: {"is_error": v["is_error"], "text": v["text"][:300]} for k, v in results.items()},
        })
        self.server.record(entry, body)
        diag("messages", step=step, model=model, stream=entry["stream"], messages=entry["messages"])
        msg = {
            "id": "msg_scripted_" + uuid.uuid4().hex[:20], "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": max(1, len(body) // 4), "output_tokens": 5 + sum(len(json.dumps(b)) // 4 for b in content),
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }
        if req.get("stream"):
            self._send(200, "text/event-stream; charset=utf-8", message_events(msg), {"Cache-Control": "no-cache"})
        else:
            self._json(200, msg)


def model_info(model_id: str) -> dict[str, Any]:
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": "2025-01-01T00:00:00Z"}


def loopback_up() -> None:
    """Bring `lo` up (a new network namespace starts with it down), without iproute2."""
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, siocgifflags, struct.pack("16sH", b"lo", 0))[:18])[1]
        if not flags & iff_up:
            fcntl.ioctl(s, siocsifflags, struct.pack("16sH", b"lo", flags | iff_up))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="Scripted Anthropic Messages API on 127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--log", help="JSONL file: one line per request (required to serve)")
    ap.add_argument("--bodies", help="directory for every request body, in full")
    ap.add_argument("--commit-file", help="name of the file the Bash step commits")
    ap.add_argument("--loopback-up-only", action="store_true",
                    help="bring the loopback interface up (in a new network namespace) and exit")
    args = ap.parse_args(argv)
    if args.loopback_up_only:
        loopback_up()
        return 0
    if not args.log:
        ap.error("--log is required")
    if args.bodies:
        os.makedirs(args.bodies, exist_ok=True)

    server = Server(("127.0.0.1", args.port), args.log, args.bodies, Script(args.commit_file))
    port = server.server_address[1]

    def stop(signum: int, _frame: Any) -> None:
        diag("signal", signal=signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    diag("serving", url=f"http://127.0.0.1:{port}", log=args.log)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if args.port_file:
            try:
                os.unlink(args.port_file)
            except OSError:
                pass
        diag("exit")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
