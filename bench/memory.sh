#!/usr/bin/env bash
# Daemon memory: fleetd's PSS with 16 idle slots, then while 10,000 jobs go through them,
# and idle again after. Target: no more than supervisord's PSS (16 programs), and flat
# across the jobs: idle PSS after them within 5% of idle PSS before.
#
# The slots talk to bench/lib/fountain.py over stdio (one per slot, 625 jobs each, handed
# out at once while $W/go exists; it answers get_job_status DONE as if the agent had
# reported), so the jobs go as fast as fleetd takes them; the agent is stamp-agent (exits
# at once). Only fleetd's own PSS counts (not its children), as only supervisord's and
# s6's own processes count for the peers: supervisord with 16 programs, s6-svscan plus
# 16 s6-supervise (summed). PSS from /proc/PID/smaps_rollup, median of 5 readings.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
bench_init memory

slots=16
total=$([ "$SMOKE" = 1 ] && echo 160 || echo "${BENCH_JOBS:-10000}")
per_slot=$(((total + slots - 1) / slots))
total=$((per_slot * slots))

pss_median() { # pss_median PID...: median of 5 readings 1 s apart of the summed PSS, kB
    local i p sum
    for i in 1 2 3 4 5; do
        sum=0
        for p in "$@"; do sum=$((sum + $(pss_kb "$p"))); done
        echo "$sum"
        [ "$i" = 5 ] || sleep "$([ "$SMOKE" = 1 ] && echo 0.1 || echo 1)"
    done | stats --digits 0 | cut -d' ' -f1
}
mb() { python3 -c "print(f'{$1 / 1024:.1f}')"; }

# Peers (idle: their programs just wait).
sup_kb="" s6_kb=""
if need_supervisor; then
    start_supervisord "$W/sup" 16
    sleep 2
    sup_kb=$(pss_median "$SUP_PID")
    bench_stop "$SUP_PID"
    log "supervisord, 16 programs: $(mb "$sup_kb") MB PSS"
fi
if need_s6; then
    start_s6 "$W/s6" 16
    sleep 1
    s6_kb=$(pss_median $(s6_pids))
    s6-svscanctl -t "$S6_DIR"
    bench_stop "$S6_PID" 10
    log "s6-svscan + 16 s6-supervise: $(mb "$s6_kb") MB PSS"
fi

mkdir -p "$W/tokens"
for i in $(seq 1 $slots); do echo "token-s$i" >"$W/tokens/s$i"; done
FC_SLOTS=$slots
FC_SERVER="$(toml_list python3 "$BENCH_LIB/fountain.py" --jobs "$per_slot" --go "$W/go")"
FC_WAIT=300
FC_AGENT_ENV='{ STAMP_FILE = "/dev/null" }'
fleet_config "$W/fleet.toml"
start_fleetd "$W/fleet.toml"
wait_slots idle $slots 120
sleep "$([ "$SMOKE" = 1 ] && echo 0.5 || echo 3)"
idle_kb=$(pss_median "$FLEETD_PID")
log "fleetd, 16 idle slots: $(mb "$idle_kb") MB PSS"

# The jobs: PSS sampled as they go.
echo "jobs pss_kb" >"$W/trace"
t0=$SECONDS
touch "$W/go"
peak_kb=$idle_kb
while :; do
    done_jobs=$(finished_in_log)
    kb=$(pss_kb "$FLEETD_PID")
    [ "$kb" -gt "$peak_kb" ] && peak_kb=$kb
    echo "$done_jobs $kb" >>"$W/trace"
    [ "$done_jobs" -ge "$total" ] && break
    kill -0 "$FLEETD_PID" 2>/dev/null || die "fleetd exited (see $W/fleetd.log)"
    [ $((SECONDS - t0)) -lt 900 ] || die "only $done_jobs of $total jobs after 900 s"
    sleep "$([ "$SMOKE" = 1 ] && echo 0.2 || echo 2)"
done
took=$((SECONDS - t0))
rm -f "$W/go"
wait_slots idle $slots 120
sleep "$([ "$SMOKE" = 1 ] && echo 0.5 || echo 3)"
after_kb=$(pss_median "$FLEETD_PID")
failed=$(grep 'msg="job finished"' "$W/fleetd.log" | grep -vc 'outcome=done' || true)
[ "$failed" = 0 ] || log "warning: $failed jobs did not end done"

# Flat: idle PSS after the jobs within 5% of idle PSS before them (both at rest, median
# of 5 readings). The samples while running are shown too (they move with each job's
# threads and buffers).
read -r q1_jobs q1_kb end_jobs end_kb <<<"$(python3 - "$W/trace" "$total" <<'PY'
import sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]).readlines()[1:]]
total = int(sys.argv[2])
q1 = next(r for r in rows if r[0] >= total // 4)
print(*q1, *rows[-1])
PY
)"
growth=$(python3 -c "print(f'{($after_kb - $idle_kb) / $idle_kb * 100:+.1f}')")
run_growth=$(python3 -c "print(f'{($end_kb - $q1_kb) / $q1_kb * 100:+.1f}')")
flat=$(python3 -c "print('met' if abs($after_kb - $idle_kb) / $idle_kb < 0.05 else 'MISSED')")
echo "fleetd PSS, 16 idle slots: $(mb "$idle_kb") MB; idle again after $total jobs (in ${took}s): $(mb "$after_kb") MB ($growth%); flat (< 5%): $flat"
echo "while running: $(mb "$q1_kb") MB at $q1_jobs jobs, $(mb "$end_kb") MB at $end_jobs jobs; peak $(mb "$peak_kb") MB"
record mem_idle_mb "$(mb "$idle_kb")"
record mem_after_mb "$(mb "$after_kb")"
record mem_peak_mb "$(mb "$peak_kb")"
record mem_growth_pct "$growth"
record mem_run_growth_pct "$run_growth"
record mem_q1 "$q1_jobs:$(mb "$q1_kb")"
record mem_end "$end_jobs:$(mb "$end_kb")"
record mem_jobs "$total"
record mem_jobs_seconds "$took"
record mem_flat_verdict "$flat"
if [ -n "$sup_kb" ]; then
    worst=$((idle_kb > after_kb ? idle_kb : after_kb))
    v=$(python3 -c "print('met' if $worst <= $sup_kb else 'MISSED')")
    echo "peer supervisord (16 programs): $(mb "$sup_kb") MB; fleetd/supervisord: $(python3 -c "print(f'{$worst / $sup_kb:.2f}')")x (target <= 1): $v"
    record supervisord_mb "$(mb "$sup_kb")"
    record mem_vs_supervisord "$(python3 -c "print(f'{$worst / $sup_kb:.2f}')")"
    record mem_vs_supervisord_verdict "$v"
fi
if [ -n "$s6_kb" ]; then
    echo "peer s6-svscan + 16 s6-supervise: $(mb "$s6_kb") MB; fleetd/s6: $(python3 -c "print(f'{$idle_kb / $s6_kb:.1f}')")x"
    record s6_mb "$(mb "$s6_kb")"
fi
