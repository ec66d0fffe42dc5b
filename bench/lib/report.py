#!/usr/bin/env python3
"""report.py OUT_DIR BENCHMARKS.md: rewrites the generated blocks of BENCHMARKS.md
(between <!-- bench:NAME --> and <!-- /bench:NAME -->) from the KEY=VALUE files the
bench scripts left in OUT_DIR. Text outside the blocks is kept as written."""
import glob
import os
import re
import sys

out, md_path = sys.argv[1], sys.argv[2]
R = {}
for path in glob.glob(os.path.join(out, "*.env")):
    name = os.path.basename(path)[:-4]
    d = {}
    for line in open(path):
        if "=" in line:
            k, v = line.rstrip("\n").split("=", 1)
            d[k] = v
    R[name] = d


def g(bench, key, fmt="{}", missing="n/a"):
    v = R.get(bench, {}).get(key)
    return missing if v in (None, "") else fmt.format(v)


def verdict(bench, key):
    v = R.get(bench, {}).get(key)
    if v is None:
        return "not run" if bench not in R or "failed" not in R[bench] else "**failed to run**"
    return "met" if v == "met" else "**missed**"


s, m, o, i, r, sd, t, run = (R.get(k, {}) for k in ("status", "memory", "overhead", "idle-cpu", "restart", "shutdown", "throughput", "run"))

overhead_ratio = "n/a"
if "overhead_ms" in o and "peer_spawn_ms" in o:
    overhead_ratio = f"{float(o['overhead_ms']) / float(o['peer_spawn_ms']):.1f}x"

summary = [
    "| measure | fleet | peer(s), same run | ratio | target | verdict |",
    "|---|---|---|---|---|---|",
    f"| `fleetctl status` latency, 16 idle slots (stdio) | {g('status','status_16_ms','{} ms')} | `supervisorctl status`, 16 programs: {g('status','supervisorctl_ms','{} ms')}; `s6-svstat` x16: {g('status','s6svstat_ms','{} ms')} | {g('status','status_vs_supervisorctl','{}x')} faster than supervisorctl; {g('status','status_vs_s6','{}x')} vs s6-svstat | >= 15x faster than supervisorctl; no slower than s6-svstat | {verdict('status','status_vs_supervisorctl_verdict')} / {verdict('status','status_vs_s6_verdict')} |",
    f"| ... with 64 / 128 slots (HTTP, slot template) | {g('status','status_64_ms','{} ms')} / {g('status','status_128_ms','{} ms')} | - | - | - | - |",
    f"| ... with 3 slots (issue 2) | {g('status','status_3_ms','{} ms')} | - | - | - | - |",
    f"| daemon memory (PSS), 16 idle slots / idle after {g('memory','mem_jobs')} jobs | {g('memory','mem_idle_mb','{} MB')} / {g('memory','mem_after_mb','{} MB')} | supervisord, 16 programs: {g('memory','supervisord_mb','{} MB')}; s6-svscan + 16 s6-supervise: {g('memory','s6_mb','{} MB')} | {g('memory','mem_vs_supervisord','{}x')} supervisord | <= supervisord | {verdict('memory','mem_vs_supervisord_verdict')} |",
    f"| ... flat across the jobs (idle PSS before -> after {g('memory','mem_jobs')} jobs) | {g('memory','mem_idle_mb','{} MB')} -> {g('memory','mem_after_mb','{} MB')} ({g('memory','mem_growth_pct','{}%')}) | - | - | within 5% | {verdict('memory','mem_flat_verdict')} |",
    f"| per-job overhead, claim answer -> agent `execve`, DB record included (median of {g('overhead','overhead_n')} jobs) | {g('overhead','overhead_ms','{} ms')} | `posix_spawn` -> `execve` of the same agent: {g('overhead','peer_spawn_ms','{} ms')}; `posix_spawn`+`waitpid` of `/bin/true`: {g('overhead','peer_true_ms','{} ms')} | {overhead_ratio} the bare spawn | < 5 ms median | {verdict('overhead','overhead_verdict')} |",
    f"| idle CPU, 16 slots, {g('idle-cpu','idle_cpu_seconds','{} s')} | {g('idle-cpu','idle_cpu_pct','{}%')} of a core | supervisord: {g('idle-cpu','idle_cpu_sup_pct','{}%')}; s6: {g('idle-cpu','idle_cpu_s6_pct','{}%')} | - | < 0.5% of a core | {verdict('idle-cpu','idle_cpu_verdict')} |",
    f"| restart after a crash (SIGKILL -> replacement's first instruction, median of {g('restart','restart_trials')}) | {g('restart','restart_ms','{} ms')} | supervisord: {g('restart','restart_sup_ms','{} ms')}; s6-supervise: {g('restart','restart_s6_ms','{} ms')} | - | no slower than either | {verdict('restart','restart_verdict')} |",
    f"| shutdown, 16 busy slots, {g('shutdown','shutdown_grace_s','{} s')} grace (median / worst of {g('shutdown','shutdown_runs')}) | {g('shutdown','shutdown_s','{} s')} / {g('shutdown','shutdown_max_s','{} s')} | - | - | within grace + 2 s | {verdict('shutdown','shutdown_verdict')} |",
    f"| jobs per minute, 8 slots, no-op agent, stand-in over HTTP | {g('throughput','tp_fleet')} | stand-in alone (driver): {g('throughput','tp_standin')}; fleetd alone (fountain): {g('throughput','tp_own')} | {g('throughput','tp_share','{}%')} of the stand-in's ceiling | limited by the stand-in | {verdict('throughput','tp_verdict')} |",
]

details = [
    "**`fleetctl status`** (wall time of the command, median of "
    f"{g('status','status_runs')} runs after warm-ups, peers' runs interleaved with fleetctl's):",
    "",
    "| slots | transport | fleetctl status |",
    "|---|---|---|",
]
for n in (3, 16, 64, 128):
    if f"status_{n}_ms" in s:
        details.append(f"| {n} | {s.get(f'status_{n}_transport')} | {s[f'status_{n}_ms']} ms |")
details += [
    "",
    f"**Memory**: fleetd PSS idle {g('memory','mem_idle_mb','{} MB')}; peak while running {g('memory','mem_peak_mb','{} MB')}; "
    f"{g('memory','mem_q1').split(':')[-1]} MB at {g('memory','mem_q1').split(':')[0]} jobs, {g('memory','mem_end').split(':')[-1]} MB at {g('memory','mem_end').split(':')[0]} jobs; "
    f"idle again after {g('memory','mem_jobs')} jobs {g('memory','mem_after_mb','{} MB')} ({g('memory','mem_growth_pct','{}%')} from idle). "
    f"The {g('memory','mem_jobs')} jobs took {g('memory','mem_jobs_seconds','{} s')}.",
    "",
    f"**Per-job overhead**: median {g('overhead','overhead_ms','{} ms')}, min {g('overhead','overhead_min_ms','{} ms')}, max {g('overhead','overhead_max_ms','{} ms')} "
    f"over {g('overhead','overhead_n')} jobs in {g('overhead','overhead_batches')} batches.",
    "",
    "**Throughput** (median of 3 windows of 15 s; CPU in % of one core):",
    "",
    "| setup | jobs/min | fleetd CPU | stand-in CPU |",
    "|---|---|---|---|",
    f"| fleet + stand-in (HTTP, no-op agent) | {g('throughput','tp_fleet')} | {g('throughput','tp_fleet_cpu','{}%')} | {g('throughput','tp_fleet_standin_cpu','{}%')} |",
    f"| stand-in alone (driver.py, same calls) | {g('throughput','tp_standin')} | - | {g('throughput','tp_standin_cpu','{}%')} |",
    f"| fleetd alone (fountain.py, stamp agent) | {g('throughput','tp_own')} | {g('throughput','tp_own_cpu','{}%')} | - |",
]
failed = [k for k, d in R.items() if d.get("failed")]
if failed:
    details += ["", "**Scripts that failed in this run:** " + ", ".join(f"`bench/{k}.sh`" for k in sorted(failed))]

machine = [
    f"- date: {run.get('date', 'n/a')}; commit {run.get('commit', 'n/a')}{' (with uncommitted changes in the tree)' if run.get('dirty') == '1' else ''}",
    f"- machine: {run.get('cpu', 'n/a')}, {run.get('cores', '?')} cores, {run.get('mem', '?')} RAM; {run.get('os', 'n/a')}; kernel {run.get('kernel', 'n/a')}",
    f"- load average (1 min) at the start / end of the run: {run.get('load_start', '?')} / {run.get('load_end', '?')}",
    f"- {run.get('swift', 'n/a')}; binaries: release, `--static-swift-stdlib`: fleetd {run.get('fleetd_size', '?')}, fleetctl {run.get('fleetctl_size', '?')}",
    f"- peers: supervisor {run.get('supervisor', 'n/a')} (PyPI), s6 {run.get('s6', 'n/a')} (Debian)",
    f"- `bench/run` took {run.get('took', '?')}",
    "- reproduce: `bench/run` (all, rewrites this file) or `bash bench/<name>.sh` (one; `BENCH_SMOKE=1` for a few seconds' check)",
]

text = open(md_path).read()
for name, lines in (("summary", summary), ("details", details), ("machine", machine)):
    block = "\n".join(lines)
    pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?\n?(<!-- /bench:{name} -->)", re.S)
    if not pattern.search(text):
        sys.exit(f"report.py: no bench:{name} block in {md_path}")
    text = pattern.sub(lambda mm: mm.group(1) + block + "\n" + mm.group(2), text)
open(md_path, "w").write(text)
