#!/usr/bin/env python3
"""Creates N slot tokens on the stand-in in one process (the admin CLI would take one
process per token): standin-tokens.py STATE TOKEN_DIR N [--user U] [--prefix s]
    [--worktree-root DIR_WITH_{n}] [--repo-root PRODUCT=PATH_WITH_{n}]
Writes TOKEN_DIR/<prefix><n> (0600) for n = 1..N and registers each token for user U."""
import argparse
import os
import secrets
import sys

repo = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(repo, "Tests", "Support", "scrum4me-standin"))
import store as st  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("state")
p.add_argument("token_dir")
p.add_argument("n", type=int)
p.add_argument("--user", default="bench")
p.add_argument("--prefix", default="s")
p.add_argument("--worktree-root", default=None)
p.add_argument("--repo-root", default=None)
a = p.parse_args()

s = st.Store(a.state)
s.init()
os.makedirs(a.token_dir, exist_ok=True)
for n in range(1, a.n + 1):
    name = f"{a.prefix}{n}"
    token = f"bench-{name}-{secrets.token_hex(8)}"
    path = os.path.join(a.token_dir, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (token + "\n").encode())
    os.close(fd)
    roots = None
    if a.repo_root:
        product, root = a.repo_root.split("=", 1)
        roots = {product: root.replace("{n}", str(n))}
    wt = a.worktree_root.replace("{n}", str(n)) if a.worktree_root else None
    s.add_token(a.user, token, name, wt, roots)
print(a.n)
