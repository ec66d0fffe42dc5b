"""State of the Scrum4Me stand-in: one SQLite file shared by every server process.

Every operation opens its own connection (WAL mode, busy timeout) and every write runs in
a `BEGIN IMMEDIATE` transaction, so that several stand-in processes (one per worker slot,
plus the admin CLI) can use the same file at once and a claim is atomic across them.
Times are stored as ISO-8601 UTC strings with milliseconds (`2026-01-02T03:04:05.678Z`),
which sort and compare correctly as text.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import secrets
import sqlite3
import string
from typing import Any, Iterator

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000

JOB_STATES = ("QUEUED", "CLAIMED", "RUNNING", "DONE", "FAILED", "CANCELLED", "SKIPPED")
ACTIVE_STATES = ("QUEUED", "CLAIMED", "RUNNING")
OWNED_STATES = ("CLAIMED", "RUNNING")
TERMINAL_STATES = ("DONE", "FAILED", "CANCELLED", "SKIPPED")
JOB_KINDS = (
    "TASK_IMPLEMENTATION",
    "SPRINT_IMPLEMENTATION",
    "IDEA_GRILL",
    "IDEA_MAKE_PLAN",
    "IDEA_REVIEW_PLAN",
    "IDEA_MAKE_SPEC",
    "IDEA_REVISE_SPEC",
    "IDEA_CHAT",
    "PLAN_CHAT",
    "PR_REVIEW",
    "SPEC_REVIEW",
    "TASK_REVIEW",
    "DEPLOY",
    "DOCS_AUDIT",
)
WORKTREE_KINDS_DEFAULT = ("TASK_IMPLEMENTATION", "SPRINT_IMPLEMENTATION")
SPRINT_RUN_STATES = ("QUEUED", "RUNNING", "PAUSED", "CANCELLED", "FAILED", "DONE")
PUSH_OUTCOMES = ("ok", "no-credentials", "conflict", "unknown")
STALE_ERROR_MSG = "agent did not complete job within 2 attempts"
MAX_RETRIES = 2

FAULT_KINDS = (
    "http_500",
    "http_401",
    "reset",
    "stall",
    "malformed",
    "is_error",
    "text_only",
    "sse_chunked",
    "sse",
    "json",
)
HTTP_ONLY_FAULTS = ("http_500", "http_401", "sse_chunked", "sse", "json")
STDIO_FAULTS = tuple(k for k in FAULT_KINDS if k not in HTTP_ONLY_FAULTS)

DEFAULT_CONFIG: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "thinking_budget": 0,
    "permission_mode": "acceptEdits",
    "allowed_tools": ["Read", "Edit", "Write", "Bash", "Glob", "Grep", "mcp__scrum4me"],
    "max_turns": 100,
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    min_quota_pct INTEGER NOT NULL DEFAULT 20,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    secret TEXT UNIQUE NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    worktree_root TEXT,
    repo_roots TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    product_id TEXT,
    grp TEXT,
    needs_worktree INTEGER NOT NULL DEFAULT 0,
    config TEXT NOT NULL,
    script TEXT NOT NULL DEFAULT '{}',
    push_outcome TEXT NOT NULL DEFAULT 'ok',
    created_at TEXT NOT NULL,
    claimed_by_token_id TEXT,
    claimed_by_instance TEXT,
    claim_count INTEGER NOT NULL DEFAULT 0,
    retry_count INTEGER NOT NULL DEFAULT 0,
    claimed_at TEXT,
    lease_until TEXT,
    started_at TEXT,
    finished_at TEXT,
    branch TEXT,
    worktree_path TEXT,
    base_sha TEXT,
    summary TEXT,
    error TEXT,
    verify_result TEXT,
    pushed_at TEXT,
    pr_url TEXT,
    sprint_run_id TEXT,
    sprint_run_status TEXT,
    sprint_run_pause_reason TEXT,
    last_payload TEXT
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(user_id, status, seq);
CREATE TABLE IF NOT EXISTS job_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    at TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    actor TEXT,
    note TEXT
);
CREATE INDEX IF NOT EXISTS job_events_job ON job_events(job_id, id);
CREATE TABLE IF NOT EXISTS workers (
    instance_id TEXT PRIMARY KEY,
    token_id TEXT,
    user_id TEXT,
    transport TEXT NOT NULL,
    pid INTEGER,
    hostname TEXT,
    runtime TEXT,
    capabilities TEXT,
    started_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    last_heartbeat_at TEXT,
    last_quota_pct INTEGER,
    last_quota_check_at TEXT,
    registrations INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS presence_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    token_id TEXT,
    event TEXT NOT NULL,
    pid INTEGER,
    transport TEXT,
    note TEXT
);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    ended_at TEXT,
    duration_ms INTEGER,
    transport TEXT NOT NULL,
    pid INTEGER,
    token_id TEXT,
    token_name TEXT,
    instance_id TEXT,
    method TEXT NOT NULL,
    tool TEXT,
    args TEXT,
    job_id TEXT,
    status TEXT NOT NULL,
    message TEXT,
    fault TEXT
);
CREATE INDEX IF NOT EXISTS calls_tool ON calls(tool, id);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tool TEXT NOT NULL,
    kind TEXT NOT NULL,
    remaining INTEGER NOT NULL,
    total INTEGER NOT NULL,
    fired INTEGER NOT NULL DEFAULT 0,
    seconds REAL,
    message TEXT,
    after INTEGER NOT NULL DEFAULT 0,
    token_id TEXT,
    created_at TEXT NOT NULL
);
"""

_ID_ALPHABET = string.ascii_lowercase + string.digits


class StoreError(Exception):
    """An admin-level error (bad argument, unknown row)."""


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def iso(t: _dt.datetime | None) -> str | None:
    if t is None:
        return None
    return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def now_iso() -> str:
    return iso(utcnow())  # type: ignore[return-value]


def iso_in(seconds: float) -> str:
    return iso(utcnow() + _dt.timedelta(seconds=seconds))  # type: ignore[return-value]


def parse_iso(value: str) -> _dt.datetime:
    v = value.strip()
    if v.endswith("Z") or v.endswith("z"):
        v = v[:-1] + "+00:00"
    t = _dt.datetime.fromisoformat(v)
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return t


def new_id(prefix: str = "", length: int = 25) -> str:
    """An id of random lowercase letters and digits (cuid-like, 25 characters by default)."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _row(r: sqlite3.Row | None) -> dict[str, Any] | None:
    return dict(r) if r is not None else None


def _loads(s: str | None, default: Any) -> Any:
    if s is None or s == "":
        return default
    try:
        return json.loads(s)
    except ValueError:
        return default


class Store:
    def __init__(self, path: str):
        if not path:
            raise StoreError("no state file given (--state PATH or STANDIN_STATE)")
        self.path = os.path.abspath(path)

    # ---- connections -------------------------------------------------------------

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        conn = self.connect()
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE takes the write lock up front."""
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
        finally:
            conn.close()

    def init(self) -> dict[str, Any]:
        d = os.path.dirname(self.path)
        if d:
            os.makedirs(d, exist_ok=True)
        conn = self.connect()
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("BEGIN IMMEDIATE")
            for stmt in SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(
                "INSERT INTO meta(key, value) VALUES('schema_version', ?) "
                "ON CONFLICT(key) DO NOTHING",
                (str(SCHEMA_VERSION),),
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
        return {"ok": True, "state": self.path, "schema_version": SCHEMA_VERSION, "journal_mode": mode}

    # ---- users and tokens --------------------------------------------------------

    def _ensure_user(self, c: sqlite3.Connection, name: str) -> dict[str, Any]:
        r = c.execute("SELECT * FROM users WHERE name=?", (name,)).fetchone()
        if r is None:
            uid = new_id("usr_", 10)
            c.execute(
                "INSERT INTO users(id, name, created_at) VALUES(?,?,?)", (uid, name, now_iso())
            )
            r = c.execute("SELECT * FROM users WHERE id=?", (uid,)).fetchone()
        return dict(r)

    def add_token(
        self,
        user: str,
        secret: str,
        name: str | None = None,
        worktree_root: str | None = None,
        repo_roots: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        if not secret:
            raise StoreError("empty token")
        with self.write() as c:
            u = self._ensure_user(c, user)
            existing = c.execute("SELECT * FROM tokens WHERE secret=?", (secret,)).fetchone()
            if existing is not None:
                if existing["user_id"] != u["id"]:
                    raise StoreError("token already belongs to another user")
                roots = _loads(existing["repo_roots"], {})
                roots.update(repo_roots or {})
                c.execute(
                    "UPDATE tokens SET name=COALESCE(?, name), worktree_root=COALESCE(?, worktree_root), "
                    "repo_roots=? WHERE id=?",
                    (name, worktree_root, json.dumps(roots), existing["id"]),
                )
                tid = existing["id"]
            else:
                tid = new_id("tok_", 10)
                if not name:
                    n = c.execute("SELECT COUNT(*) FROM tokens WHERE user_id=?", (u["id"],)).fetchone()[0]
                    name = f"{user}-{n + 1}"
                c.execute(
                    "INSERT INTO tokens(id, name, user_id, secret, created_at, worktree_root, repo_roots) "
                    "VALUES(?,?,?,?,?,?,?)",
                    (tid, name, u["id"], secret, now_iso(), worktree_root, json.dumps(repo_roots or {})),
                )
            t = c.execute("SELECT * FROM tokens WHERE id=?", (tid,)).fetchone()
        return self._token_public(dict(t), user)

    @staticmethod
    def _token_public(t: dict[str, Any], user_name: str | None = None) -> dict[str, Any]:
        return {
            "token_id": t["id"],
            "name": t["name"],
            "user": user_name,
            "user_id": t["user_id"],
            "created_at": t["created_at"],
            "revoked_at": t["revoked_at"],
            "worktree_root": t["worktree_root"],
            "repo_roots": _loads(t["repo_roots"], {}),
        }

    def tokens(self) -> list[dict[str, Any]]:
        with self.read() as c:
            rows = c.execute(
                "SELECT t.*, u.name AS user_name FROM tokens t JOIN users u ON u.id=t.user_id ORDER BY t.created_at"
            ).fetchall()
        return [self._token_public(dict(r), r["user_name"]) for r in rows]

    def _find_token(self, c: sqlite3.Connection, ref: str) -> sqlite3.Row | None:
        return c.execute(
            "SELECT * FROM tokens WHERE secret=? OR id=? OR name=? ORDER BY (secret=?) DESC LIMIT 1",
            (ref, ref, ref, ref),
        ).fetchone()

    def revoke(self, ref: str) -> dict[str, Any]:
        with self.write() as c:
            t = self._find_token(c, ref)
            if t is None:
                raise StoreError(f"unknown token {ref!r}")
            c.execute("UPDATE tokens SET revoked_at=COALESCE(revoked_at, ?) WHERE id=?", (now_iso(), t["id"]))
            t = c.execute("SELECT * FROM tokens WHERE id=?", (t["id"],)).fetchone()
        return self._token_public(dict(t))

    def auth(self, secret: str | None) -> dict[str, Any] | None:
        """The token (with its user) for a secret, or None when unknown or revoked."""
        if not secret:
            return None
        with self.read() as c:
            r = c.execute(
                "SELECT t.*, u.name AS user_name, u.min_quota_pct FROM tokens t JOIN users u ON u.id=t.user_id "
                "WHERE t.secret=?",
                (secret,),
            ).fetchone()
        if r is None or r["revoked_at"] is not None:
            return None
        d = dict(r)
        d["repo_roots"] = _loads(d["repo_roots"], {})
        d.pop("secret", None)
        return d

    def settings(self, user: str, min_quota_pct: int) -> dict[str, Any]:
        if not 0 <= min_quota_pct <= 100:
            raise StoreError("min_quota_pct must be 0..100")
        with self.write() as c:
            u = self._ensure_user(c, user)
            c.execute("UPDATE users SET min_quota_pct=? WHERE id=?", (min_quota_pct, u["id"]))
        return {"user": user, "user_id": u["id"], "min_quota_pct": min_quota_pct}

    def user_settings(self, user_id: str) -> dict[str, Any] | None:
        with self.read() as c:
            return _row(c.execute("SELECT * FROM users WHERE id=?", (user_id,)).fetchone())

    # ---- jobs --------------------------------------------------------------------

    @staticmethod
    def _event(c: sqlite3.Connection, job_id: str, frm: str | None, to: str, actor: str | None, note: str | None = None) -> None:
        c.execute(
            "INSERT INTO job_events(job_id, at, from_status, to_status, actor, note) VALUES(?,?,?,?,?,?)",
            (job_id, now_iso(), frm, to, actor, note),
        )

    def enqueue(
        self,
        user: str,
        kind: str,
        product: str | None = None,
        count: int = 1,
        config: dict[str, Any] | None = None,
        script: dict[str, Any] | None = None,
        group: str | None = None,
        worktree: str = "auto",
        push_outcome: str = "ok",
        sprint_run_status: str | None = None,
    ) -> list[str]:
        if kind not in JOB_KINDS:
            raise StoreError(f"unknown kind {kind!r}; one of {', '.join(JOB_KINDS)}")
        if count < 1:
            raise StoreError("count must be >= 1")
        if push_outcome not in PUSH_OUTCOMES:
            raise StoreError(f"push outcome must be one of {', '.join(PUSH_OUTCOMES)}")
        if worktree not in ("auto", "yes", "no"):
            raise StoreError("worktree must be auto, yes or no")
        needs = kind in WORKTREE_KINDS_DEFAULT if worktree == "auto" else worktree == "yes"
        cfg = dict(DEFAULT_CONFIG)
        cfg.update(config or {})
        if kind == "SPRINT_IMPLEMENTATION":
            srs = sprint_run_status or "QUEUED"
            if srs not in SPRINT_RUN_STATES:
                raise StoreError(f"sprint run status must be one of {', '.join(SPRINT_RUN_STATES)}")
        else:
            srs = None
        ids = []
        with self.write() as c:
            u = self._ensure_user(c, user)
            for _ in range(count):
                jid = new_id()
                c.execute(
                    "INSERT INTO jobs(id, kind, status, user_id, product_id, grp, needs_worktree, config, script, "
                    "push_outcome, created_at, sprint_run_id, sprint_run_status) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        jid,
                        kind,
                        "QUEUED",
                        u["id"],
                        product,
                        group,
                        1 if needs else 0,
                        json.dumps(cfg),
                        json.dumps(script or {}),
                        push_outcome,
                        now_iso(),
                        new_id("sr_", 12) if srs else None,
                        srs,
                    ),
                )
                self._event(c, jid, None, "QUEUED", "admin", "enqueued")
                ids.append(jid)
        return ids

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        with self.read() as c:
            return _row(c.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def jobs(self, job_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        q = (
            "SELECT j.*, u.name AS user, t.name AS claimed_by_token FROM jobs j JOIN users u ON u.id=j.user_id "
            "LEFT JOIN tokens t ON t.id=j.claimed_by_token_id"
        )
        where, args = [], []
        if job_id:
            where.append("j.id=?")
            args.append(job_id)
        if status:
            where.append("j.status=?")
            args.append(status.upper())
        if where:
            q += " WHERE " + " AND ".join(where)
        q += " ORDER BY j.seq"
        with self.read() as c:
            rows = [dict(r) for r in c.execute(q, args).fetchall()]
            for r in rows:
                r["history"] = [
                    {k: e[k] for k in ("at", "from_status", "to_status", "actor", "note")}
                    for e in c.execute(
                        "SELECT * FROM job_events WHERE job_id=? ORDER BY id", (r["id"],)
                    ).fetchall()
                ]
                r["group"] = r.pop("grp")
                r["product"] = r["product_id"]
                r["needs_worktree"] = bool(r["needs_worktree"])
                r["config"] = _loads(r["config"], {})
                r["script"] = _loads(r["script"], {})
                r["last_payload"] = _loads(r["last_payload"], None)
                r.pop("seq", None)
        return rows

    def cancel(self, job_id: str, reason: str | None = None) -> dict[str, Any]:
        with self.write() as c:
            j = c.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if j is None:
                raise StoreError(f"unknown job {job_id}")
            if j["status"] in TERMINAL_STATES:
                raise StoreError(f"job {job_id} is already {j['status']}")
            c.execute(
                "UPDATE jobs SET status='CANCELLED', finished_at=?, error=COALESCE(error, ?) WHERE id=?",
                (now_iso(), reason or "cancelled by an operator", job_id),
            )
            self._event(c, job_id, j["status"], "CANCELLED", "admin", reason or "cancelled by an operator")
        return self.jobs(job_id)[0]

    def set_sprint_status(self, job_id: str, status: str, reason: str | None = None) -> dict[str, Any]:
        status = status.upper()
        if status not in SPRINT_RUN_STATES:
            raise StoreError(f"sprint run status must be one of {', '.join(SPRINT_RUN_STATES)}")
        with self.write() as c:
            j = c.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if j is None:
                raise StoreError(f"unknown job {job_id}")
            if j["kind"] != "SPRINT_IMPLEMENTATION":
                raise StoreError(f"job {job_id} is not a sprint job")
            c.execute(
                "UPDATE jobs SET sprint_run_status=?, sprint_run_pause_reason=? WHERE id=?",
                (status, reason if status == "PAUSED" else None, job_id),
            )
        return self.jobs(job_id)[0]

    def expire_lease(self, job_id: str) -> dict[str, Any]:
        with self.write() as c:
            n = c.execute(
                "UPDATE jobs SET lease_until=? WHERE id=? AND status IN ('CLAIMED','RUNNING')",
                (iso_in(-1), job_id),
            ).rowcount
            if n == 0:
                raise StoreError(f"job {job_id} is not claimed or running")
        return self.jobs(job_id)[0]

    def requeue_stale(self, user_id: str | None = None, actor: str = "server") -> dict[str, list[str]]:
        """Requeue (or fail, after two retries) the jobs whose lease has passed."""
        now = now_iso()
        failed, requeued = [], []
        with self.write() as c:
            q = "SELECT * FROM jobs WHERE status IN ('CLAIMED','RUNNING') AND lease_until IS NOT NULL AND lease_until < ?"
            args: list[Any] = [now]
            if user_id is not None:
                q += " AND user_id=?"
                args.append(user_id)
            for j in c.execute(q, args).fetchall():
                if j["retry_count"] >= MAX_RETRIES:
                    c.execute(
                        "UPDATE jobs SET status='FAILED', finished_at=?, error=? WHERE id=?",
                        (now, STALE_ERROR_MSG, j["id"]),
                    )
                    self._event(c, j["id"], j["status"], "FAILED", actor, "lease expired: " + STALE_ERROR_MSG)
                    if j["kind"] == "SPRINT_IMPLEMENTATION":
                        c.execute("UPDATE jobs SET sprint_run_status='FAILED' WHERE id=?", (j["id"],))
                    failed.append(j["id"])
                else:
                    c.execute(
                        "UPDATE jobs SET status='QUEUED', claimed_by_token_id=NULL, claimed_by_instance=NULL, "
                        "claimed_at=NULL, lease_until=NULL, retry_count=retry_count+1 WHERE id=?",
                        (j["id"],),
                    )
                    self._event(
                        c, j["id"], j["status"], "QUEUED", actor,
                        f"lease expired; retry {j['retry_count'] + 1} of {MAX_RETRIES}",
                    )
                    requeued.append(j["id"])
        return {"failed": failed, "requeued": requeued}

    def try_claim(
        self,
        user_id: str,
        token_id: str,
        instance_id: str,
        lease_seconds: float,
        product_id: str | None = None,
    ) -> dict[str, Any] | None:
        """Atomically claim the oldest QUEUED job of the user (and product). None if none."""
        with self.write() as c:
            q = (
                "SELECT * FROM jobs WHERE user_id=? AND status='QUEUED' "
                "AND (sprint_run_status IS NULL OR sprint_run_status IN ('QUEUED','RUNNING'))"
            )
            args: list[Any] = [user_id]
            if product_id:
                q += " AND product_id=?"
                args.append(product_id)
            q += " ORDER BY seq LIMIT 1"
            j = c.execute(q, args).fetchone()
            if j is None:
                return None
            now = now_iso()
            c.execute(
                "UPDATE jobs SET status='CLAIMED', claimed_by_token_id=?, claimed_by_instance=?, claimed_at=?, "
                "lease_until=?, claim_count=claim_count+1, "
                "sprint_run_status=CASE WHEN sprint_run_status='QUEUED' THEN 'RUNNING' ELSE sprint_run_status END "
                "WHERE id=? AND status='QUEUED'",
                (token_id, instance_id, now, iso_in(lease_seconds), j["id"]),
            )
            self._event(c, j["id"], "QUEUED", "CLAIMED", instance_id, f"claimed by token {token_id}")
            return dict(c.execute("SELECT * FROM jobs WHERE id=?", (j["id"],)).fetchone())

    def rollback_claim(self, job_id: str, token_id: str, note: str) -> None:
        with self.write() as c:
            j = c.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if j is None or j["status"] != "CLAIMED" or j["claimed_by_token_id"] != token_id:
                return
            c.execute(
                "UPDATE jobs SET status='QUEUED', claimed_by_token_id=NULL, claimed_by_instance=NULL, "
                "claimed_at=NULL, lease_until=NULL, claim_count=MAX(claim_count-1, 0), worktree_path=NULL, "
                "branch=NULL, base_sha=NULL WHERE id=?",
                (job_id,),
            )
            self._event(c, job_id, "CLAIMED", "QUEUED", "server", "claim rolled back: " + note)

    def fail_claim(self, job_id: str, token_id: str, error: str) -> None:
        """A terminal error while preparing a claimed job: FAILED, no requeue."""
        with self.write() as c:
            j = c.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if j is None or j["status"] != "CLAIMED" or j["claimed_by_token_id"] != token_id:
                return
            c.execute(
                "UPDATE jobs SET status='FAILED', finished_at=?, error=? WHERE id=?", (now_iso(), error[:2000], job_id)
            )
            self._event(c, job_id, "CLAIMED", "FAILED", "server", error[:300])

    def attach_claim(self, job_id: str, fields: dict[str, Any]) -> None:
        cols = ", ".join(f"{k}=?" for k in fields)
        with self.write() as c:
            c.execute(f"UPDATE jobs SET {cols} WHERE id=?", (*fields.values(), job_id))

    def job_heartbeat(self, job_id: str, token_id: str, lease_seconds: float) -> dict[str, Any] | None:
        with self.write() as c:
            lease = iso_in(lease_seconds)
            n = c.execute(
                "UPDATE jobs SET lease_until=? WHERE id=? AND claimed_by_token_id=? AND status IN ('CLAIMED','RUNNING')",
                (lease, job_id, token_id),
            ).rowcount
            if n == 0:
                return None
            return dict(c.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def verify(self, job_id: str, token_id: str, result: str) -> tuple[str, dict[str, Any] | None]:
        with self.write() as c:
            j = c.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if j is None:
                return "not_found", None
            if j["claimed_by_token_id"] != token_id:
                return "permission", None
            if j["status"] not in OWNED_STATES:
                return "terminal", dict(j)
            c.execute("UPDATE jobs SET verify_result=? WHERE id=?", (result, job_id))
            return "ok", dict(c.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def update_status(
        self,
        job_id: str,
        token_id: str,
        instance_id: str,
        status: str,
        branch: str | None,
        summary: str | None,
        error: str | None,
        usage: dict[str, Any],
    ) -> tuple[str, Any]:
        """update_job_status with its guards, in order. Returns (code, payload-or-message)."""
        with self.write() as c:
            j = c.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if j is None:
                return "error", f"Job {job_id} not found"
            if j["claimed_by_token_id"] != token_id:
                return "error", "PERMISSION_DENIED: This job was not claimed by your token"
            if j["status"] == "CANCELLED":
                return "error", (
                    "JOB_CANCELLED: This job was cancelled by the PBI fail-cascade. "
                    "Discard your local changes and call wait_for_job for the next item."
                    if (j["error"] or "").startswith("cancelled by fail-cascade")
                    else "JOB_CANCELLED: This job was cancelled (" + (j["error"] or "cancelled") + "). "
                    "Discard your local changes and call wait_for_job for the next item."
                )
            if j["status"] not in OWNED_STATES:
                return "error", f"Job is already in terminal state: {j['status']}"
            kind = j["kind"]
            if status == "skipped":
                if kind != "TASK_IMPLEMENTATION":
                    return "error", (
                        f"VALIDATION_ERROR: 'skipped' is only allowed for TASK_IMPLEMENTATION (kind={kind})"
                    )
                if not error or len(error.strip()) < 10:
                    return "error", (
                        "VALIDATION_ERROR: 'skipped' requires a non-empty error with the reason (>=10 chars), "
                        "e.g. 'no_op_changes_already_in_main'"
                    )
            actual = status
            now = now_iso()
            pushed_at = None
            branch_to_write = branch if branch is not None else None
            error_to_write = error
            if status == "done" and kind == "TASK_IMPLEMENTATION":
                vr = j["verify_result"]
                if vr is None:
                    return "error", (
                        "VALIDATION_ERROR: call verify_task_against_plan before marking the job done "
                        "(verify_result is null)"
                    )
                if vr == "EMPTY":
                    return "error", (
                        "VALIDATION_ERROR: verify_task_against_plan gave EMPTY (no changes detected); "
                        "change the implementation or report skipped"
                    )
                if vr in ("PARTIAL", "DIVERGENT") and (not summary or len(summary.strip()) < 20):
                    return "error", (
                        f"VALIDATION_ERROR: verify gave {vr}; give a summary (>=20 chars) explaining the drift"
                    )
            if status == "done" and kind in ("TASK_IMPLEMENTATION", "SPRINT_IMPLEMENTATION"):
                b = branch or j["branch"]
                if j["push_outcome"] != "ok":
                    actual = "failed"
                    error_to_write = f"push failed ({j['push_outcome']}): simulated push failure for {b}"
                elif b:
                    branch_to_write = b
                    pushed_at = now
            db_status = {"running": "RUNNING", "done": "DONE", "failed": "FAILED", "skipped": "SKIPPED"}[actual]
            sets: dict[str, Any] = {"status": db_status}
            if j["claimed_at"] is None:
                sets["claimed_at"] = now
            if j["started_at"] is None:
                sets["started_at"] = now
            if actual != "running":
                sets["finished_at"] = now
            if branch_to_write is not None:
                sets["branch"] = branch_to_write
            if pushed_at is not None:
                sets["pushed_at"] = pushed_at
            if summary is not None:
                sets["summary"] = summary
            if error_to_write is not None:
                sets["error"] = error_to_write
            if kind == "SPRINT_IMPLEMENTATION" and actual == "failed":
                if (error_to_write or "").startswith("QUOTA_PAUSE:"):
                    sets["sprint_run_status"] = "PAUSED"
                    sets["sprint_run_pause_reason"] = "QUOTA_DEPLETED"
                else:
                    sets["sprint_run_status"] = "FAILED"
            if kind == "SPRINT_IMPLEMENTATION" and actual == "done":
                sets["sprint_run_status"] = "DONE"
            cols = ", ".join(f"{k}=?" for k in sets)
            c.execute(f"UPDATE jobs SET {cols} WHERE id=?", (*sets.values(), job_id))
            note = None
            if actual == "failed" and error_to_write:
                note = error_to_write[:300]
            elif summary:
                note = summary[:300]
            if usage:
                note = (note + "; " if note else "") + "usage " + json.dumps(usage, sort_keys=True)
            self._event(c, job_id, j["status"], db_status, instance_id, note)
            cancelled: list[str] = []
            if actual == "failed" and kind == "TASK_IMPLEMENTATION" and j["grp"]:
                for s in c.execute(
                    "SELECT id, status FROM jobs WHERE user_id=? AND grp=? AND id<>? "
                    "AND status IN ('QUEUED','CLAIMED','RUNNING')",
                    (j["user_id"], j["grp"], job_id),
                ).fetchall():
                    msg = f"cancelled by fail-cascade: job {job_id} failed"
                    c.execute(
                        "UPDATE jobs SET status='CANCELLED', finished_at=?, error=? WHERE id=?", (now, msg, s["id"])
                    )
                    self._event(c, s["id"], s["status"], "CANCELLED", "fail-cascade", msg)
                    cancelled.append(s["id"])
            u = dict(c.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())
            queued = c.execute(
                "SELECT COUNT(*) FROM jobs WHERE user_id=? AND status='QUEUED'", (j["user_id"],)
            ).fetchone()[0]
        next_action = "idle" if actual == "running" else ("wait_for_job_again" if queued > 0 else "queue_empty")
        return "ok", {
            "job_id": u["id"],
            "status": actual,
            "branch": u["branch"],
            "pushed_at": u["pushed_at"],
            "pr_url": u["pr_url"],
            "verify_result": u["verify_result"].lower() if u["verify_result"] else None,
            "summary": u["summary"],
            "error": u["error"],
            "started_at": u["started_at"],
            "finished_at": u["finished_at"],
            "next_action": next_action,
            "cancelled_siblings": cancelled,
        }

    def queue_counts(self, user_id: str, product_id: str | None) -> dict[str, Any]:
        with self.read() as c:
            if product_id:
                n = c.execute(
                    "SELECT COUNT(*) FROM jobs WHERE user_id=? AND product_id=? AND status IN ('QUEUED','CLAIMED','RUNNING')",
                    (user_id, product_id),
                ).fetchone()[0]
                return {"empty": n == 0, "remaining": n}
            rows = c.execute(
                "SELECT COALESCE(product_id, '') AS p, COUNT(*) AS n FROM jobs WHERE user_id=? "
                "AND status IN ('QUEUED','CLAIMED','RUNNING') GROUP BY p",
                (user_id,),
            ).fetchall()
        by_product = {r["p"]: r["n"] for r in rows}
        total = sum(by_product.values())
        return {"empty": total == 0, "remaining": total, "by_product": by_product}

    # ---- presence ----------------------------------------------------------------

    def register_worker(
        self,
        instance_id: str,
        token_id: str | None,
        user_id: str | None,
        transport: str,
        pid: int | None,
        hostname: str | None,
        runtime: str | None = None,
        capabilities: str | None = None,
    ) -> dict[str, Any]:
        now = now_iso()
        with self.write() as c:
            old = c.execute("SELECT * FROM workers WHERE instance_id=?", (instance_id,)).fetchone()
            if old is None:
                c.execute(
                    "INSERT INTO workers(instance_id, token_id, user_id, transport, pid, hostname, runtime, "
                    "capabilities, started_at, last_seen_at) VALUES(?,?,?,?,?,?,?,?,?,?)",
                    (instance_id, token_id, user_id, transport, pid, hostname, runtime, capabilities, now, now),
                )
                event, note = "register", None
            elif transport == "http" and old["transport"] == "http" and old["token_id"] == token_id:
                c.execute("UPDATE workers SET last_seen_at=? WHERE instance_id=?", (now, instance_id))
                return {"instance_id": instance_id, "event": "seen"}
            else:
                c.execute(
                    "UPDATE workers SET token_id=?, user_id=?, transport=?, pid=?, hostname=?, runtime=?, "
                    "capabilities=?, started_at=?, last_seen_at=?, last_heartbeat_at=NULL, last_quota_pct=NULL, "
                    "last_quota_check_at=NULL, registrations=registrations+1 WHERE instance_id=?",
                    (token_id, user_id, transport, pid, hostname, runtime, capabilities, now, now, instance_id),
                )
                event, note = "replace", f"replaced pid {old['pid']} (registered {old['started_at']})"
            c.execute(
                "INSERT INTO presence_events(at, instance_id, token_id, event, pid, transport, note) VALUES(?,?,?,?,?,?,?)",
                (now, instance_id, token_id, event, pid, transport, note),
            )
        return {"instance_id": instance_id, "event": event, "note": note}

    def touch_worker(self, instance_id: str, pid: int | None) -> None:
        with self.write() as c:
            c.execute(
                "UPDATE workers SET last_seen_at=? WHERE instance_id=? AND (pid IS ? OR pid=?)",
                (now_iso(), instance_id, pid, pid),
            )

    def remove_worker(self, instance_id: str, pid: int | None, note: str | None = None) -> bool:
        with self.write() as c:
            n = c.execute(
                "DELETE FROM workers WHERE instance_id=? AND (pid IS ? OR pid=?)", (instance_id, pid, pid)
            ).rowcount
            if n:
                c.execute(
                    "INSERT INTO presence_events(at, instance_id, token_id, event, pid, transport, note) "
                    "VALUES(?,?,?,?,?,?,?)",
                    (now_iso(), instance_id, None, "remove", pid, None, note),
                )
        return bool(n)

    def drop_worker(self, instance_id: str) -> bool:
        with self.write() as c:
            n = c.execute("DELETE FROM workers WHERE instance_id=?", (instance_id,)).rowcount
            if n:
                c.execute(
                    "INSERT INTO presence_events(at, instance_id, token_id, event, pid, transport, note) "
                    "VALUES(?,?,?,?,?,?,?)",
                    (now_iso(), instance_id, None, "remove", None, None, "admin drop-worker"),
                )
        return bool(n)

    def worker_heartbeat(
        self, instance_id: str, token_id: str, pct: int, check_at: str
    ) -> dict[str, Any] | None:
        now = now_iso()
        with self.write() as c:
            n = c.execute(
                "UPDATE workers SET last_seen_at=?, last_heartbeat_at=?, last_quota_pct=?, last_quota_check_at=? "
                "WHERE instance_id=? AND token_id=?",
                (now, now, pct, check_at, instance_id, token_id),
            ).rowcount
            if n == 0:
                return None
            return dict(c.execute("SELECT * FROM workers WHERE instance_id=?", (instance_id,)).fetchone())

    def workers(self, events: bool = False) -> dict[str, Any] | list[dict[str, Any]]:
        with self.read() as c:
            rows = [
                dict(r)
                for r in c.execute(
                    "SELECT w.*, t.name AS token_name, u.name AS user FROM workers w "
                    "LEFT JOIN tokens t ON t.id=w.token_id LEFT JOIN users u ON u.id=w.user_id ORDER BY w.started_at"
                ).fetchall()
            ]
            for r in rows:
                r["alive"] = _pid_alive(r["pid"]) if r["transport"] == "stdio" and r["pid"] else None
            if not events:
                return rows
            ev = [dict(r) for r in c.execute("SELECT * FROM presence_events ORDER BY id").fetchall()]
        return {"workers": rows, "events": ev}

    # ---- call log ----------------------------------------------------------------

    def log_call(self, entry: dict[str, Any]) -> None:
        cols = (
            "at", "ended_at", "duration_ms", "transport", "pid", "token_id", "token_name", "instance_id",
            "method", "tool", "args", "job_id", "status", "message", "fault",
        )
        vals = [entry.get(k) for k in cols]
        with self.write() as c:
            c.execute(
                f"INSERT INTO calls({', '.join(cols)}) VALUES({', '.join('?' for _ in cols)})", vals
            )

    def calls(self, tool: str | None = None, method: str | None = None, since: str | None = None) -> list[dict[str, Any]]:
        q, where, args = "SELECT * FROM calls", [], []
        if tool:
            where.append("tool=?")
            args.append(tool)
        if method:
            where.append("method=?")
            args.append(method)
        if since:
            where.append("at>=?")
            args.append(since)
        if where:
            q += " WHERE " + " AND ".join(where)
        q += " ORDER BY id"
        with self.read() as c:
            rows = [dict(r) for r in c.execute(q, args).fetchall()]
        for r in rows:
            r["args"] = _loads(r["args"], None)
        return rows

    # ---- faults ------------------------------------------------------------------

    def add_fault(
        self,
        tool: str,
        kind: str,
        count: int = 1,
        seconds: float | None = None,
        message: str | None = None,
        after: bool = False,
        token: str | None = None,
    ) -> dict[str, Any]:
        if kind not in FAULT_KINDS:
            raise StoreError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
        if count == 0 or count < -1:
            raise StoreError("count must be >= 1, or -1 for unlimited")
        if kind == "stall" and seconds is None:
            seconds = 5.0
        with self.write() as c:
            tid = None
            if token:
                t = self._find_token(c, token)
                if t is None:
                    raise StoreError(f"unknown token {token!r}")
                tid = t["id"]
            cur = c.execute(
                "INSERT INTO faults(tool, kind, remaining, total, seconds, message, after, token_id, created_at) "
                "VALUES(?,?,?,?,?,?,?,?,?)",
                (tool, kind, count, count, seconds, message, 1 if after else 0, tid, now_iso()),
            )
            return dict(c.execute("SELECT * FROM faults WHERE id=?", (cur.lastrowid,)).fetchone())

    def faults(self) -> list[dict[str, Any]]:
        with self.read() as c:
            return [dict(r) for r in c.execute("SELECT * FROM faults ORDER BY id").fetchall()]

    def clear_faults(self) -> dict[str, Any]:
        with self.write() as c:
            n = c.execute("DELETE FROM faults").rowcount
        return {"ok": True, "deleted": n}

    def take_fault(
        self, method: str, tool: str | None, transport: str, token_id: str | None
    ) -> dict[str, Any] | None:
        """Consume one matching fault (oldest first), or None.

        A fault's `tool` matches a tools/call by tool name; `*` matches every tools/call;
        any other value is compared with the JSON-RPC method (e.g. `initialize`, `tools/list`).
        Faults that do not apply to the transport are left alone.
        """
        kinds = FAULT_KINDS if transport == "http" else STDIO_FAULTS
        names = [method]
        if method == "tools/call":
            names = ["*"] + ([tool] if tool else [])
        with self.write() as c:
            r = c.execute(
                f"SELECT * FROM faults WHERE remaining<>0 AND tool IN ({', '.join('?' for _ in names)}) "
                f"AND kind IN ({', '.join('?' for _ in kinds)}) AND (token_id IS NULL OR token_id IS ?) "
                "ORDER BY id LIMIT 1",
                (*names, *kinds, token_id),
            ).fetchone()
            if r is None:
                return None
            c.execute(
                "UPDATE faults SET remaining=CASE WHEN remaining>0 THEN remaining-1 ELSE remaining END, "
                "fired=fired+1 WHERE id=?",
                (r["id"],),
            )
            return dict(r)

    def has_faults(self) -> bool:
        with self.read() as c:
            return c.execute("SELECT 1 FROM faults WHERE remaining<>0 LIMIT 1").fetchone() is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return True
