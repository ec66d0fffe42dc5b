# Shared by every bench/*.sh (sourced, not run). Everything here listens on 127.0.0.1
# or Unix sockets only, and every process a script starts is stopped by bench_cleanup.
#
# Environment a script honours:
#   BENCH_SMOKE=1     a few seconds: tiny counts, no peers, the debug build when one
#                     exists
#   BENCH_BIN=DIR     fleetd and fleetctl from DIR (bench/run builds once and sets it)
#   BENCH_SCRATCH     the release build's scratch path (default /tmp/bench-build)
#   BENCH_OUT=DIR     where a script leaves its figures as KEY=VALUE lines (bench/run)
#   BENCH_TOOLS=DIR   where the C helpers are compiled (shared by bench/run)
#   BENCH_RUNS=N      repetitions where a measure repeats (default per script)
#   BENCH_KEEP=1      keep the work directory (logs, databases) for a look afterwards
set -euo pipefail

BENCH_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH_LIB="$BENCH_REPO/bench/lib"
SMOKE="${BENCH_SMOKE:-0}"
[ "$SMOKE" = 0 ] || SMOKE=1
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi

BENCH_PIDS=()
BENCH_EXIT_HOOKS=()

log() { printf '[%s] %s\n' "${BENCH_NAME:-bench}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# bench_init NAME: work directory, cleanup trap, helpers, binaries, fixtures' python.
bench_init() {
    BENCH_NAME="$1"
    W="$(mktemp -d "/tmp/fb-$BENCH_NAME.XXXXXX")"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM HUP
    bench_tools
    bench_bins
    PY="${FLEET_VENV:-$BENCH_REPO/.venv-fixtures}/bin/python"
    if [ ! -x "$PY" ]; then
        PY="$("$BENCH_REPO/scripts/setup-fixtures.sh" | tail -1)"
    fi
    STANDIN="$BENCH_REPO/Tests/Support/scrum4me-standin/standin.py"
    CTL=("$BIN/fleetctl" --socket "$W/run/fleetd.sock")
}

bench_on_exit() { BENCH_EXIT_HOOKS+=("$1"); }

bench_cleanup() {
    local rc=$? hook pid i
    trap - EXIT INT TERM HUP
    set +e
    for hook in "${BENCH_EXIT_HOOKS[@]}"; do eval "$hook" >/dev/null 2>&1; done
    # Newest first; a second TERM makes fleetd skip its grace.
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        pid="${BENCH_PIDS[$i]}"
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null
        sleep 0.3
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${BENCH_PIDS[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [ -n "${W:-}" ] && [ -d "$W" ]; then
        if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $W"; else rm -rf "$W"; fi
    fi
    exit "$rc"
}

# bench_bg LOG CMD...: starts CMD in the background, tracked for cleanup; sets BG_PID.
bench_bg() {
    local out="$1"
    shift
    "$@" >"$out" 2>&1 &
    BG_PID=$!
    BENCH_PIDS+=("$BG_PID")
}

# Stops one tracked process: TERM (twice for fleetd's escalation if asked), waits.
bench_stop() {
    local pid="$1" timeout="${2:-30}"
    kill -TERM "$pid" 2>/dev/null || return 0
    local end=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt "$end" ]; do sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# The C helpers, compiled once per BENCH_TOOLS directory.
bench_tools() {
    T="${BENCH_TOOLS:-$W/tools}"
    mkdir -p "$T"
    local cc
    cc="$(command -v cc || command -v gcc || command -v clang || true)"
    [ -n "$cc" ] || die "no C compiler (cc, gcc or the Swift toolchain's clang)"
    build_c() { # out src [flags]
        local out="$1" src="$2"
        shift 2
        [ "$T/$out" -nt "$BENCH_LIB/$src" ] && return 0
        "$cc" -O2 -static -o "$T/$out.tmp" "$BENCH_LIB/$src" "$@" 2>/dev/null ||
            "$cc" -O2 -o "$T/$out.tmp" "$BENCH_LIB/$src" "$@"
        mv "$T/$out.tmp" "$T/$out"
    }
    build_c stamp-agent stamp.c
    build_c stamp-exec stamp.c -DSTAMP_EXEC
    build_c stamp-wait stamp.c -DSTAMP_WAIT
    build_c timeit timeit.c
    build_c spawnpeer spawnpeer.c
    build_c noop-agent noop-agent.c
}

# fleetd and fleetctl: the release build as shipped (static Swift stdlib); a smoke run
# takes the debug build when there is one (scripts/test has just made it).
bench_bins() {
    if [ -n "${BENCH_BIN:-}" ]; then
        BIN="$BENCH_BIN"
    elif [ "$SMOKE" = 1 ] && [ -x "$BENCH_REPO/.build/debug/fleetd" ] && [ -x "$BENCH_REPO/.build/debug/fleetctl" ]; then
        BIN="$BENCH_REPO/.build/debug"
    else
        local scratch="${BENCH_SCRATCH:-/tmp/bench-build}"
        log "building fleetd and fleetctl (release, static Swift stdlib) in $scratch"
        (cd "$BENCH_REPO" && swift build -c release --static-swift-stdlib --scratch-path "$scratch" 2>&1 |
            grep -E 'error:|Build complete' >&2) || true
        BIN="$scratch/release"
    fi
    [ -x "$BIN/fleetd" ] && [ -x "$BIN/fleetctl" ] || die "no fleetd/fleetctl in $BIN (build failed?)"
}

# --- peers --------------------------------------------------------------------------

# supervisord/supervisorctl from PyPI (the version Debian 12 ships) in a bench venv.
# Sets SUPERVISORD and SUPERVISORCTL; returns 1 in a smoke run (no peers then).
need_supervisor() {
    local venv="${BENCH_VENV:-$BENCH_REPO/.venv-bench}"
    [ "$SMOKE" = 1 ] && return 1
    if [ ! -x "$venv/bin/supervisord" ]; then
        log "installing supervisor 4.2.5 from PyPI into $venv"
        python3 -m venv "$venv" >&2
        printf '*\n' >"$venv/.gitignore"
        "$venv/bin/pip" install -q --disable-pip-version-check supervisor==4.2.5 >&2
    fi
    SUPERVISORD="$venv/bin/supervisord"
    SUPERVISORCTL="$venv/bin/supervisorctl"
}

# s6 from Debian. Returns 1 in a smoke run (no peers then).
need_s6() {
    [ "$SMOKE" = 1 ] && return 1
    if ! command -v s6-svscan >/dev/null 2>&1; then
        log "installing s6 (Debian)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q s6 >&2 ||
            { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q s6 >&2; }
    fi
    command -v s6-svscan >/dev/null
}

# supervisord with N programs running PROGRAM (default: stamp-wait, which waits forever).
# start_supervisord DIR N [COMMAND]; sets SUP_PID, SUP_CONF.
start_supervisord() {
    local dir="$1" n="$2" cmd="${3:-$T/stamp-wait}" i
    mkdir -p "$dir"
    SUP_CONF="$dir/supervisord.conf"
    cat >"$SUP_CONF" <<EOF
[unix_http_server]
file=$dir/supervisor.sock
chmod=0700

[supervisord]
logfile=$dir/supervisord.log
pidfile=$dir/supervisord.pid
childlogdir=$dir
nodaemon=true
loglevel=warn

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://$dir/supervisor.sock
EOF
    for i in $(seq 1 "$n"); do
        cat >>"$SUP_CONF" <<EOF

[program:p$i]
command=$cmd
directory=$dir
environment=STAMP_FILE="$dir/stamps-p$i"
autorestart=true
startsecs=1
stdout_logfile=NONE
stderr_logfile=NONE
EOF
    done
    bench_bg "$dir/stdout.log" "$SUPERVISORD" -n -c "$SUP_CONF"
    SUP_PID=$BG_PID
    local end=$((SECONDS + 60))
    until [ "$("$SUPERVISORCTL" -c "$SUP_CONF" status 2>/dev/null | grep -c RUNNING)" = "$n" ]; do
        [ $SECONDS -lt $end ] || die "supervisord did not start $n programs"
        sleep 0.2
    done
}

# s6-svscan over N services whose run is stamp-wait (waits forever, stamps each start
# into the service's own directory). start_s6 DIR N; sets S6_PID, S6_DIR.
start_s6() {
    local dir="$1" n="$2" i
    S6_DIR="$dir/scan"
    mkdir -p "$S6_DIR"
    for i in $(seq 1 "$n"); do
        mkdir -p "$S6_DIR/p$i"
        cp "$T/stamp-wait" "$S6_DIR/p$i/run"
    done
    bench_bg "$dir/s6.log" s6-svscan "$S6_DIR"
    S6_PID=$BG_PID
    bench_on_exit "s6-svscanctl -t '$S6_DIR'; sleep 0.5"
    local end=$((SECONDS + 30))
    for i in $(seq 1 "$n"); do
        until s6-svstat "$S6_DIR/p$i" 2>/dev/null | grep -q '^up'; do
            [ $SECONDS -lt $end ] || die "s6 did not bring up $n services"
            sleep 0.1
        done
    done
}

# PIDs of s6-svscan and its s6-supervise children.
s6_pids() {
    echo "$S6_PID"
    pgrep -P "$S6_PID" -x s6-supervise || true
}

# --- the stand-in and fleetd --------------------------------------------------------

# standin_world N [http]: the stand-in's state with N slot tokens (user "bench",
# tokens in $W/tokens/s1..sN); with http, also its HTTP server (sets STANDIN_URL).
# STANDIN_POLL (default 5) is the stand-in's poll interval.
standin_world() {
    local n="$1" transport="${2:-stdio}"
    STANDIN_DB="$W/standin.db"
    local repo_args=()
    if [ "${STANDIN_REPOS:-0}" = 1 ]; then
        # A product p1 with one origin repository, cloned per slot (for worktree jobs).
        git init -q -b main "$W/origin"
        echo "# bench product" >"$W/origin/README.md"
        git -C "$W/origin" add . && git -C "$W/origin" -c user.name=bench -c user.email=bench@localhost commit -q -m init
        local i
        for i in $(seq 1 "$n"); do git clone -q "$W/origin" "$W/repos/s$i"; done
        repo_args=(--repo-root "p1=$W/repos/s{n}")
    fi
    "$PY" "$BENCH_LIB/standin-tokens.py" "$STANDIN_DB" "$W/tokens" "$n" \
        --worktree-root "$W/worktrees/s{n}" "${repo_args[@]}" >/dev/null
    if [ "$transport" = http ]; then
        bench_bg "$W/standin-http.log" "$PY" "$STANDIN" serve-http --state "$STANDIN_DB" --port 0 \
            --port-file "$W/standin.port" --poll-seconds "${STANDIN_POLL:-5}"
        STANDIN_HTTP_PID=$BG_PID
        local end=$((SECONDS + 60))
        until [ -s "$W/standin.port" ]; do
            [ $SECONDS -lt $end ] || die "stand-in HTTP server did not start (see $W/standin-http.log)"
            sleep 0.1
        done
        STANDIN_URL="http://127.0.0.1:$(tr -d '\n' <"$W/standin.port")/mcp"
    fi
}

admin() { "$PY" "$STANDIN" admin --state "$STANDIN_DB" "$@"; }

toml_list() {
    local out="[" sep="" a
    for a in "$@"; do out+="$sep\"$a\""; sep=", "; done
    printf '%s]' "$out"
}

# fleet_config PATH: writes a fleetd config from these variables:
#   FC_SLOTS (count), FC_TRANSPORT (stdio|http), FC_SERVER (TOML list, stdio),
#   FC_URL (http), FC_AGENT (TOML list), FC_AGENT_ENV (TOML inline table),
#   FC_WAIT (wait_seconds), FC_HEARTBEAT, FC_GRACE, FC_EXTRA_FLEET, FC_EXTRA_SCRUM,
#   FC_SCRUM_ENV (TOML inline table for the stdio server), FC_LOG_LEVEL
fleet_config() {
    local server senv="${FC_SCRUM_ENV:-}" aenv="${FC_AGENT_ENV:-}" agent="${FC_AGENT:-}"
    [ -n "$senv" ] || senv="{ }"
    [ -n "$aenv" ] || aenv="{ }"
    [ -n "$agent" ] || agent="$(toml_list "$T/stamp-agent")"
    if [ "${FC_TRANSPORT:-stdio}" = http ]; then
        server="transport = \"http\"
url = \"$FC_URL\""
    else
        server="transport = \"stdio\"
command = $FC_SERVER
env = $senv"
    fi
    cat >"$1" <<EOF
version = 1

[fleet]
name = "bench"
state_dir = "$W/state"
socket = "$W/run/fleetd.sock"
grace = "${FC_GRACE:-10s}"
kill_timeout = "10s"
log_level = "${FC_LOG_LEVEL:-info}"
${FC_EXTRA_FLEET:-}

[scrum4me]
$server
wait_seconds = ${FC_WAIT:-300}
heartbeat_interval = "${FC_HEARTBEAT:-60s}"
${FC_EXTRA_SCRUM:-}

[quota]
probe = "off"

[agent]
command = $agent
timeout = "1h"
env = $aenv

[[slot]]
name = "s{n}"
count = $FC_SLOTS
token_file = "$W/tokens/s{n}"
worktree_root = "$W/worktrees/s{n}"
$([ "${STANDIN_REPOS:-0}" = 1 ] && echo "repo_roots = { \"p1\" = \"$W/repos/s{n}\" }")
EOF
}

# start_fleetd CONFIG: starts fleetd (stderr to $W/fleetd.log); sets FLEETD_PID.
start_fleetd() {
    "$BIN/fleetd" --check-config "$1" >/dev/null
    bench_bg "$W/fleetd.log" "$BIN/fleetd" --config "$1"
    FLEETD_PID=$BG_PID
    local end=$((SECONDS + 30))
    until "${CTL[@]}" status --json >/dev/null 2>&1; do
        kill -0 "$FLEETD_PID" 2>/dev/null || die "fleetd exited (see $W/fleetd.log)"
        [ $SECONDS -lt $end ] || die "fleetd did not answer (see $W/fleetd.log)"
        sleep 0.05
    done
}

# slot_states: "<state>=<count> ..." from fleetctl status --json.
slot_states() {
    "${CTL[@]}" status --json 2>/dev/null | python3 -c '
import collections, json, sys
d = json.load(sys.stdin)
print(" ".join(f"{k}={v}" for k, v in sorted(collections.Counter(s["state"] for s in d["slots"]).items())))'
}

# wait_slots STATE N [TIMEOUT]: until N slots are in STATE.
wait_slots() {
    local state="$1" n="$2" timeout="${3:-120}" states
    local end=$((SECONDS + timeout))
    while :; do
        states="$(slot_states || true)"
        case " $states " in *" $state=$n "*) return 0 ;; esac
        kill -0 "$FLEETD_PID" 2>/dev/null || die "fleetd exited (see $W/fleetd.log)"
        [ $SECONDS -lt $end ] || die "slots not all $state after ${timeout}s: $states"
        sleep 0.2
    done
}

# jobs_done: fleetd's count of finished jobs (done + failed).
jobs_finished() {
    "${CTL[@]}" status --json | python3 -c '
import json, sys
f = json.load(sys.stdin)["fleet"]
print(f["jobs_done"] + f["jobs_failed"])'
}

# Jobs fleetd has finished (any outcome), from its log.
finished_in_log() { grep -c 'msg="job finished"' "$W/fleetd.log" || true; }

# --- measuring ----------------------------------------------------------------------

# Proportional set size of one process, in kB.
pss_kb() { awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup"; }

# CPU time (user + system, all threads, dead ones included) of a process, in ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# median < numbers; with --scale/--digits (see stats.py). Prints "median min max n".
stats() { python3 "$BENCH_LIB/stats.py" "$@"; }

ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); r = a / b if b else float('inf'); print(f'{r:.1f}' if r >= 10 else f'{r:.2f}' if r >= 0.1 else f'{r:.3f}')" "$1" "$2"; }

# record KEY VALUE: a figure for bench/run's tables (and the script's own output).
record() {
    if [ -n "${BENCH_OUT:-}" ]; then
        mkdir -p "$BENCH_OUT"
        printf '%s=%s\n' "$1" "$2" >>"$BENCH_OUT/$BENCH_NAME.env"
    fi
}

runs() { # runs FULL SMOKE: the repetition count
    if [ "$SMOKE" = 1 ]; then echo "$2"; else echo "${BENCH_RUNS:-$1}"; fi
}
