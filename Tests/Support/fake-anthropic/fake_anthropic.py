#!/usr/bin/env python3
"""A scripted Anthropic Messages API on 127.0.0.1, for fleet's tests.

    fake_anthropic.py serve --script PATH --log PATH [--port 0] [--port-file PATH]
    fake_anthropic.py count --log PATH [--path /v1/messages]    prints {"requests": N}
    fake_anthropic.py requests --log PATH                       prints the logged requests

Standard library only (no venv needed). It answers `POST /v1/messages` like the real API
(a Messages object, or a Server-Sent Events stream with `"stream": true`) with the
rate-limit headers the script says, and `GET /health` with {"ok": true}.

The script is a JSON file, read again on every request, so a test changes the answers
by rewriting it (write a temp file and rename it over the old one):

    {
      "credential": "sk-ant-api03-test",          optional: any other credential gets 401
      "phases": [                                 the first whose "until" is in the future
        {"until": 1764860000.5,                   Unix seconds; omitted: no end
         "status": 200,                           default 200
         "headers": {"anthropic-ratelimit-unified-5h-utilization": "0.65", ...},
         "body": {...},                           replaces the answer's body (errors)
         "delay": 0.0,                            seconds before answering
         "text": "ok"}                            the assistant's reply
      ]
    }

No script file, or no phase left: 200 without rate-limit headers.

Authentication is checked as the API does: `x-api-key`, or `Authorization: Bearer`
which needs `anthropic-beta: oauth-2025-04-20`; `anthropic-version` is required. The
log (`--log`, one JSON object a line) records each request's number, time, path, how
it authenticated (never the credential itself), its version and beta headers, model,
max_tokens, stream flag and the status answered; `count` and `requests` read it.

Python users can also run it in-process: `FakeAnthropic(script, log).start()`, and
build header sets with `unified_headers(...)` and `token_headers(...)`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OAUTH_BETA = "oauth-2025-04-20"


# ---- header sets ----------------------------------------------------------------------


def unified_headers(
    five_hour_used: float | None = None,
    five_hour_reset: float | None = None,
    seven_day_used: float | None = None,
    seven_day_reset: float | None = None,
    status: str | None = "allowed",
) -> dict[str, str]:
    """The `anthropic-ratelimit-unified-*` set a subscription (OAuth) answer carries."""
    h: dict[str, str] = {}
    p = "anthropic-ratelimit-unified-"
    if five_hour_used is not None:
        h[p + "5h-utilization"] = repr(float(five_hour_used))
        h[p + "5h-status"] = "allowed" if five_hour_used < 1 else "rejected"
    if five_hour_reset is not None:
        h[p + "5h-reset"] = str(int(five_hour_reset))
    if seven_day_used is not None:
        h[p + "7d-utilization"] = repr(float(seven_day_used))
        h[p + "7d-status"] = "allowed" if seven_day_used < 1 else "rejected"
    if seven_day_reset is not None:
        h[p + "7d-reset"] = str(int(seven_day_reset))
    if status is not None:
        h[p + "status"] = status
    resets = [r for r in (five_hour_reset, seven_day_reset) if r is not None]
    if resets:
        h[p + "reset"] = str(int(min(resets)))
        h[p + "representative-claim"] = "five_hour" if five_hour_reset is not None else "seven_day"
    return h


def token_headers(remaining: int, limit: int, reset: float | str) -> dict[str, str]:
    """The `anthropic-ratelimit-tokens-*` set an API-key answer carries (reset: Unix or RFC 3339)."""
    if not isinstance(reset, str):
        reset = _dt.datetime.fromtimestamp(reset, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "anthropic-ratelimit-tokens-remaining": str(remaining),
        "anthropic-ratelimit-tokens-limit": str(limit),
        "anthropic-ratelimit-tokens-reset": reset,
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-reset": reset,
    }


def write_script(path: str, script: dict[str, Any]) -> None:
    """Replaces the script file atomically (the server may be reading it)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(script, f)
    os.replace(tmp, path)


# ---- the server -------------------------------------------------------------------------


class _Log:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.count = 0

    def append(self, entry: dict[str, Any]) -> int:
        with self.lock:
            self.count += 1
            entry = {"n": self.count, **entry}
            if self.path:
                with open(self.path, "a") as f:
                    f.write(json.dumps(entry) + "\n")
            return self.count


def _phase(script: dict[str, Any], now: float) -> dict[str, Any] | None:
    for phase in script.get("phases", []):
        until = phase.get("until")
        if until is None or float(until) > now:
            return phase
    return None


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-anthropic/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet: the JSON log is the record
        pass

    # -- plumbing

    def _script(self) -> dict[str, Any]:
        path = self.server.script_path  # type: ignore[attr-defined]
        if not path or not os.path.exists(path):
            return {}
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            sys.stderr.write(f"fake-anthropic: bad script {path}: {e}\n")
            return {}

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", f"req_fake_{int(time.time() * 1000)}")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    # -- routes

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/health":
            self._send(200, {"ok": True})
        else:
            self._send(404, _error("not_found_error", f"no route {self.path}"))

    def do_POST(self) -> None:  # noqa: N802
        raw = self._read_body()
        if self.path.split("?", 1)[0] != "/v1/messages":
            self._send(404, _error("not_found_error", f"no route {self.path}"))
            return
        script = self._script()
        entry: dict[str, Any] = {"at": time.time(), "method": "POST", "path": self.path}
        status, body, headers, stream, text = self._answer(raw, script, entry)
        entry["status"] = status
        n = self.server.log.append(entry)  # type: ignore[attr-defined]
        if status == 200 and stream:
            self._stream(entry.get("model") or "claude-fake", text, headers, n)
        else:
            if status == 200 and body is None:
                body = _message(entry.get("model") or "claude-fake", text, n)
            self._send(status, body, headers)

    def _answer(self, raw: bytes, script: dict[str, Any], entry: dict[str, Any]):
        h = self.headers
        api_key = h.get("x-api-key")
        auth = h.get("authorization") or ""
        beta = h.get("anthropic-beta") or ""
        entry["auth"] = "x-api-key" if api_key else ("bearer" if auth.lower().startswith("bearer ") else "none")
        entry["anthropic_version"] = h.get("anthropic-version")
        entry["anthropic_beta"] = beta or None
        entry["user_agent"] = h.get("user-agent")
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            return 400, _error("invalid_request_error", "body is not JSON"), {}, False, ""
        entry["model"] = req.get("model")
        entry["max_tokens"] = req.get("max_tokens")
        entry["stream"] = bool(req.get("stream"))

        credential = api_key or (auth[7:].strip() if entry["auth"] == "bearer" else None)
        if credential is None:
            return 401, _error("authentication_error", "x-api-key header is required"), {}, False, ""
        if entry["auth"] == "bearer" and OAUTH_BETA not in [b.strip() for b in beta.split(",")]:
            return 401, _error("authentication_error", "OAuth authentication is currently not supported."), {}, False, ""
        wanted = script.get("credential")
        entry["credential_ok"] = wanted is None or credential == wanted
        if not entry["credential_ok"]:
            what = "invalid x-api-key" if api_key else "Invalid bearer token"
            return 401, _error("authentication_error", what), {}, False, ""
        if not h.get("anthropic-version"):
            return 400, _error("invalid_request_error", "anthropic-version: header is required"), {}, False, ""
        if not req.get("model") or not isinstance(req.get("max_tokens"), int) or not req.get("messages"):
            return 400, _error("invalid_request_error", "model, max_tokens and messages are required"), {}, False, ""

        phase = _phase(script, time.time()) or {}
        if phase.get("delay"):
            time.sleep(float(phase["delay"]))
        entry["phase"] = script.get("phases", []).index(phase) if phase in script.get("phases", []) else None
        headers = {str(k): str(v) for k, v in (phase.get("headers") or {}).items()}
        return int(phase.get("status", 200)), phase.get("body"), headers, entry["stream"], str(phase.get("text", "ok"))

    def _stream(self, model: str, text: str, headers: dict[str, str], n: int) -> None:
        """The SSE event sequence of a streamed answer (one text block)."""
        msg = _message(model, "", n)
        msg["content"] = []
        msg["stop_reason"] = None
        events = [
            ("message_start", {"type": "message_start", "message": msg}),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                               "usage": {"output_tokens": max(1, len(text.split()))}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        data = b"".join(f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode() for name, obj in events)
        self._send(200, data, headers, content_type="text/event-stream")


def _message(model: str, text: str, n: int) -> dict[str, Any]:
    return {
        "id": f"msg_fake_{n:06d}", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}], "stop_reason": "max_tokens", "stop_sequence": None,
        "usage": {"input_tokens": 8, "output_tokens": 1},
    }


class FakeAnthropic:
    """The server in-process: `with FakeAnthropic(script_path, log_path) as fake: fake.url`."""

    def __init__(self, script: str | None, log: str | None, port: int = 0) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.script_path = script  # type: ignore[attr-defined]
        self.httpd.log = _Log(log)  # type: ignore[attr-defined]
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests_served(self) -> int:
        return self.httpd.log.count  # type: ignore[attr-defined]

    def start(self) -> "FakeAnthropic":
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "FakeAnthropic":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def read_log(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# ---- CLI ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fake_anthropic.py", description="scripted Anthropic Messages API on 127.0.0.1")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve until SIGTERM/SIGINT")
    s.add_argument("--script", default=None, help="JSON script, read on every request")
    s.add_argument("--log", default=None, help="append one JSON line per request here")
    s.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: pick a free one)")
    s.add_argument("--port-file", default=None, help="write the bound port here once listening")
    c = sub.add_parser("count", help='print {"requests": N} from a log')
    c.add_argument("--log", required=True)
    c.add_argument("--path", default="/v1/messages")
    r = sub.add_parser("requests", help="print the logged requests as a JSON array")
    r.add_argument("--log", required=True)
    args = p.parse_args(argv)

    if args.cmd == "count":
        n = sum(1 for e in read_log(args.log) if e.get("path", "").split("?")[0] == args.path)
        print(json.dumps({"requests": n}))
        return 0
    if args.cmd == "requests":
        print(json.dumps(read_log(args.log), indent=2))
        return 0

    import signal

    fake = FakeAnthropic(args.script, args.log, args.port)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{fake.port}\n")
        os.replace(tmp, args.port_file)
    sys.stderr.write(f"fake-anthropic: listening on {fake.url}\n")
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=fake.httpd.shutdown).start())
    try:
        fake.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    fake.httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
