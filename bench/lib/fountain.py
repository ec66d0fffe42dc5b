#!/usr/bin/env python3
"""fountain: a Scrum4Me MCP server over stdio that answers at once, for measuring fleetd
itself (memory over thousands of jobs, its own throughput ceiling) without the stand-in's
cost. Standard library only; not the protocol's reference (Tests/Support is).

    fountain.py --jobs N --go FILE [--kind KIND] [--status DONE]

`wait_for_job` hands out a new job immediately while FILE exists and this process has
handed out fewer than N jobs; otherwise it holds the call (checking every 50 ms) until
its wait_seconds pass and answers timeout. `get_job_status` answers --status (DONE: as if
the agent had reported). Other tools answer a plausible success. Calls are answered
concurrently (a heartbeat while a wait_for_job is pending), one JSON message a line.
"""
import argparse
import json
import os
import sys
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("--jobs", type=int, default=0)
p.add_argument("--go", default="")
p.add_argument("--kind", default="IDEA_GRILL")
p.add_argument("--status", default="DONE")
args = p.parse_args()

out_lock = threading.Lock()
count_lock = threading.Lock()
handed = 0
stopping = False
prefix = "f%x%04x" % (os.getpid(), int(time.time()) & 0xFFFF)


def send(msg):
    line = json.dumps(msg, separators=(",", ":")) + "\n"
    with out_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def result(rid, obj):
    send({"jsonrpc": "2.0", "id": rid, "result": {
        "content": [{"type": "text", "text": json.dumps(obj)}], "structuredContent": obj}})


def take_job():
    global handed
    if not (args.go and os.path.exists(args.go)):
        return None
    with count_lock:
        if handed >= args.jobs:
            return None
        handed += 1
        n = handed
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"job_id": "%s%06d" % (prefix, n), "kind": args.kind, "status": "claimed",
            "config": {"model": "claude-sonnet-4-5", "permission_mode": "acceptEdits"},
            "product_id": "p1", "product": {"id": "p1"}, "retry_count": 0,
            "claimed_at": now, "lease_until": now, "heartbeat_interval_seconds": 60}


def wait_for_job(rid, a):
    deadline = time.monotonic() + float(a.get("wait_seconds", 300))
    while not stopping:
        job = take_job()
        if job is not None:
            return result(rid, job)
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    result(rid, {"status": "timeout", "message": "No job available within wait window"})


def handle(msg):
    rid = msg.get("id")
    method = msg.get("method")
    if rid is None:
        return  # a notification
    if method == "initialize":
        version = (msg.get("params") or {}).get("protocolVersion", "2025-11-25")
        send({"jsonrpc": "2.0", "id": rid, "result": {
            "protocolVersion": version, "capabilities": {"tools": {}},
            "serverInfo": {"name": "fountain", "version": "0"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": rid, "result": {"tools": []}})
    elif method == "tools/call":
        params = msg.get("params") or {}
        name, a = params.get("name"), params.get("arguments") or {}
        if name == "wait_for_job":
            threading.Thread(target=wait_for_job, args=(rid, a), daemon=True).start()
        elif name == "get_worker_settings":
            result(rid, {"min_quota_pct": 0})
        elif name == "worker_heartbeat":
            result(rid, {"ok": True, "last_quota_pct": a.get("last_quota_pct"), "last_quota_check_at": None})
        elif name == "get_job_status":
            result(rid, {"id": a.get("job_id"), "kind": args.kind, "status": args.status})
        elif name == "job_heartbeat":
            result(rid, {"ok": True, "job_id": a.get("job_id"), "lease_until": None,
                         "sprint_run_status": None, "sprint_run_pause_reason": None})
        elif name == "update_job_status":
            result(rid, {"job_id": a.get("job_id"), "status": a.get("status"), "next_action": "wait_for_job_again"})
        else:
            result(rid, {})
    else:
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "Method not found"}})


for raw in sys.stdin:
    raw = raw.strip()
    if raw:
        handle(json.loads(raw))
stopping = True
