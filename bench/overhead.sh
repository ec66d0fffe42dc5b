#!/usr/bin/env bash
# Per-job overhead: from the slot having the claim answer to the agent's execve, the
# claim's database record included (issue 2 and issue 8). Target: under 5 ms median.
#
# One slot against the stand-in over stdio; task jobs (the stand-in makes a real git
# worktree for each); the agent is bench/lib/stamp.c's stamp-agent, whose first act is
# to append CLOCK_REALTIME ns to $STAMP_FILE (it exits 0 without reporting, so fleetd
# lets the lease lapse or reports a failure, as its policy says: irrelevant here). fleetd logs `agent started pid=N
# claim_answer_ns=T` (T: when the wait_for_job answer arrived); overhead = stamp - T.
# Peer: the same stamp-agent started by a C program with posix_spawn (just before the
# call to the child's first instruction), and posix_spawn + waitpid of /bin/true.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
bench_init overhead

batches=$(runs 3 1)
per_batch=$([ "$SMOKE" = 1 ] && echo 3 || echo 40)

STANDIN_REPOS=1
standin_world 1
FC_SLOTS=1
FC_SERVER="$(toml_list "$PY" "$STANDIN" serve-stdio --state "$STANDIN_DB" --poll-seconds 0.05 --lease-seconds 3600)"
FC_WAIT=5
FC_AGENT_ENV="{ STAMP_FILE = \"$W/agent-stamps\" }"
fleet_config "$W/fleet.toml"
start_fleetd "$W/fleet.toml"
wait_slots idle 1 60

: >"$W/samples"
for b in $(seq 1 "$batches"); do
    before=$(finished_in_log)
    admin enqueue --user bench --kind TASK_IMPLEMENTATION --product p1 --count "$per_batch" >/dev/null
    end=$((SECONDS + 120))
    until [ "$(finished_in_log)" -ge $((before + per_batch)) ]; do
        [ $SECONDS -lt $end ] || die "batch $b did not finish (see $W/fleetd.log)"
        sleep 0.2
    done
    # Join fleetd's "agent started" lines with the agents' stamps, by pid.
    python3 - "$W/fleetd.log" "$W/agent-stamps" >"$W/batch-$b" <<'PY'
import re, sys
starts = {}
for line in open(sys.argv[1]):
    if 'msg="agent started"' in line:
        pid = re.search(r"\bpid=(\d+)", line)
        ans = re.search(r"\bclaim_answer_ns=(\d+)", line)
        if pid and ans:
            starts[pid.group(1)] = int(ans.group(1))
for line in open(sys.argv[2]):
    ns, pid = line.split()
    if pid in starts:
        print(int(ns) - starts[pid])
PY
    : >"$W/agent-stamps"
    read -r med _ <<<"$(stats --scale 1e-6 --digits 3 <"$W/batch-$b")"
    log "batch $b: $(wc -l <"$W/batch-$b") jobs, median $med ms"
    cat "$W/batch-$b" >>"$W/samples"
done
read -r fleet_med fleet_min fleet_max fleet_n <<<"$(stats --scale 1e-6 --digits 3 <"$W/samples")"
[ "$fleet_n" -ge $((batches * per_batch)) ] || die "only $fleet_n of $((batches * per_batch)) jobs measured"

STAMP_FILE="$W/peer-stamp" "$T/spawnpeer" "$([ "$SMOKE" = 1 ] && echo 20 || echo 300)" "$T/stamp-agent" >"$W/peer"
read -r peer_med _ <<<"$(grep '^stamp' "$W/peer" | stats --scale 1e-6 --digits 3)"
read -r true_med _ <<<"$(grep '^true' "$W/peer" | stats --scale 1e-6 --digits 3)"

verdict=$(python3 -c "print('met' if $fleet_med < 5 else 'MISSED')")
echo "per-job overhead (claim answer -> agent execve, DB record included): median $fleet_med ms (min $fleet_min, max $fleet_max, $fleet_n jobs in $batches batches)"
echo "peer: posix_spawn -> execve of the same agent $peer_med ms; posix_spawn+waitpid of /bin/true $true_med ms"
echo "ratio fleet/peer: $(ratio "$fleet_med" "$peer_med")x; target < 5 ms: $verdict"
record overhead_ms "$fleet_med"
record overhead_min_ms "$fleet_min"
record overhead_max_ms "$fleet_max"
record overhead_n "$fleet_n"
record overhead_batches "$batches"
record peer_spawn_ms "$peer_med"
record peer_true_ms "$true_med"
record overhead_verdict "$verdict"
