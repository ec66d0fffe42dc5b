#!/usr/bin/env python3
"""Reads numbers (one a line) on stdin; prints: median min max count, scaled by --scale
(e.g. 1e-6 for ns -> ms), formatted with --digits decimals."""
import statistics
import sys

scale, digits = 1.0, 2
args = sys.argv[1:]
while args:
    a = args.pop(0)
    if a == "--scale":
        scale = float(args.pop(0))
    elif a == "--digits":
        digits = int(args.pop(0))
xs = [float(line.split()[-1]) * scale for line in sys.stdin if line.strip()]
if not xs:
    print("nan nan nan 0")
    sys.exit(1)
f = lambda v: f"{v:.{digits}f}"
print(f(statistics.median(xs)), f(min(xs)), f(max(xs)), len(xs))
