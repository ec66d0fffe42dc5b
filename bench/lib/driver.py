#!/usr/bin/env python3
"""driver.py URL TOKEN_FILE...: the stand-in's own ceiling. One thread per token does,
per job, the MCP calls a slot plus a no-op agent make (get_worker_settings,
worker_heartbeat, wait_for_job, the agent's update_job_status done, get_job_status),
over a keep-alive HTTP connection, stateless as the stand-in allows, with no other
work. Runs until killed. Loopback only."""
import http.client
import json
import sys
import threading
import urllib.parse

url = urllib.parse.urlparse(sys.argv[1])
assert url.hostname == "127.0.0.1", "loopback only"


def worker(n, token):
    conn = http.client.HTTPConnection("127.0.0.1", url.port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-11-25", "X-Scrum4Me-Worker-Instance": f"driver-{n}"}
    rid = 0

    def call(name, args):
        nonlocal rid
        rid += 1
        body = json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                           "params": {"name": name, "arguments": args}})
        conn.request("POST", url.path, body, headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{name}: HTTP {resp.status} {data[:200]!r}")
        result = json.loads(data)["result"]
        if result.get("isError"):
            raise RuntimeError(f"{name}: {result['content'][0]['text']}")
        return result.get("structuredContent") or {}

    while True:
        call("get_worker_settings", {})
        call("worker_heartbeat", {"last_quota_pct": 100})
        job = call("wait_for_job", {"wait_seconds": 5})
        if "job_id" not in job:
            continue
        call("update_job_status", {"job_id": job["job_id"], "status": "done", "summary": "driver"})
        call("get_job_status", {"job_id": job["job_id"]})


threads = []
for i, path in enumerate(sys.argv[2:]):
    t = threading.Thread(target=worker, args=(i, open(path).read().strip()), daemon=True)
    t.start()
    threads.append(t)
for t in threads:
    t.join()
