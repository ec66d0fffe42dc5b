#!/usr/bin/env bash
# Restart after a crash: time from SIGKILL of a supervised process to the first
# instruction of its replacement, when the backoff floor allows an immediate restart.
# Target: fleet no slower than either peer.
#
# fleet: the process a slot keeps running is its Scrum4Me server (stdio). Its command is
#   the stand-in behind bench/lib/stamp.c's stamp-exec (which stamps CLOCK_REALTIME ns,
#   then execs the stand-in); one slot, backoff_min = "0s" (no floor), restart_budget
#   high. The slot sees its server's output close, rebuilds the connection, respawns.
# supervisord: one program (stamp-wait: stamps, then waits), autorestart, startsecs=1.
# s6: one service whose run is stamp-wait.
# Each crash comes at least 1.5 s after the last start (past supervisord's startsecs and
# s6's 1 s restart throttle). Trials are interleaved between the three; bench/lib/crash.py
# takes the time just before kill() and reads the replacement's stamp. Median reported.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
bench_init restart
unset STAMP_FILE

trials=$(runs 9 2)

standin_world 1
FC_SLOTS=1
FC_SERVER="$(toml_list "$T/stamp-exec" "$PY" "$STANDIN" serve-stdio --state "$STANDIN_DB" --poll-seconds 5)"
FC_SCRUM_ENV="{ STAMP_FILE = \"$W/server-stamps\" }"
FC_WAIT=300
FC_EXTRA_SCRUM='backoff_min = "0s"
backoff_max = "1s"'
FC_EXTRA_FLEET='restart_budget = 1000'
fleet_config "$W/fleet.toml"
start_fleetd "$W/fleet.toml"

who=(fleet)
if need_supervisor; then start_supervisord "$W/sup" 1; who+=(sup); fi
if need_s6; then start_s6 "$W/s6" 1; who+=(s6); fi

stamps_of() {
    case "$1" in
        fleet) echo "$W/server-stamps" ;;
        sup) echo "$W/sup/stamps-p1" ;;
        s6) echo "$S6_DIR/p1/stamps" ;;
    esac
}
ready() { # ready WHO: running, and started at least 1.5 s ago
    local last now
    case "$1" in
        fleet) wait_slots idle 1 60 ;;
        sup) until "$SUPERVISORCTL" -c "$SUP_CONF" status p1 | grep -q RUNNING; do sleep 0.05; done ;;
        s6) until s6-svstat "$S6_DIR/p1" | grep -q '^up'; do sleep 0.05; done ;;
    esac
    last=$(tail -1 "$(stamps_of "$1")" | cut -d' ' -f1)
    now=$(date +%s%N)
    python3 -c "import time; time.sleep(max(0, 1.5 - ($now - $last) / 1e9))"
}

for w in "${who[@]}"; do ready "$w"; done
for t in $(seq 1 "$trials"); do
    for w in "${who[@]}"; do
        ready "$w"
        python3 "$BENCH_LIB/crash.py" "$(stamps_of "$w")" 30 >>"$W/r-$w" || die "$w did not restart within 30 s"
    done
done
restarts=$(grep -c 'slot failed; backing off' "$W/fleetd.log" || true)
[ "$restarts" -ge "$trials" ] || log "warning: fleetd logged $restarts restarts for $trials crashes"

read -r fleet_med fleet_lo fleet_hi _ <<<"$(stats --scale 1e-6 <"$W/r-fleet")"
echo "fleet: slot server respawned $fleet_med ms after SIGKILL (median of $trials; min $fleet_lo, max $fleet_hi)"
record restart_ms "$fleet_med"
record restart_trials "$trials"
fastest_peer=""
for w in "${who[@]}"; do
    [ "$w" = fleet ] && continue
    read -r med _ <<<"$(stats --scale 1e-6 <"$W/r-$w")"
    name=$([ "$w" = sup ] && echo supervisord || echo s6-supervise)
    echo "peer $name: $med ms; fleet/peer: $(ratio "$fleet_med" "$med")x"
    record "restart_${w}_ms" "$med"
    if [ -z "$fastest_peer" ] || python3 -c "import sys; sys.exit(0 if $med < $fastest_peer else 1)"; then fastest_peer=$med; fi
done
if [ -n "$fastest_peer" ]; then
    v=$(python3 -c "print('met' if $fleet_med <= $fastest_peer else 'MISSED')")
    echo "target (no slower than either peer; the faster took $fastest_peer ms): $v"
    record restart_verdict "$v"
fi
