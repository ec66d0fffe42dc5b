#!/usr/bin/env bash
# Jobs per minute through 8 slots with a no-op agent against the stand-in; the target is
# that the stand-in, not fleetd, is the limit, so three figures are shown:
#   fleet + stand-in   fleetd, 8 slots, the stand-in over Streamable HTTP (one server
#                      process); the agent is bench/lib/noop-agent.c, which reports the
#                      job done with one HTTP tools/call and exits. Jobs: IDEA_GRILL.
#   stand-in alone     bench/lib/driver.py: 8 threads making the same MCP calls per job
#                      (settings, heartbeat, wait_for_job, the agent's done, job status)
#                      with nothing else to do: the stand-in's ceiling.
#   fleetd alone       fleetd, 8 slots, against bench/lib/fountain.py (answers at once)
#                      with the stamp-agent: fleetd's own ceiling.
# Each: 3 windows of 15 s after a 5 s warm-up, the median window as jobs/min, with the
# CPU used in them by fleetd and by the stand-in. Met when fleet gets at least 80% of
# the stand-in's ceiling and fleetd alone goes at least 3x faster than that.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
bench_init throughput

window=$([ "$SMOKE" = 1 ] && echo 1 || echo 15)
nwin=$(runs 3 1)
warmup=$([ "$SMOKE" = 1 ] && echo 0.2 || echo 5)
queued=$([ "$SMOKE" = 1 ] && echo 60 || echo 6000)
hz=$(getconf CLK_TCK)
slots=8

STANDIN_POLL=0.1
standin_world $slots http
admin enqueue --user bench --kind IDEA_GRILL --count "$queued" >/dev/null

done_in_standin() {
    python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT count(*) FROM jobs WHERE status='DONE'\").fetchone()[0])" "$STANDIN_DB"
}

# measure NAME COUNTER PID...: windows of jobs/min (and CPU % of each PID) into $W/m-NAME
measure() {
    local name="$1" counter="$2" c0 c1 t0 t1 p
    shift 2
    sleep "$warmup"
    for _ in $(seq 1 "$nwin"); do
        c0=$($counter)
        declare -A k0=()
        for p in "$@"; do k0[$p]=$(cpu_ticks "$p"); done
        t0=$(date +%s%N)
        sleep "$window"
        c1=$($counter)
        t1=$(date +%s%N)
        local line
        line="$(python3 -c "print(f'{($c1 - $c0) / (($t1 - $t0) / 6e10):.0f}')")"
        for p in "$@"; do line+=" $(python3 -c "print(f'{($(cpu_ticks "$p") - ${k0[$p]}) / $hz / (($t1 - $t0) / 1e9) * 100:.0f}')")"; done
        echo "$line" >>"$W/m-$name"
        log "$name: $line"
    done
}
median_col() { cut -d' ' -f"$2" "$W/m-$1" | stats --digits 0 | cut -d' ' -f1; }

# 1. fleet against the stand-in
FC_SLOTS=$slots FC_TRANSPORT=http FC_URL="$STANDIN_URL" FC_WAIT=5
FC_AGENT="$(toml_list "$T/noop-agent")"
fleet_config "$W/fleet-standin.toml"
start_fleetd "$W/fleet-standin.toml"
measure fleet done_in_standin "$FLEETD_PID" "$STANDIN_HTTP_PID"
bench_stop "$FLEETD_PID" 60
fails=$(grep 'msg="job finished"' "$W/fleetd.log" | grep -vc 'outcome=done' || true)
[ "$fails" = 0 ] || log "warning: $fails jobs did not end done (see $W/fleetd.log)"
mv "$W/fleetd.log" "$W/fleetd-standin.log"

# 2. the stand-in alone
bench_bg "$W/driver.log" python3 "$BENCH_LIB/driver.py" "$STANDIN_URL" $(for i in $(seq 1 $slots); do echo "$W/tokens/s$i"; done)
DRIVER_PID=$BG_PID
measure standin done_in_standin "$DRIVER_PID" "$STANDIN_HTTP_PID"
kill -0 "$DRIVER_PID" || die "driver failed: $(tail -3 "$W/driver.log")"
bench_stop "$DRIVER_PID"

# 3. fleetd alone
rm -rf "$W/state" "$W/run"
FC_TRANSPORT=stdio FC_WAIT=300
FC_SERVER="$(toml_list python3 "$BENCH_LIB/fountain.py" --jobs 1000000 --go "$W/go")"
FC_AGENT="" FC_AGENT_ENV='{ STAMP_FILE = "/dev/null" }'
fleet_config "$W/fleet-fountain.toml"
start_fleetd "$W/fleet-fountain.toml"
wait_slots idle $slots 60
touch "$W/go"
measure fountain finished_in_log "$FLEETD_PID"
rm -f "$W/go"

fleet_rate=$(median_col fleet 1) fleet_cpu=$(median_col fleet 2) fleet_standin_cpu=$(median_col fleet 3)
standin_rate=$(median_col standin 1) standin_cpu=$(median_col standin 3)
own_rate=$(median_col fountain 1) own_cpu=$(median_col fountain 2)
# A smoke run's one-second window may see no job finish at all: never divide by zero.
share=$(python3 -c "r = $standin_rate; print(f'{$fleet_rate / r * 100:.0f}' if r else 'n/a')")
v=$(python3 -c "print('met' if $fleet_rate >= 0.8 * $standin_rate and $own_rate >= 3 * $fleet_rate else 'MISSED')")
echo "fleet + stand-in: $fleet_rate jobs/min (fleetd CPU $fleet_cpu%, stand-in CPU $fleet_standin_cpu% of a core)"
echo "stand-in alone (driver): $standin_rate jobs/min (stand-in CPU $standin_cpu%); fleet reaches $share% of it"
echo "fleetd alone (fountain): $own_rate jobs/min (fleetd CPU $own_cpu%), $(ratio "$own_rate" "$fleet_rate")x the rate through the stand-in"
echo "limited by the stand-in, not by fleetd: $v"
record tp_fleet "$fleet_rate"
record tp_fleet_cpu "$fleet_cpu"
record tp_fleet_standin_cpu "$fleet_standin_cpu"
record tp_standin "$standin_rate"
record tp_standin_cpu "$standin_cpu"
record tp_own "$own_rate"
record tp_own_cpu "$own_cpu"
record tp_share "$share"
record tp_verdict "$v"
