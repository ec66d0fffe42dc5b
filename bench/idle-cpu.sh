#!/usr/bin/env bash
# Idle CPU: fleetd with 16 idle slots against the stand-in over stdio, at the shipped
# cadences (worker_heartbeat every 60 s, wait_for_job long polls of 300 s), over 60 s.
# Peer, in the same 60 s: supervisord with 16 programs (and s6-svscan + 16 s6-supervise).
# CPU = utime + stime of the supervisor's own process(es) from /proc (dead threads
# included), as a percentage of one core. Target: under 0.5% of a core.
# The 60 s window is also cut in three 20 s windows; their median is shown beside it.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
bench_init idle-cpu

window=$([ "$SMOKE" = 1 ] && echo 1 || echo 20)
slots=$([ "$SMOKE" = 1 ] && echo 2 || echo 16)
hz=$(getconf CLK_TCK)

STANDIN_POLL=5
standin_world $slots
FC_SLOTS=$slots
FC_SERVER="$(toml_list "$PY" "$STANDIN" serve-stdio --state "$STANDIN_DB" --poll-seconds 5)"
FC_WAIT=300
FC_HEARTBEAT=60s
fleet_config "$W/fleet.toml"
start_fleetd "$W/fleet.toml"

who=(fleet)
if need_supervisor; then start_supervisord "$W/sup" 16; who+=(sup); fi
if need_s6; then start_s6 "$W/s6" 16; who+=(s6); fi
wait_slots idle $slots 300
sleep "$([ "$SMOKE" = 1 ] && echo 0.5 || echo 5)"

pids_of() {
    case "$1" in
        fleet) echo "$FLEETD_PID" ;;
        sup) echo "$SUP_PID" ;;
        s6) s6_pids ;;
    esac
}
ticks_of() { local p t=0; for p in $(pids_of "$1"); do t=$((t + $(cpu_ticks "$p"))); done; echo $t; }

declare -A start last
for w in "${who[@]}"; do start[$w]=$(ticks_of "$w"); last[$w]=${start[$w]}; done
t0=$(date +%s.%N)
for k in 1 2 3; do
    sleep "$window"
    for w in "${who[@]}"; do
        now=$(ticks_of "$w")
        echo "$(python3 -c "print(($now - ${last[$w]}) / $hz / $window * 100)")" >>"$W/win-$w"
        last[$w]=$now
    done
done
elapsed=$(python3 -c "import time; print(time.time() - $t0)")
kill -0 "$FLEETD_PID" || die "fleetd exited"
states=$(slot_states)
[ "$states" = "idle=$slots" ] || log "warning: slots not all idle at the end: $states"

pct() { python3 -c "print(f'{($(ticks_of "$1") - ${start[$1]}) / $hz / $elapsed * 100:.3f}')"; }
fleet_pct=$(pct fleet)
read -r fleet_win _ <<<"$(stats --digits 3 <"$W/win-fleet")"
v=$(python3 -c "print('met' if $fleet_pct < 0.5 else 'MISSED')")
echo "fleetd idle CPU, $slots slots, $(printf %.0f "$elapsed") s: $fleet_pct% of a core (20 s windows: median $fleet_win%); target < 0.5%: $v"
record idle_cpu_pct "$fleet_pct"
record idle_cpu_window_pct "$fleet_win"
record idle_cpu_seconds "$(printf %.0f "$elapsed")"
record idle_cpu_verdict "$v"
for w in "${who[@]}"; do
    [ "$w" = fleet ] && continue
    p=$(pct "$w")
    name=$([ "$w" = sup ] && echo "supervisord (16 programs)" || echo "s6-svscan + 16 s6-supervise")
    echo "peer $name: $p% of a core; fleetd/peer: $(ratio "$fleet_pct" "$p")x"
    record "idle_cpu_${w}_pct" "$p"
done
