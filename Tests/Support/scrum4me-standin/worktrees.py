"""Real git worktrees for claimed task and sprint jobs, as the upstream server makes them.

`git -C <repo_root> worktree add -B <branch> <worktree_root>/<job id> HEAD`

A leftover from an earlier attempt (the same path, registered or not, or the same branch)
is removed and recreated cleanly, so a retry never fails on "path already exists"
(upstream incident 5). Worktree creation is serialised per repo root with a lock file, so
several stand-in processes that share a clone do not trip over git's own locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
from typing import Iterator


class WorktreeError(Exception):
    pass


def branch_for(kind: str, job_id: str) -> str:
    short = job_id[:8]
    if kind == "TASK_IMPLEMENTATION":
        return f"feat/story-{short}"
    if kind == "SPRINT_IMPLEMENTATION":
        return f"feat/sprint-{short}"
    return f"feat/job-{short}"


def _git(*args: str, cwd: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.setdefault("GIT_TERMINAL_PROMPT", "0")
    # safe.directory=*: the test repos may belong to another user than the server's
    p = subprocess.run(
        ["git", "-c", "safe.directory=*", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    if check and p.returncode != 0:
        raise WorktreeError(f"git {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[:500]}")
    return p


@contextlib.contextmanager
def _repo_lock(lock_dir: str, repo_root: str) -> Iterator[None]:
    os.makedirs(lock_dir, exist_ok=True)
    name = hashlib.sha256(os.path.realpath(repo_root).encode()).hexdigest()[:16] + ".lock"
    with open(os.path.join(lock_dir, name), "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _registered_worktrees(repo_root: str) -> list[str]:
    p = _git("-C", repo_root, "worktree", "list", "--porcelain", check=False)
    out = []
    for line in p.stdout.splitlines():
        if line.startswith("worktree "):
            out.append(os.path.realpath(line[len("worktree "):]))
    return out


def create_worktree(
    repo_root: str, worktree_root: str, job_id: str, branch: str, lock_dir: str
) -> dict[str, str]:
    """Create (or cleanly recreate) the job's worktree. Returns path, branch and base sha."""
    if not os.path.isdir(repo_root):
        raise WorktreeError(f"repo root {repo_root} does not exist")
    p = _git("-C", repo_root, "rev-parse", "--git-dir", check=False)
    if p.returncode != 0:
        raise WorktreeError(f"repo root {repo_root} is not a git repository: {p.stderr.strip()[:200]}")
    os.makedirs(worktree_root, exist_ok=True)
    path = os.path.join(os.path.abspath(worktree_root), job_id)
    with _repo_lock(lock_dir, repo_root):
        real = os.path.realpath(path)
        if os.path.lexists(path) or real in _registered_worktrees(repo_root):
            _git("-C", repo_root, "worktree", "remove", "--force", "--force", path, check=False)
            if os.path.lexists(path):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
        _git("-C", repo_root, "worktree", "prune", check=False)
        # -B: create the branch, or reset a leftover one to HEAD; -f: even if git still
        # thinks the branch is checked out in a worktree that no longer exists.
        _git("-C", repo_root, "worktree", "add", "-f", "-B", branch, path, "HEAD")
        sha = _git("-C", path, "rev-parse", "HEAD").stdout.strip()
    return {"worktree_path": path, "branch_name": branch, "base_sha": sha}
