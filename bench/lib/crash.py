#!/usr/bin/env python3
"""crash.py STAMP_FILE [TIMEOUT]: SIGKILLs the process whose start is the last line of
STAMP_FILE ("<ns> <pid>", written by stamp-exec/stamp-wait), then waits for its
supervisor to start a new one (a new line). Prints the ns from just before the kill to
the new process's first instruction. Exit 1 on timeout."""
import os
import signal
import sys
import time

path = sys.argv[1]
timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 30
lines = open(path).read().split("\n")
lines = [l for l in lines if l.strip()]
pid = int(lines[-1].split()[1])
seen = len(lines)
t0 = time.time_ns()
os.kill(pid, signal.SIGKILL)
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    now = [l for l in open(path).read().split("\n") if l.strip()]
    if len(now) > seen:
        print(int(now[seen].split()[0]) - t0)
        sys.exit(0)
    time.sleep(0.001)
sys.exit(1)
