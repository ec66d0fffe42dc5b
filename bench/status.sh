#!/usr/bin/env bash
# `fleetctl status` latency, idle slots against the stand-in: 3 slots (issue 2) and 16
# over stdio, 64 and 128 over HTTP with a slot template (issue 8). Wall time of the
# whole command (exec to exit), measured by bench/lib/timeit.c (posix_spawn + waitpid,
# no shell), several runs after warm-ups, median reported.
# Peers, same machine, same run: `supervisorctl status` with 16 programs (supervisord
# 4.2.5 from PyPI) and `s6-svstat` on each of 16 services in turn (Debian's s6).
# Targets: at least 15x faster than supervisorctl; no slower than s6-svstat over all 16.
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.bash"
bench_init status

n=$(runs 30 3)
warm=$(runs 3 1)
if [ "$SMOKE" = 1 ]; then counts="3:stdio 4:http"; else counts="3:stdio 16:stdio 64:http 128:http"; fi
max=0
for c in $counts; do [ "${c%%:*}" -gt $max ] && max=${c%%:*}; done

STANDIN_POLL=5
standin_world "$max" http   # tokens for every count; the HTTP server for the large ones
FC_SERVER="$(toml_list "$PY" "$STANDIN" serve-stdio --state "$STANDIN_DB" --poll-seconds 5)"
FC_URL="$STANDIN_URL"
FC_WAIT=300

# The peers run alongside fleetd; their samples are interleaved with fleetctl's (one
# of each in turn) so that the machine's other load falls on all of them alike.
peers=()
if need_supervisor; then
    start_supervisord "$W/sup" 16
    peers+=(sup)
else
    log "supervisor not installed: peer skipped (smoke run)"
fi
if need_s6; then
    start_s6 "$W/s6" 16
    s6args=()
    for i in $(seq 1 16); do s6args+=(s6-svstat "$S6_DIR/p$i" ---); done
    unset 's6args[${#s6args[@]}-1]'
    peers+=(s6)
else
    log "s6 not installed: peer skipped (smoke run)"
fi
sample() { # sample WHAT: one timed run appended to $W/t-WHAT
    case "$1" in
        fleet) "$T/timeit" 1 0 "${CTL[@]}" status ;;
        sup) "$T/timeit" 1 0 "$SUPERVISORCTL" -c "$SUP_CONF" status ;;
        s6) "$T/timeit" 1 0 "${s6args[@]}" ;;
    esac >>"$W/t-$1-$slots" || die "$1 status failed"
}

first=""
for c in $counts; do
    slots=${c%%:*} FC_TRANSPORT=${c#*:}
    FC_SLOTS=$slots
    rm -rf "$W/state" "$W/run"
    fleet_config "$W/fleet-$slots.toml"
    start_fleetd "$W/fleet-$slots.toml"
    wait_slots idle "$slots" 300
    sleep 1
    with=(fleet)
    if [ -z "$first" ] || [ "$slots" = 16 ]; then with+=("${peers[@]}"); fi
    for w in "${with[@]}"; do for _ in $(seq 1 "$warm"); do sample "$w"; done; : >"$W/t-$w-$slots"; done
    for _ in $(seq 1 "$n"); do for w in "${with[@]}"; do sample "$w"; done; done
    read -r med lo hi _ <<<"$(stats --scale 1e-6 <"$W/t-fleet-$slots")"
    "${CTL[@]}" status --json >"$W/status-$slots.json"
    bench_stop "$FLEETD_PID" 60
    echo "fleetctl status, $slots slots ($FC_TRANSPORT): median $med ms (min $lo, max $hi, $n runs)"
    record "status_${slots}_ms" "$med"
    record "status_${slots}_transport" "$FC_TRANSPORT"
    if [ "$slots" = 16 ] || [ -z "$first" ]; then
        fleet16=$med
        peer_slots=$slots
    fi
    first=${first:-$slots}
done
sup_med="" s6_med=""
for w in "${peers[@]}"; do
    read -r med _ <<<"$(stats --scale 1e-6 <"$W/t-$w-$peer_slots")"
    if [ "$w" = sup ]; then sup_med=$med; else s6_med=$med; fi
done

record status_runs "$n"
if [ -n "$sup_med" ]; then
    r=$(ratio "$sup_med" "$fleet16")
    v=$(python3 -c "print('met' if $r >= 15 else 'MISSED')")
    echo "peer supervisorctl status (16 programs): $sup_med ms; fleetctl ($peer_slots slots) is ${r}x faster (target >= 15x): $v"
    record supervisorctl_ms "$sup_med"
    record status_vs_supervisorctl "$r"
    record status_vs_supervisorctl_verdict "$v"
fi
if [ -n "$s6_med" ]; then
    r=$(ratio "$s6_med" "$fleet16")
    v=$(python3 -c "print('met' if $r >= 1 else 'MISSED')")
    echo "peer s6-svstat over 16 services: $s6_med ms; fleetctl ($peer_slots slots) is ${r}x faster (target >= 1x): $v"
    record s6svstat_ms "$s6_med"
    record status_vs_s6 "$r"
    record status_vs_s6_verdict "$v"
fi
