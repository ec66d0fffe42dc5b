"""Tests of the fleet test fixtures: the Scrum4Me stand-in and the scripted agent.

Run with the fixtures venv:

    PY=$(scripts/setup-fixtures.sh | tail -1)
    $PY -m pytest -q Tests/Support/test_standin.py

Everything listens on 127.0.0.1 or talks over stdio; every process started is stopped.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, "scrum4me-standin", "standin.py")
AGENT = os.path.join(HERE, "scripted-agent", "agent.py")
PY = sys.executable
PROTOCOL = "2025-11-25"


# ---- helpers ---------------------------------------------------------------------------


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="standin-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def admin(db: str, *args: str, check: bool = True) -> Any:
    p = subprocess.run([PY, STANDIN, "admin", "--state", db, *args], capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError(f"admin {args} failed: {p.stderr}")
    return json.loads(p.stdout) if p.stdout.strip() else None


def job(db: str, jid: str) -> dict[str, Any]:
    return admin(db, "job", jid)


def make_repo(path: str) -> str:
    os.makedirs(path)
    g = ["git", "-C", path, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", "-b", "main", path], check=True)
    with open(os.path.join(path, "README"), "w") as f:
        f.write("fixture repo\n")
    subprocess.run(g + ["add", "README"], check=True)
    subprocess.run(g + ["commit", "-q", "-m", "initial"], check=True)
    return path


class Stdio:
    """A raw line-based MCP client of one `serve-stdio` process."""

    def __init__(self, db: str, token: str | None, instance: str, *extra: str, env: dict[str, str] | None = None):
        e = {k: v for k, v in os.environ.items() if not k.startswith(("SCRUM4ME_", "STANDIN_"))}
        if token is not None:
            e["SCRUM4ME_TOKEN"] = token
        e["SCRUM4ME_WORKER_INSTANCE_ID"] = instance
        e.update(env or {})
        self.proc = subprocess.Popen(
            [PY, STANDIN, "serve-stdio", "--state", db, *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
        )
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.responses: dict[Any, dict[str, Any]] = {}
        self.raw: list[bytes] = []
        self.cond = threading.Condition()
        self.next_id = 1
        self.stderr: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            with self.cond:
                self.raw.append(line)
                try:
                    obj = json.loads(line)
                except ValueError:
                    obj = None
                if isinstance(obj, dict) and "id" in obj and ("result" in obj or "error" in obj):
                    self.responses[obj["id"]] = obj
                self.cond.notify_all()
        with self.cond:
            self.raw.append(b"")  # EOF marker
            self.cond.notify_all()

    def _read_err(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.stderr.append(line)

    def send(self, obj: dict[str, Any]) -> None:
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def start(self, method: str, params: dict[str, Any] | None = None) -> int:
        with self.cond:
            rid = self.next_id
            self.next_id += 1
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return rid

    def wait(self, rid: int, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while rid not in self.responses:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer to request {rid}; stderr: {b''.join(self.stderr)[-2000:]!r}")
                self.cond.wait(left)
            return self.responses.pop(rid)

    def request(self, method: str, params: dict[str, Any] | None = None, timeout: float = 15) -> dict[str, Any]:
        return self.wait(self.start(method, params), timeout)

    def initialize(self) -> dict[str, Any]:
        r = self.request("initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                        "clientInfo": {"name": "test", "version": "0"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return r

    def call(self, tool: str, args: dict[str, Any] | None = None, timeout: float = 15) -> dict[str, Any]:
        r = self.request("tools/call", {"name": tool, "arguments": args or {}}, timeout)
        assert "result" in r, r
        return r["result"]

    def close(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def text(result: dict[str, Any]) -> str:
    return "".join(c.get("text", "") for c in result.get("content", []))


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert not result.get("isError"), text(result)
    assert json.loads(text(result)) == result["structuredContent"]
    return result["structuredContent"]


def error(result: dict[str, Any]) -> str:
    assert result.get("isError") is True, result
    assert "structuredContent" not in result
    assert len(result["content"]) == 1
    return text(result)


class Http:
    def __init__(self, db: str, tmp: str, *extra: str):
        self.port_file = os.path.join(tmp, f"port-{time.monotonic_ns()}")
        self.err_path = self.port_file + ".stderr"
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [PY, STANDIN, "serve-http", "--state", db, "--port", "0", "--port-file", self.port_file, *extra],
                stdout=subprocess.DEVNULL, stderr=err,
            )
        deadline = time.monotonic() + 20
        while not (os.path.exists(self.port_file) and open(self.port_file).read().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve-http did not start: {self.stderr()}")
            time.sleep(0.05)
        self.port = int(open(self.port_file).read())

    def stderr(self) -> str:
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def post(self, body: Any, token: str | None, accept: str = "application/json, text/event-stream",
             headers: dict[str, str] | None = None, timeout: float = 15) -> tuple[int, dict[str, str], bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"content-type": "application/json", "mcp-protocol-version": PROTOCOL}
        if accept:
            h["accept"] = accept
        if token:
            h["authorization"] = f"Bearer {token}"
        h.update(headers or {})
        try:
            c.request("POST", "/mcp", body=json.dumps(body) if not isinstance(body, bytes) else body, headers=h)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def get(self, path: str, method: str = "GET") -> tuple[int, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def tool(self, token: str, name: str, args: dict[str, Any] | None = None, **kw: Any) -> tuple[int, dict[str, str], bytes]:
        return self.post({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                          "params": {"name": name, "arguments": args or {}}}, token, **kw)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def sse_messages(body: bytes) -> list[dict[str, Any]]:
    out = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        data = [ln[5:].lstrip() for ln in block.split("\n") if ln.startswith("data:")]
        if data:
            out.append(json.loads("\n".join(data)))
    return out


def setup_db(tmp: str, tokens: tuple[str, ...] = ("tok-a",), user: str = "alice") -> str:
    db = os.path.join(tmp, "state.sqlite")
    admin(db, "init")
    for t in tokens:
        admin(db, "add-token", "--user", user, "--token", t, "--name", t + "-name")
    return db


# ---- tests -------------------------------------------------------------------------------


def test_presence_settings_heartbeat_and_unauthorized(tmp):
    db = setup_db(tmp)
    admin(db, "settings", "--user", "alice", "--min-quota-pct", "35")
    s = Stdio(db, "tok-a", "slot-a-boot1")
    try:
        init = s.initialize()
        assert init["result"]["protocolVersion"] == PROTOCOL
        # presence registered before the first answer
        w = admin(db, "workers", "--events")
        reg = [e for e in w["events"] if e["event"] == "register" and e["instance_id"] == "slot-a-boot1"]
        first_call = admin(db, "calls")[0]
        assert reg and reg[0]["at"] <= first_call["at"]
        assert ok(s.call("get_worker_settings")) == {"min_quota_pct": 35}
        hb = ok(s.call("worker_heartbeat", {"last_quota_pct": 42, "last_quota_check_at": "2026-01-02T03:04:05Z"}))
        assert hb == {"ok": True, "last_quota_pct": 42, "last_quota_check_at": "2026-01-02T03:04:05.000Z"}
        row = admin(db, "workers")[0]
        assert row["last_quota_pct"] == 42 and row["token_name"] == "tok-a-name" and row["alive"] is True
        assert error(s.call("worker_heartbeat", {"last_quota_pct": 101})).startswith("VALIDATION_ERROR: last_quota_pct")
        admin(db, "drop-worker", "slot-a-boot1")
        assert error(s.call("worker_heartbeat", {"last_quota_pct": 5})).startswith("Worker record not found")
        admin(db, "revoke", "tok-a")
        assert error(s.call("get_worker_settings")) == "UNAUTHORIZED: token invalid or revoked"
    finally:
        assert s.close() == 0
    # SIGTERM removes presence
    admin(db, "add-token", "--user", "alice", "--token", "tok-b")
    s2 = Stdio(db, "tok-b", "slot-b-boot1")
    try:
        s2.initialize()
        assert [w["instance_id"] for w in admin(db, "workers")] == ["slot-b-boot1"]
        s2.proc.send_signal(signal.SIGTERM)
        assert s2.proc.wait(10) == 0
        assert admin(db, "workers") == []
    finally:
        s2.kill()
    # a second process with the same instance id replaces the row; the first one's exit leaves it alone
    d1 = Stdio(db, "tok-b", "dup")
    d2 = None
    try:
        d1.initialize()
        d2 = Stdio(db, "tok-b", "dup")
        d2.initialize()
        ev = [e for e in admin(db, "workers", "--events")["events"] if e["instance_id"] == "dup"]
        assert [e["event"] for e in ev] == ["register", "replace"] and ev[1]["pid"] == d2.proc.pid
        assert d1.close() == 0
        [row] = admin(db, "workers")
        assert row["pid"] == d2.proc.pid and row["registrations"] == 2
    finally:
        d1.kill()
        if d2 is not None:
            d2.close()
    # unknown token: no presence, every tool call is UNAUTHORIZED
    s3 = Stdio(db, "nope", "slot-c")
    try:
        s3.initialize()
        assert error(s3.call("wait_for_job", {"wait_seconds": 1})) == "UNAUTHORIZED: token invalid or revoked"
        assert admin(db, "workers") == []
    finally:
        s3.close()


def test_atomic_claim_two_stdio_servers_racing(tmp):
    db = setup_db(tmp, ("tok-a", "tok-b"))
    ids = admin(db, "enqueue", "--user", "alice", "--kind", "IDEA_GRILL", "--count", "16")
    servers = [Stdio(db, t, f"slot-{t}", "--poll-seconds", "0.05") for t in ("tok-a", "tok-b")]
    got: dict[str, list[str]] = {"tok-a": [], "tok-b": []}
    try:
        for s in servers:
            s.initialize()

        def drain(s: Stdio, tok: str) -> None:
            while True:
                r = ok(s.call("wait_for_job", {"wait_seconds": 1}))
                if r.get("status") == "timeout":
                    return
                assert r["status"] == "claimed"
                got[tok].append(r["job_id"])

        ts = [threading.Thread(target=drain, args=(s, t)) for s, t in zip(servers, ("tok-a", "tok-b"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
    finally:
        for s in servers:
            s.close()
    a, b = set(got["tok-a"]), set(got["tok-b"])
    assert not a & b, "a job was claimed twice"
    assert a | b == set(ids)
    assert len(got["tok-a"]) + len(got["tok-b"]) == len(ids)
    assert a and b, "both servers should have claimed something"
    for j in admin(db, "jobs"):
        assert j["status"] == "CLAIMED" and j["claim_count"] == 1
        want = "tok-a-name" if j["id"] in a else "tok-b-name"
        assert j["claimed_by_token"] == want
        assert "tok-a" != j["claimed_by_token_id"] and "tok-b" != j["claimed_by_token_id"]  # never the secret


def test_stale_requeue_then_failed_after_two_retries(tmp):
    db = setup_db(tmp)
    [jid] = admin(db, "enqueue", "--user", "alice", "--kind", "PR_REVIEW")
    [kept] = admin(db, "enqueue", "--user", "alice", "--kind", "PR_REVIEW")
    s = Stdio(db, "tok-a", "slot-a", env={"STANDIN_LEASE_SECONDS": "1", "STANDIN_POLL_SECONDS": "0.1"})
    try:
        s.initialize()
        first = ok(s.call("wait_for_job", {"wait_seconds": 1}))
        assert first["job_id"] == jid and first["retry_count"] == 0
        second = ok(s.call("wait_for_job", {"wait_seconds": 1}))
        assert second["job_id"] == kept
        # keep `kept` alive with job_heartbeat while `jid` lapses
        for attempt in (1, 2):
            for _ in range(3):
                time.sleep(0.4)
                hb = ok(s.call("job_heartbeat", {"job_id": kept}))
                assert hb["job_id"] == kept and hb["sprint_run_status"] is None
            r = ok(s.call("wait_for_job", {"wait_seconds": 1}))
            assert r["job_id"] == jid and r["retry_count"] == attempt
            assert job(db, jid)["retry_count"] == attempt
        for _ in range(3):
            time.sleep(0.4)
            ok(s.call("job_heartbeat", {"job_id": kept}))
        ok(s.call("update_job_status", {"job_id": kept, "status": "done"}))
        r = ok(s.call("wait_for_job", {"wait_seconds": 1}))
        assert r == {"status": "timeout", "message": "No job available within wait window"}
    finally:
        s.close()
    j = job(db, jid)
    assert j["status"] == "FAILED" and j["error"] == "agent did not complete job within 2 attempts"
    assert j["claim_count"] == 3 and j["retry_count"] == 2
    assert [h["to_status"] for h in j["history"]] == ["QUEUED", "CLAIMED", "QUEUED", "CLAIMED", "QUEUED", "CLAIMED", "FAILED"]
    assert job(db, kept)["status"] == "DONE" and job(db, kept)["claim_count"] == 1


def test_update_job_status_guards_in_order_and_fail_cascade(tmp):
    db = setup_db(tmp, ("tok-a", "tok-b"))
    a = Stdio(db, "tok-a", "slot-a")
    b = Stdio(db, "tok-b", "slot-b")
    try:
        a.initialize()
        b.initialize()
        [j1] = admin(db, "enqueue", "--user", "alice", "--kind", "IDEA_GRILL")
        assert ok(a.call("wait_for_job", {"wait_seconds": 1}))["job_id"] == j1
        # 1. unknown job
        assert error(a.call("update_job_status", {"job_id": "nope", "status": "done"})) == "Job nope not found"
        # 2. another token
        assert error(b.call("update_job_status", {"job_id": j1, "status": "done"})) == (
            "PERMISSION_DENIED: This job was not claimed by your token")
        assert error(b.call("job_heartbeat", {"job_id": j1})).startswith(f"Job {j1} not found, not claimed")
        # 3. cancelled (permission still comes first)
        admin(db, "cancel", j1)
        assert error(a.call("update_job_status", {"job_id": j1, "status": "done"})).startswith("JOB_CANCELLED: ")
        assert error(b.call("update_job_status", {"job_id": j1, "status": "done"})).startswith("PERMISSION_DENIED")
        # 4. already terminal
        [j2] = admin(db, "enqueue", "--user", "alice", "--kind", "IDEA_GRILL")
        ok(a.call("wait_for_job", {"wait_seconds": 1}))
        r = ok(a.call("update_job_status", {"job_id": j2, "status": "running"}))
        assert r["status"] == "running" and r["next_action"] == "idle"
        r = ok(a.call("update_job_status", {"job_id": j2, "status": "done", "summary": "ok"}))
        assert r["status"] == "done" and r["next_action"] == "queue_empty" and r["finished_at"]
        assert error(a.call("update_job_status", {"job_id": j2, "status": "done"})) == (
            "Job is already in terminal state: DONE")
        # 5. skipped only for task jobs, with an error of >= 10 chars
        [j3] = admin(db, "enqueue", "--user", "alice", "--kind", "IDEA_GRILL")
        ok(a.call("wait_for_job", {"wait_seconds": 1}))
        assert error(a.call("update_job_status", {"job_id": j3, "status": "skipped", "error": "0123456789"})).startswith(
            "VALIDATION_ERROR: 'skipped' is only allowed for TASK_IMPLEMENTATION")
        [t1] = admin(db, "enqueue", "--user", "alice", "--kind", "TASK_IMPLEMENTATION", "--worktree", "no")
        ok(a.call("wait_for_job", {"wait_seconds": 1}))
        assert error(a.call("update_job_status", {"job_id": t1, "status": "skipped", "error": "short"})).startswith(
            "VALIDATION_ERROR: 'skipped' requires")
        # 6. done on a task job needs verify first
        assert error(a.call("update_job_status", {"job_id": t1, "status": "done"})).startswith(
            "VALIDATION_ERROR: call verify_task_against_plan")
        assert ok(a.call("verify_task_against_plan", {"job_id": t1}))["verify_result"] == "ALIGNED"
        r = ok(a.call("update_job_status", {"job_id": t1, "status": "done", "branch": "feat/x"}))
        assert r["status"] == "done" and r["verify_result"] == "aligned" and r["branch"] == "feat/x" and r["pushed_at"]
        # bad input
        assert error(a.call("update_job_status", {"job_id": t1, "status": "bogus"})).startswith("VALIDATION_ERROR: status")
        # fail cascade: a failed task job cancels its group's queued and claimed siblings
        g = admin(db, "enqueue", "--user", "alice", "--kind", "TASK_IMPLEMENTATION", "--worktree", "no",
                  "--group", "pbi-7", "--count", "3")
        [other] = admin(db, "enqueue", "--user", "alice", "--kind", "TASK_IMPLEMENTATION", "--worktree", "no",
                        "--group", "pbi-8")
        assert ok(a.call("wait_for_job", {"wait_seconds": 1}))["job_id"] == g[0]
        assert ok(b.call("wait_for_job", {"wait_seconds": 1}))["job_id"] == g[1]
        r = ok(a.call("update_job_status", {"job_id": g[0], "status": "failed", "error": "tests failed"}))
        assert r["status"] == "failed"
        assert [job(db, x)["status"] for x in g] == ["FAILED", "CANCELLED", "CANCELLED"]
        assert job(db, other)["status"] == "QUEUED"
        assert error(b.call("update_job_status", {"job_id": g[1], "status": "done"})) == (
            "JOB_CANCELLED: This job was cancelled by the PBI fail-cascade. "
            "Discard your local changes and call wait_for_job for the next item.")
        st = ok(b.call("get_job_status", {"job_id": g[1]}))
        assert st["status"] == "CANCELLED" and set(st) == {"id", "kind", "status", "summary", "error", "pr_url",
                                                            "created_at", "finished_at"}
        q = ok(a.call("check_queue_empty"))
        assert q["empty"] is False and q["remaining"] == 2  # `other` queued, j3 claimed
    finally:
        a.close()
        b.close()


def test_http_auth_routes_and_revocation(tmp):
    db = setup_db(tmp)
    srv = Http(db, tmp)
    try:
        assert srv.get("/health") == (200, b'{"ok": true, "name": "scrum4me-standin", "version": "0.1.0"}')
        for m in ("GET", "DELETE"):
            st, body = srv.get("/mcp", m)
            assert st == 405 and json.loads(body)["error"]["code"] == -32000
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
        for tok, msg in ((None, "Missing Bearer token"), ("wrong", "Invalid or revoked scrum4me token")):
            st, h, body = srv.post(init, tok)
            assert st == 401 and json.loads(body) == {"jsonrpc": "2.0", "error": {"code": -32001, "message": msg}, "id": None}
        st, h, body = srv.post(init, "tok-a", headers={"x-scrum4me-worker-instance": "slot-a-http"})
        assert st == 200 and h["content-type"].startswith("application/json")
        assert json.loads(body)["result"]["protocolVersion"] == PROTOCOL
        assert [w["instance_id"] for w in admin(db, "workers")] == ["slot-a-http"]
        st, h, body = srv.post(init, "tok-a", accept="application/json")  # upstream: both must be listed
        assert st == 406
        st, h, body = srv.tool("tok-a", "get_worker_settings")
        assert st == 200 and json.loads(body)["result"]["structuredContent"] == {"min_quota_pct": 20}
        admin(db, "revoke", "tok-a-name")
        st, h, body = srv.tool("tok-a", "get_worker_settings")
        assert st == 401 and json.loads(body)["error"]["code"] == -32001
        calls = admin(db, "calls", "--tool", "get_worker_settings")
        assert [c["status"] for c in calls] == ["ok", "unauthorized"]
    finally:
        srv.close()


def test_http_sse_answers_and_sdk_client(tmp):
    db = setup_db(tmp)
    [jid] = admin(db, "enqueue", "--user", "alice", "--kind", "DEPLOY", "--script", '{"mode":"noreport"}')
    srv = Http(db, tmp, "--response-mode", "sse", "--poll-seconds", "0.1")
    try:
        # as upstream: SSE when the client accepts it
        st, h, body = srv.tool("tok-a", "wait_for_job", {"wait_seconds": 1})
        assert st == 200 and h["content-type"].startswith("text/event-stream")
        [msg] = sse_messages(body)
        payload = msg["result"]["structuredContent"]
        assert payload["job_id"] == jid and payload["script"] == {"mode": "noreport"}
        assert payload["config"]["model"] and "allowed_tools" in payload["config"]
        # a `json` fault forces application/json
        admin(db, "fault", "--tool", "job_heartbeat", "--kind", "json")
        st, h, body = srv.tool("tok-a", "job_heartbeat", {"job_id": jid})
        assert h["content-type"].startswith("application/json") and json.loads(body)["result"]["structuredContent"]["ok"]
        # sse_chunked: many small chunks, still one valid SSE answer
        admin(db, "fault", "--tool", "get_job_status", "--kind", "sse_chunked", "--seconds", "0.005")
        req = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                          "params": {"name": "get_job_status", "arguments": {"job_id": jid}}}).encode()
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Accept: application/json, text/event-stream\r\nAuthorization: Bearer tok-a\r\n"
                     b"Connection: close\r\nContent-Length: " + str(len(req)).encode() + b"\r\n\r\n" + req)
        reads, data = 0, b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reads += 1
            data += chunk
        sock.close()
        head, _, rest = data.partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower() and b"text/event-stream" in head.lower()
        assert reads > 5, reads
        # de-chunk
        body, buf = b"", rest
        while buf:
            size_s, _, buf = buf.partition(b"\r\n")
            size = int(size_s, 16)
            if size == 0:
                break
            body, buf = body + buf[:size], buf[size + 2:]
        [msg] = sse_messages(body)
        assert msg["id"] == 9 and msg["result"]["structuredContent"]["status"] == "CLAIMED"
        assert [f["remaining"] for f in admin(db, "faults")] == [0, 0]

        # the official SDK client against the SSE-answering server
        import anyio
        import httpx
        from mcp import ClientSession
        from mcp.client.streamable_http import streamable_http_client

        async def sdk() -> tuple[str, dict[str, Any]]:
            async with httpx.AsyncClient(headers={"Authorization": "Bearer tok-a"}) as c:
                async with streamable_http_client(f"http://127.0.0.1:{srv.port}/mcp", http_client=c) as (r, w, _):
                    async with ClientSession(r, w) as session:
                        init = await session.initialize()
                        res = await session.call_tool("check_queue_empty", {})
                        return init.protocolVersion, res.structuredContent

        version, res = anyio.run(sdk)
        assert version == PROTOCOL and res == {"empty": False, "remaining": 1, "by_product": {"": 1}}
    finally:
        srv.close()


def test_task_job_real_worktree_agent_and_rollback(tmp):
    db = setup_db(tmp)
    repo = make_repo(os.path.join(tmp, "repo"))
    wroot = os.path.join(tmp, "worktrees")
    agent_log = os.path.join(tmp, "agent.jsonl")
    env = {"SCRUM4ME_REPO_ROOT_p1": repo, "SCRUM4ME_AGENT_WORKTREE_DIR": wroot}
    s = Stdio(db, "tok-a", "slot-a", "--lease-seconds", "2", "--poll-seconds", "0.1", env=env)
    try:
        s.initialize()
        # missing repo root: the claim is rolled back with a clear error
        [nr] = admin(db, "enqueue", "--user", "alice", "--kind", "TASK_IMPLEMENTATION", "--product", "p2")
        msg = error(s.call("wait_for_job", {"wait_seconds": 1}))
        assert msg.startswith("No repo root configured for product p2") and "SCRUM4ME_REPO_ROOT_p2" in msg
        j = job(db, nr)
        assert j["status"] == "QUEUED" and j["claim_count"] == 0 and j["claimed_by_token_id"] is None
        admin(db, "cancel", nr)

        [jid] = admin(db, "enqueue", "--user", "alice", "--kind", "TASK_IMPLEMENTATION", "--product", "p1",
                      "--script", '{"mode":"done","report_running":true}')
        p = ok(s.call("wait_for_job", {"product_id": "p1", "wait_seconds": 1}))
        wt = os.path.join(wroot, jid)
        assert p["worktree_path"] == wt and p["branch_name"] == f"feat/story-{jid[:8]}"
        assert os.path.isfile(os.path.join(wt, ".git")) and os.path.isfile(os.path.join(wt, "README"))
        head = subprocess.run(["git", "-C", wt, "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True, text=True)
        assert head.stdout.strip() == p["branch_name"] and p["base_sha"]
        # incident 5: the lease lapses, the retry reuses the same path without "already exists"
        with open(os.path.join(wt, "leftover.txt"), "w") as f:
            f.write("dirty\n")
        admin(db, "expire-lease", jid)
        p2 = ok(s.call("wait_for_job", {"wait_seconds": 1}))
        assert p2["job_id"] == jid and p2["worktree_path"] == wt and p2["retry_count"] == 1
        assert not os.path.exists(os.path.join(wt, "leftover.txt"))

        # the scripted agent finishes it over its own stdio MCP connection
        ppath = os.path.join(tmp, "payload.json")
        with open(ppath, "w") as f:
            json.dump(p2, f)
        mcp_cfg = os.path.join(tmp, "mcp.json")
        with open(mcp_cfg, "w") as f:
            json.dump({"mcpServers": {"scrum4me": {
                "command": PY, "args": [STANDIN, "serve-stdio", "--state", db],
                "env": {"SCRUM4ME_TOKEN": "${SLOT_TOKEN}", "SCRUM4ME_WORKER_INSTANCE_ID": f"slot-a-job-{jid[:8]}",
                        **env}}}}, f)
        aenv = dict(os.environ, PAYLOAD_PATH=ppath, SCRIPTED_AGENT_LOG=agent_log, SLOT_TOKEN="tok-a")
        r = subprocess.run([PY, AGENT, "-p", "do the job", "--output-format", "stream-json", "--verbose",
                            "--model", "x", "--mcp-config", mcp_cfg, "--unknown-flag", "--permission-mode", "acceptEdits"],
                           cwd=wt, env=aenv, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        lines = [json.loads(x) for x in r.stdout.splitlines()]
        assert lines[0]["type"] == "system" and lines[-1]["type"] == "result"
    finally:
        s.close()
    j = job(db, jid)
    assert j["status"] == "DONE" and j["branch"] == f"feat/story-{jid[:8]}" and j["verify_result"] == "ALIGNED"
    assert [h["to_status"] for h in j["history"]][-2:] == ["RUNNING", "DONE"]
    log = subprocess.run(["git", "-C", repo, "log", "--format=%s", j["branch"]], capture_output=True, text=True).stdout
    assert f"scripted agent: job {jid}" in log
    runs = [json.loads(x) for x in open(agent_log)]
    assert [x["event"] for x in runs] == ["start", "end"] and runs[1]["exit_code"] == 0 and runs[1]["job_id"] == jid
    assert "tok-a" not in json.dumps(runs)
    # the agent's own server registered and removed its own presence, under its own instance id
    ev = admin(db, "workers", "--events")["events"]
    assert {e["instance_id"] for e in ev} == {"slot-a", f"slot-a-job-{jid[:8]}"}


def test_fault_injection_stdio(tmp):
    db = setup_db(tmp)
    s = Stdio(db, "tok-a", "slot-a")
    try:
        s.initialize()
        admin(db, "fault", "--tool", "get_worker_settings", "--kind", "is_error", "--count", "2", "--message",
              "UPSTREAM_DOWN: try later")
        admin(db, "fault", "--tool", "*", "--kind", "http_500")  # HTTP only: ignored and kept on stdio
        assert error(s.call("get_worker_settings")) == "UPSTREAM_DOWN: try later"
        assert error(s.call("get_worker_settings")) == "UPSTREAM_DOWN: try later"
        assert ok(s.call("get_worker_settings")) == {"min_quota_pct": 20}
        f = admin(db, "faults")
        assert [(x["kind"], x["remaining"], x["fired"]) for x in f] == [("is_error", 0, 2), ("http_500", 1, 0)]
        admin(db, "clear-faults")
        # text_only: the same result, no structuredContent
        admin(db, "fault", "--tool", "check_queue_empty", "--kind", "text_only")
        r = s.call("check_queue_empty")
        assert "structuredContent" not in r and json.loads(text(r))["empty"] is True
        # stall
        admin(db, "fault", "--tool", "get_worker_settings", "--kind", "stall", "--seconds", "1")
        t0 = time.monotonic()
        ok(s.call("get_worker_settings"))
        assert time.monotonic() - t0 >= 1.0
        # malformed: a line that is not JSON
        admin(db, "fault", "--tool", "get_worker_settings", "--kind", "malformed")
        n = len(s.raw)
        rid = s.start("tools/call", {"name": "get_worker_settings", "arguments": {}})
        with pytest.raises(TimeoutError):
            s.wait(rid, timeout=1.5)
        bad = s.raw[n]
        with pytest.raises(ValueError):
            json.loads(bad)
        assert ok(s.call("get_worker_settings"))  # the server goes on
        # reset --after: the tool ran (the job is claimed), then the process exits without answering
        [jid] = admin(db, "enqueue", "--user", "alice", "--kind", "IDEA_CHAT")
        admin(db, "fault", "--tool", "wait_for_job", "--kind", "reset", "--after")
        rid = s.start("tools/call", {"name": "wait_for_job", "arguments": {"wait_seconds": 1}})
        assert s.proc.wait(10) == 70
        assert rid not in s.responses
        assert job(db, jid)["status"] == "CLAIMED"
        calls = admin(db, "calls", "--method", "tools/call")
        assert [c["fault"] for c in calls] == [
            "is_error", "is_error", None, "text_only", "stall", "malformed", None, "reset(after)"]
        # a crash leaves the presence row behind (only a clean exit removes it)
        assert [w["instance_id"] for w in admin(db, "workers")] == ["slot-a"]
        assert admin(db, "workers")[0]["alive"] is False
    finally:
        s.kill()


def test_fault_injection_http(tmp):
    db = setup_db(tmp)
    srv = Http(db, tmp)
    try:
        admin(db, "fault", "--tool", "get_worker_settings", "--kind", "http_500")
        st, h, body = srv.tool("tok-a", "get_worker_settings")
        assert st == 500
        admin(db, "fault", "--tool", "get_worker_settings", "--kind", "http_401")
        st, h, body = srv.tool("tok-a", "get_worker_settings")
        assert st == 401 and json.loads(body)["error"]["code"] == -32001
        admin(db, "fault", "--tool", "get_worker_settings", "--kind", "malformed")
        st, h, body = srv.tool("tok-a", "get_worker_settings")
        assert st == 200
        with pytest.raises(ValueError):
            json.loads(body)
        admin(db, "fault", "--tool", "get_worker_settings", "--kind", "reset")
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine)):
            srv.tool("tok-a", "get_worker_settings")
        admin(db, "fault", "--tool", "get_worker_settings", "--kind", "is_error")
        st, h, body = srv.tool("tok-a", "get_worker_settings")
        r = json.loads(body)["result"]
        assert st == 200 and r["isError"] is True and r["content"][0]["text"].startswith("INTERNAL_ERROR: injected")
        admin(db, "fault", "--tool", "initialize", "--kind", "stall", "--seconds", "0.5")
        t0 = time.monotonic()
        st, h, body = srv.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                                           "clientInfo": {"name": "t", "version": "0"}}}, "tok-a")
        assert st == 200 and time.monotonic() - t0 >= 0.5
        st, h, body = srv.tool("tok-a", "get_worker_settings")
        assert st == 200 and json.loads(body)["result"]["structuredContent"] == {"min_quota_pct": 20}
        # --after: the tool runs, then the answer is broken (a report that "failed" but landed)
        [jid] = admin(db, "enqueue", "--user", "alice", "--kind", "IDEA_CHAT")
        srv.tool("tok-a", "wait_for_job", {"wait_seconds": 1})
        admin(db, "fault", "--tool", "update_job_status", "--kind", "is_error", "--after")
        st, h, body = srv.tool("tok-a", "update_job_status", {"job_id": jid, "status": "done"})
        assert json.loads(body)["result"]["isError"] is True and job(db, jid)["status"] == "DONE"
        # text_only inside an SSE answer
        admin(db, "fault", "--tool", "get_job_status", "--kind", "text_only")
        st, h, body = srv.tool("tok-a", "get_job_status", {"job_id": jid}, accept="text/event-stream, application/json",
                               headers={})
        r = json.loads(body)["result"] if h["content-type"].startswith("application/json") else sse_messages(body)[0]["result"]
        assert "structuredContent" not in r and json.loads(r["content"][0]["text"])["status"] == "DONE"
        assert all(f["remaining"] == 0 for f in admin(db, "faults"))
        assert [c["fault"] for c in admin(db, "calls") if c["fault"]] == [
            "http_500", "http_401", "malformed", "reset", "is_error", "stall", "is_error(after)", "text_only"]
        assert srv.get("/health")[0] == 200  # still serving after the reset
        assert "reset_fallback" not in srv.stderr() and "Traceback" not in srv.stderr()
    finally:
        srv.close()


def test_scripted_agent_modes(tmp):
    db = setup_db(tmp)
    srv = Http(db, tmp, "--poll-seconds", "0.1")
    agent_log = os.path.join(tmp, "agent.jsonl")
    try:
        mcp_cfg = os.path.join(tmp, "mcp-http.json")
        with open(mcp_cfg, "w") as f:
            json.dump({"mcpServers": {"scrum4me": {"type": "http", "url": f"http://127.0.0.1:{srv.port}/mcp",
                                                   "headers": {"Authorization": "Bearer tok-a",
                                                               "X-Scrum4Me-Worker-Instance": "slot-a-job"}}}}, f)

        def claim(script: dict[str, Any]) -> str:
            admin(db, "enqueue", "--user", "alice", "--kind", "IDEA_MAKE_PLAN", "--script", json.dumps(script))
            st, h, body = srv.tool("tok-a", "wait_for_job", {"wait_seconds": 1})
            payload = json.loads(body)["result"]["structuredContent"]
            path = os.path.join(tmp, f"payload-{payload['job_id']}.json")
            with open(path, "w") as f:
                json.dump(payload, f)
            return path

        def run(path: str, **kw: Any) -> subprocess.Popen:
            env = dict(os.environ, PAYLOAD_PATH=path, SCRIPTED_AGENT_LOG=agent_log)
            return subprocess.Popen([PY, AGENT, "--print", "--mcp-config", mcp_cfg, "--dangerously-skip-permissions"],
                                    cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)

        p = run(claim({"mode": "fail", "message": "boom: scripted"}))
        out, err = p.communicate(30)
        assert p.returncode == 1 and b"boom: scripted" in err
        p = run(claim({"mode": "noreport"}))
        p.communicate(30)
        assert p.returncode == 0
        path = claim({"mode": "report_failed", "message": "scripted failure"})
        p = run(path)
        p.communicate(30)
        assert p.returncode == 0
        jid = json.load(open(path))["job_id"]
        assert job(db, jid)["status"] == "FAILED" and job(db, jid)["error"] == "scripted failure"
        p = run(claim({"mode": "crash"}))
        p.communicate(30)
        assert p.returncode == -signal.SIGABRT
        p = run(claim({"mode": "hang_ignore_term"}))
        time.sleep(1.0)
        p.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert p.poll() is None
        p.kill()
        p.communicate(10)
        p = run(claim({"mode": "hang"}))
        time.sleep(1.0)
        p.send_signal(signal.SIGTERM)
        p.communicate(10)
        assert p.returncode == 143
        path = claim({"mode": "orphan", "seconds": 5})
        p = run(path)
        p.communicate(30)
        assert p.returncode == 0
        jid = json.load(open(path))["job_id"]
        assert job(db, jid)["status"] == "DONE"
        runs = [json.loads(x) for x in open(agent_log)]
        orphan = [r for r in runs if r["event"] == "orphan"][0]["orphan_pid"]
        os.kill(orphan, signal.SIGKILL)  # stop what the test started
        starts = [r["job_id"] for r in runs if r["event"] == "start"]
        assert len(starts) == len(set(starts)) == 7
    finally:
        srv.close()
