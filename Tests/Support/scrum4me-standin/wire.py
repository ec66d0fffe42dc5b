"""Helpers shared by both transports: describing requests, logging calls, faults' effects."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import store as st

SECRET_KEYS = ("token", "secret", "password", "authorization", "api_key", "apikey")


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: ("<redacted>" if any(s in k.lower() for s in SECRET_KEYS) else redact(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def describe(msg: Any) -> dict[str, Any] | None:
    """For a JSON-RPC request (a dict with id and method): method, tool, args, job id."""
    if not isinstance(msg, dict) or "method" not in msg or "id" not in msg:
        return None
    method = str(msg.get("method"))
    params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
    tool = None
    args: Any = None
    if method == "tools/call":
        tool = params.get("name")
        args = params.get("arguments") or {}
    elif method == "initialize":
        args = {
            "protocolVersion": params.get("protocolVersion"),
            "clientInfo": params.get("clientInfo"),
        }
    job_id = args.get("job_id") if isinstance(args, dict) else None
    return {
        "id": msg.get("id"),
        "method": method,
        "tool": tool,
        "args": redact(args),
        "job_id": job_id,
        "t0": time.monotonic(),
        "at": st.now_iso(),
    }


def outcome(resp: Any) -> tuple[str, str | None, str | None]:
    """(status, message, job id) of a JSON-RPC response dict, for the call log."""
    if not isinstance(resp, dict):
        return "unknown", None, None
    if "error" in resp:
        e = resp.get("error") or {}
        return "rpc_error", f"{e.get('code')}: {e.get('message')}"[:500], None
    result = resp.get("result")
    if not isinstance(result, dict):
        return "ok", None, None
    if result.get("isError"):
        text = None
        for c in result.get("content") or []:
            if isinstance(c, dict) and c.get("type") == "text":
                text = c.get("text")
                break
        return "error", (text or "")[:500], None
    sc = result.get("structuredContent")
    if isinstance(sc, dict):
        msg = sc.get("status") if isinstance(sc.get("status"), str) else None
        jid = sc.get("job_id") or sc.get("id")
        return "ok", msg, jid if isinstance(jid, str) else None
    if "protocolVersion" in result:
        return "ok", "protocolVersion " + str(result.get("protocolVersion")), None
    return "ok", None, None


def log_call(
    store: st.Store,
    info: dict[str, Any],
    transport: str,
    auth: dict[str, Any] | None,
    instance_id: str | None,
    status: str,
    message: str | None = None,
    fault: str | None = None,
    job_id: str | None = None,
) -> None:
    try:
        store.log_call(
            {
                "at": info.get("at") or st.now_iso(),
                "ended_at": st.now_iso(),
                "duration_ms": int((time.monotonic() - info.get("t0", time.monotonic())) * 1000),
                "transport": transport,
                "pid": os.getpid(),
                "token_id": auth["id"] if auth else None,
                "token_name": auth["name"] if auth else None,
                "instance_id": instance_id,
                "method": info.get("method") or "?",
                "tool": info.get("tool") or info.get("method"),
                "args": json.dumps(info.get("args"), default=str) if info.get("args") is not None else None,
                "job_id": info.get("job_id") or job_id,
                "status": status,
                "message": message,
                "fault": fault,
            }
        )
    except Exception as e:  # the call log must never break a call
        import sys

        sys.stderr.write(json.dumps({"event": "call_log_failed", "error": repr(e)}) + "\n")


def malformed_text(req_id: Any, message: str | None) -> str:
    if message:
        return message
    # Starts like a real answer, then breaks off: not JSON.
    return '{"jsonrpc": "2.0", "id": ' + json.dumps(req_id) + ', "result": {"content": [{"type": "text", "text": "trunc'


def fault_message(kind: str, message: str | None) -> str:
    return message or f"INTERNAL_ERROR: injected fault ({kind})"


def error_response(req_id: Any, method: str, text: str) -> dict[str, Any]:
    """The answer of an `is_error` fault: an isError tool result, or a JSON-RPC error otherwise."""
    if method == "tools/call":
        return {
            "jsonrpc": "2.0",
            "id": req_id,
            "result": {"content": [{"type": "text", "text": text}], "isError": True},
        }
    return {"jsonrpc": "2.0", "id": req_id, "error": {"code": -32603, "message": text}}


def strip_structured(resp: dict[str, Any]) -> dict[str, Any]:
    """`text_only`: keep the text content, drop structuredContent."""
    result = resp.get("result")
    if isinstance(result, dict) and "structuredContent" in result:
        result = dict(result)
        result.pop("structuredContent", None)
        resp = dict(resp)
        resp["result"] = result
    return resp


def is_response(msg: Any) -> bool:
    return isinstance(msg, dict) and "id" in msg and ("result" in msg or "error" in msg) and "method" not in msg
