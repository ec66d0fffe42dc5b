"""The worker tools of the stand-in, on the official MCP SDK's low-level server.

Inputs, outputs and error texts follow shared/docs/SCRUM4ME-PROTOCOL.md (and, where the
page is silent, the upstream scrum4me-mcp source). Success: one text item with the JSON
(indented by 2, as upstream) plus `structuredContent` with the same object. Failure:
`isError: true` and one text item that starts with the code where there is one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import time
from typing import Any

import anyio
import anyio.to_thread
import jsonschema
import mcp.types as types
from mcp.server.lowlevel import Server

import store as st
import worktrees

VERSION = "0.1.0"
UNAUTHORIZED = "UNAUTHORIZED: token invalid or revoked"
DEFAULT_WORKTREE_ROOT = os.path.join(os.path.expanduser("~"), ".scrum4me-agent-worktrees")


def log(event: str, **fields: Any) -> None:
    """Diagnostics: one JSON line on stderr (stdout is the JSON-RPC channel on stdio)."""
    rec = {"ts": st.now_iso(), "pid": os.getpid(), "event": event, **fields}
    try:
        sys.stderr.write(json.dumps(rec, default=str) + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


@dataclasses.dataclass
class Config:
    state: str
    lease_seconds: float = 300.0
    poll_seconds: float = 5.0

    @property
    def lock_dir(self) -> str:
        return self.state + ".locks"


@dataclasses.dataclass
class CallCtx:
    """Who is calling. stdio: one per process; HTTP: one per request."""

    transport: str
    secret: str | None
    instance_id: str
    worktree_root: str | None = None
    repo_roots: dict[str, str] = dataclasses.field(default_factory=dict)
    disconnected: anyio.Event | None = None
    env_repo_roots: bool = False  # stdio: repo roots come from SCRUM4ME_REPO_ROOT_<id> at call time


def default_instance_id() -> str:
    return f"mcp-{socket.gethostname()}-{os.getpid()}"


# ---- tool definitions ------------------------------------------------------------

_JOB_ID = {"type": "string", "minLength": 1}

TOOL_SCHEMAS: dict[str, tuple[str, dict[str, Any]]] = {
    "get_worker_settings": (
        "Read the authenticated user's worker settings (min_quota_pct).",
        {"type": "object", "properties": {}, "additionalProperties": True},
    ),
    "worker_heartbeat": (
        "Report the worker's most recent quota percentage (percent remaining). "
        "Errors when the worker's presence row is missing.",
        {
            "type": "object",
            "properties": {
                "last_quota_pct": {"type": "integer", "minimum": 0, "maximum": 100},
                "last_quota_check_at": {"type": "string"},
            },
            "required": ["last_quota_pct"],
        },
    ),
    "wait_for_job": (
        "Block until a QUEUED job is available for this user, claim it atomically and return its payload. "
        "Requeues stale jobs first. Returns {status: 'timeout'} when wait_seconds elapses without a job.",
        {
            "type": "object",
            "properties": {
                "product_id": {"type": "string", "minLength": 1},
                "wait_seconds": {"type": "integer", "minimum": 1, "maximum": 600, "default": 300},
                "capability": {"enum": ["HIGH_P", "MEDIUM_P", "LOW_P", None]},
            },
        },
    ),
    "job_heartbeat": (
        "Extend the lease on a CLAIMED/RUNNING job. Token must own the job.",
        {"type": "object", "properties": {"job_id": _JOB_ID}, "required": ["job_id"]},
    ),
    "update_job_status": (
        "Report progress on a claimed job: running, done, failed or skipped.",
        {
            "type": "object",
            "properties": {
                "job_id": _JOB_ID,
                "status": {"enum": ["running", "done", "failed", "skipped"]},
                "branch": {"type": "string", "minLength": 1},
                "summary": {"type": "string", "maxLength": 4000},
                "error": {"type": "string", "maxLength": 2000},
                "model_id": {"type": "string", "minLength": 1, "maxLength": 200},
                "input_tokens": {"type": "integer", "minimum": 0},
                "output_tokens": {"type": "integer", "minimum": 0},
                "cache_read_tokens": {"type": "integer", "minimum": 0},
                "cache_write_tokens": {"type": "integer", "minimum": 0},
                "actual_thinking_tokens": {"type": "integer", "minimum": 0},
            },
            "required": ["job_id", "status"],
        },
    ),
    "get_job_status": (
        "Status, summary and error of a single job.",
        {"type": "object", "properties": {"job_id": _JOB_ID}, "required": ["job_id"]},
    ),
    "check_queue_empty": (
        "Non-blocking count of the user's active jobs (QUEUED, CLAIMED, RUNNING).",
        {"type": "object", "properties": {"product_id": {"type": "string", "minLength": 1}}},
    ),
    "verify_task_against_plan": (
        "Stand-in: record the verify result of a claimed job (default ALIGNED) so that done is accepted.",
        {
            "type": "object",
            "properties": {
                "job_id": _JOB_ID,
                "result": {"enum": ["ALIGNED", "PARTIAL", "DIVERGENT", "EMPTY"]},
            },
            "required": ["job_id"],
        },
    ),
}

TOOLS = [
    types.Tool(name=name, description=desc, inputSchema=schema) for name, (desc, schema) in TOOL_SCHEMAS.items()
]


class ToolError(Exception):
    pass


def ok(obj: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(obj, indent=2))],
        structuredContent=obj,
        isError=False,
    )


def err(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], isError=True)


def validate(name: str, args: dict[str, Any]) -> None:
    schema = TOOL_SCHEMAS[name][1]
    v = jsonschema.Draft202012Validator(schema)
    errors = sorted(v.iter_errors(args), key=lambda e: list(e.path))
    if errors:
        parts = []
        for e in errors:
            path = ".".join(str(p) for p in e.path) or "(root)"
            parts.append(f"{path}: {e.message}")
        raise ToolError("VALIDATION_ERROR: " + "; ".join(parts))


# ---- the server ------------------------------------------------------------------


class Standin:
    def __init__(self, store: st.Store, cfg: Config, stdio_ctx: CallCtx | None = None):
        self.store = store
        self.cfg = cfg
        self.stdio_ctx = stdio_ctx
        self.server: Server = Server(
            "scrum4me-standin",
            version=VERSION,
            instructions="Stand-in for scrum4me-mcp (fleet test fixture). Worker tools only.",
        )
        self._register()

    def current_ctx(self) -> CallCtx:
        try:
            rc = self.server.request_context
        except LookupError:
            rc = None
        req = getattr(rc, "request", None) if rc is not None else None
        scope = getattr(req, "scope", None)
        if isinstance(scope, dict) and "standin" in scope:
            return scope["standin"]["ctx"]
        if self.stdio_ctx is None:
            raise ToolError("INTERNAL_ERROR: no caller context")
        return self.stdio_ctx

    def _register(self) -> None:
        server = self.server

        @server.list_tools()
        async def _list_tools() -> list[types.Tool]:
            return TOOLS

        @server.call_tool(validate_input=False)
        async def _call_tool(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
            return await self.call(name, arguments or {})

    async def call(self, name: str, args: dict[str, Any]) -> types.CallToolResult:
        ctx = self.current_ctx()
        try:
            if name not in TOOL_SCHEMAS:
                return err(f"Unknown tool: {name}")
            auth = await anyio.to_thread.run_sync(self.store.auth, ctx.secret)
            if auth is None:
                return err(UNAUTHORIZED)
            validate(name, args)
            fn = getattr(self, "t_" + name)
            return ok(await fn(ctx, auth, args))
        except ToolError as e:
            return err(str(e))
        except worktrees.WorktreeError as e:
            return err(str(e))
        except Exception as e:  # a bug in the stand-in: say so, do not hang
            log("tool_exception", tool=name, error=repr(e))
            return err(f"INTERNAL_ERROR: {type(e).__name__}: {e}")

    async def _db(self, fn: Any, *a: Any, **kw: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: fn(*a, **kw))

    # ---- tools ---------------------------------------------------------------------

    async def t_get_worker_settings(self, ctx: CallCtx, auth: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        u = await self._db(self.store.user_settings, auth["user_id"])
        if u is None:
            raise ToolError("User not found")
        return {"min_quota_pct": u["min_quota_pct"]}

    async def t_worker_heartbeat(self, ctx: CallCtx, auth: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        check_at = args.get("last_quota_check_at")
        if check_at:
            try:
                check_at = st.iso(st.parse_iso(check_at))
            except ValueError:
                raise ToolError("VALIDATION_ERROR: last_quota_check_at: Invalid datetime")
        else:
            check_at = st.now_iso()
        row = await self._db(
            self.store.worker_heartbeat, ctx.instance_id, auth["id"], int(args["last_quota_pct"]), check_at
        )
        if row is None:
            raise ToolError(
                "Worker record not found — call register_worker first or wait for the next heartbeat tick"
            )
        return {"ok": True, "last_quota_pct": row["last_quota_pct"], "last_quota_check_at": row["last_quota_check_at"]}

    async def t_wait_for_job(self, ctx: CallCtx, auth: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        wait = int(args.get("wait_seconds", 300))
        product = args.get("product_id")
        deadline = time.monotonic() + wait
        poll = max(0.01, float(self.cfg.poll_seconds))
        while True:
            if ctx.disconnected is not None and ctx.disconnected.is_set():
                raise ToolError("client disconnected")
            await self._db(self.store.requeue_stale, auth["user_id"])
            job = await self._db(
                self.store.try_claim, auth["user_id"], auth["id"], ctx.instance_id, self.cfg.lease_seconds, product
            )
            if job is not None:
                return await self._prepare_claim(ctx, auth, job)
            left = deadline - time.monotonic()
            if left <= 0:
                return {"status": "timeout", "message": "No job available within wait window"}
            if ctx.disconnected is not None:
                with anyio.move_on_after(min(poll, left)):
                    await ctx.disconnected.wait()
            else:
                await anyio.sleep(min(poll, left))

    def _repo_root(self, ctx: CallCtx, product_id: str) -> str | None:
        if ctx.env_repo_roots:
            return os.environ.get(f"SCRUM4ME_REPO_ROOT_{product_id}") or None
        return ctx.repo_roots.get(product_id) or None

    def _worktree_root(self, ctx: CallCtx) -> str:
        if ctx.env_repo_roots:
            return os.environ.get("SCRUM4ME_AGENT_WORKTREE_DIR") or DEFAULT_WORKTREE_ROOT
        return ctx.worktree_root or DEFAULT_WORKTREE_ROOT

    async def _prepare_claim(self, ctx: CallCtx, auth: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
        jid = job["id"]
        payload: dict[str, Any] = {
            "job_id": jid,
            "kind": job["kind"],
            "status": "claimed",
            "config": json.loads(job["config"]),
            "product_id": job["product_id"],
            "product": {"id": job["product_id"]} if job["product_id"] else None,
            "script": json.loads(job["script"] or "{}"),
            "retry_count": job["retry_count"],
            "claimed_at": job["claimed_at"],
            "lease_until": job["lease_until"],
        }
        if job["grp"]:
            payload["group"] = job["grp"]
        if job["needs_worktree"]:
            if not job["product_id"]:
                msg = f"Job failed (unresolvable repo): job {jid} has no product_id, so no worktree can be made"
                await self._db(self.store.fail_claim, jid, auth["id"], msg)
                raise ToolError(msg)
            root = self._repo_root(ctx, job["product_id"])
            if not root:
                pid = job["product_id"]
                hint = (
                    f"Set env var SCRUM4ME_REPO_ROOT_{pid}"
                    if ctx.transport == "stdio"
                    else f"Give the token a repo root (admin add-token --repo-root {pid}=PATH)"
                )
                msg = f"No repo root configured for product {pid}. {hint}. The claim was rolled back."
                await self._db(self.store.rollback_claim, jid, auth["id"], f"no repo root for product {pid}")
                log("claim_rolled_back", job_id=jid, reason="no repo root", product_id=pid)
                raise ToolError(msg)
            try:
                wt = await anyio.to_thread.run_sync(
                    worktrees.create_worktree,
                    root,
                    self._worktree_root(ctx),
                    jid,
                    worktrees.branch_for(job["kind"], jid),
                    self.cfg.lock_dir,
                )
            except worktrees.WorktreeError as e:
                await self._db(self.store.rollback_claim, jid, auth["id"], f"worktree creation failed: {e}")
                log("claim_rolled_back", job_id=jid, reason=str(e))
                raise ToolError(f"Worktree creation failed: {e}. The claim was rolled back.")
            payload.update(wt)
            await self._db(
                self.store.attach_claim,
                jid,
                {"branch": wt["branch_name"], "worktree_path": wt["worktree_path"], "base_sha": wt["base_sha"]},
            )
        if job["kind"] == "SPRINT_IMPLEMENTATION":
            payload["heartbeat_interval_seconds"] = 60
            payload["sprint_run"] = {"id": job["sprint_run_id"], "status": job["sprint_run_status"]}
            payload["sprint_run_status"] = job["sprint_run_status"]
            payload["task_executions"] = []
        await self._db(self.store.attach_claim, jid, {"last_payload": json.dumps(payload)})
        log("claimed", job_id=jid, kind=job["kind"], instance_id=ctx.instance_id, token_id=auth["id"])
        return payload

    async def t_job_heartbeat(self, ctx: CallCtx, auth: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        jid = args["job_id"]
        row = await self._db(self.store.job_heartbeat, jid, auth["id"], self.cfg.lease_seconds)
        if row is None:
            raise ToolError(f"Job {jid} not found, not claimed by your token, or in terminal state")
        sprint = row["kind"] == "SPRINT_IMPLEMENTATION"
        return {
            "ok": True,
            "job_id": row["id"],
            "lease_until": row["lease_until"],
            "sprint_run_status": row["sprint_run_status"] if sprint else None,
            "sprint_run_pause_reason": row["sprint_run_pause_reason"] if sprint else None,
        }

    async def t_update_job_status(self, ctx: CallCtx, auth: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        usage = {
            k: args[k]
            for k in (
                "model_id", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                "actual_thinking_tokens",
            )
            if k in args
        }
        code, res = await self._db(
            self.store.update_status,
            args["job_id"],
            auth["id"],
            ctx.instance_id,
            args["status"],
            args.get("branch"),
            args.get("summary"),
            args.get("error"),
            usage,
        )
        if code != "ok":
            raise ToolError(res)
        if res.get("cancelled_siblings"):
            log("fail_cascade", job_id=res["job_id"], cancelled=res["cancelled_siblings"])
        else:
            res.pop("cancelled_siblings", None)
        return res

    async def t_get_job_status(self, ctx: CallCtx, auth: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        jid = args["job_id"]
        j = await self._db(self.store.get_job, jid)
        if j is None or j["user_id"] != auth["user_id"]:
            raise ToolError(f"Job {jid} not found")
        return {
            "id": j["id"],
            "kind": j["kind"],
            "status": j["status"],
            "summary": j["summary"],
            "error": j["error"],
            "pr_url": j["pr_url"],
            "created_at": j["created_at"],
            "finished_at": j["finished_at"],
        }

    async def t_check_queue_empty(self, ctx: CallCtx, auth: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        return await self._db(self.store.queue_counts, auth["user_id"], args.get("product_id"))

    async def t_verify_task_against_plan(
        self, ctx: CallCtx, auth: dict[str, Any], args: dict[str, Any]
    ) -> dict[str, Any]:
        jid = args["job_id"]
        result = args.get("result") or "ALIGNED"
        code, j = await self._db(self.store.verify, jid, auth["id"], result)
        if code == "not_found":
            raise ToolError(f"Job {jid} not found")
        if code == "permission":
            raise ToolError("PERMISSION_DENIED: This job was not claimed by your token")
        if code == "terminal":
            raise ToolError(f"Job is already in terminal state: {j['status']}")
        return {"job_id": jid, "verify_result": result, "branch": j["branch"], "base_sha": j["base_sha"]}
