#!/usr/bin/env bash
# Shutdown with 16 busy slots and a 10 s grace: SIGTERM to fleetd until it has exited.
# Target: within grace + 2 s.
#
# 16 slots against the stand-in over stdio, each running a job whose agent outlives the
# grace (`sleep 3600`, which ends on SIGTERM as claude does). fleetd drains, waits the
# grace, stops the agents (TERM to each process group), releases their jobs, closes the
# slot servers and exits. Checked after each run: no agent and no server left behind.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
bench_init shutdown

rounds=$(runs 3 1)
slots=$([ "$SMOKE" = 1 ] && echo 2 || echo 16)
grace=$([ "$SMOKE" = 1 ] && echo 1 || echo 10)

standin_world $slots
FC_SLOTS=$slots
FC_SERVER="$(toml_list "$PY" "$STANDIN" serve-stdio --state "$STANDIN_DB" --poll-seconds 0.2)"
FC_WAIT=30
FC_GRACE="${grace}s"
FC_AGENT="$(toml_list /bin/sh -c "sleep 3600; exit 0" "bench-busy-agent-$$")"
fleet_config "$W/fleet.toml"

for r in $(seq 1 "$rounds"); do
    rm -rf "$W/state" "$W/run"
    start_fleetd "$W/fleet.toml"
    wait_slots idle $slots 300
    admin enqueue --user bench --kind IDEA_GRILL --count $slots >/dev/null
    wait_slots busy $slots 120
    sleep 1
    t0=$(date +%s%N)
    kill -TERM "$FLEETD_PID"
    wait "$FLEETD_PID" || die "fleetd exited with status $?"
    t1=$(date +%s%N)
    echo $((t1 - t0)) >>"$W/times"
    left=$(pgrep -f "bench-busy-agent-$$" | wc -l || true)
    [ "$left" = 0 ] || die "$left agents left running after fleetd exited"
    log "round $r: $(python3 -c "print(f'{($t1 - $t0) / 1e9:.2f}')") s"
done
sleep 0.5
servers=$(pgrep -f "serve-stdio --state $STANDIN_DB" | wc -l || true)
[ "$servers" = 0 ] || die "$servers slot servers left running after fleetd exited"

read -r med lo hi _ <<<"$(stats --scale 1e-9 <"$W/times")"
v=$(python3 -c "print('met' if $hi <= $grace + 2 else 'MISSED')")
echo "shutdown, $slots busy slots, grace ${grace}s: median $med s (min $lo, max $hi, $rounds runs); target <= $((grace + 2)) s: $v"
record shutdown_s "$med"
record shutdown_max_s "$hi"
record shutdown_runs "$rounds"
record shutdown_grace_s "$grace"
record shutdown_verdict "$v"
