#!/usr/bin/env bash
# Creates (or reuses) the Python virtualenv that the test fixtures run in:
# the Scrum4Me stand-in MCP server and the scripted agent (Tests/Support/), plus the
# real `claude` CLI that the claude-agent-sdk wheel carries (requirements-claude.txt).
#
#   scripts/setup-fixtures.sh            -> venv at $FLEET_VENV (default <repo>/.venv-fixtures)
#
# Idempotent: packages are installed only when Tests/Support/requirements.txt or
# requirements-claude.txt changed since the last successful install (a stamp file
# inside the venv holds their hashes).
# The last line printed on stdout is the venv's python path; everything else goes to stderr.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FLEET_VENV:-$repo/.venv-fixtures}"
req="$repo/Tests/Support/requirements.txt"
req_claude="$repo/Tests/Support/requirements-claude.txt"
python="${FLEET_PYTHON:-python3}"

case "$venv" in
    /*) ;;
    *) venv="$PWD/$venv" ;;
esac

log() { printf 'setup-fixtures: %s\n' "$*" >&2; }

for file in "$req" "$req_claude"; do
    if [ ! -f "$file" ]; then
        log "missing $file"
        exit 1
    fi
done
if ! command -v "$python" >/dev/null 2>&1; then
    log "$python not found; install python3 (3.10 or newer)"
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
    log "$python is older than 3.10; the MCP SDK needs 3.10+"
    exit 1
fi

hash_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

want="$(hash_of "$req") $(hash_of "$req_claude")"
stamp="$venv/.fixtures-requirements.sha256"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "venv up to date: $venv"
    echo "$venv/bin/python"
    exit 0
fi

make_venv() {
    "$python" -m venv "$venv" >&2
}

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$venv"
    if ! make_venv; then
        rm -rf "$venv"
        if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
            log "python3 -m venv failed; installing python3-venv with apt-get"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update >&2
            pyver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
            apt-get install -y python3-venv >&2 || true
            apt-get install -y "python${pyver}-venv" >&2 || true
            make_venv
        else
            log "python3 -m venv failed; install the python3-venv package (as root: apt-get install python3-venv)"
            exit 1
        fi
    fi
fi

log "installing $(basename "$req") and $(basename "$req_claude") into $venv"
rm -f "$stamp"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req" -r "$req_claude" >&2
"$venv/bin/python" -c 'import mcp.server.lowlevel, mcp.client.stdio, mcp.client.streamable_http, uvicorn, starlette' >&2
# the claude CLI inside the claude-agent-sdk wheel (found without importing the SDK)
"$venv/bin/python" - >&2 <<'PY'
import importlib.util, os, sys
spec = importlib.util.find_spec("claude_agent_sdk")
cli = os.path.join(spec.submodule_search_locations[0], "_bundled", "claude") if spec else ""
if not os.access(cli, os.X_OK):
    sys.exit("setup-fixtures: no claude CLI in the claude-agent-sdk wheel (looked at %r)" % cli)
PY
echo "$want" > "$stamp"
# keep the venv out of git without touching the repo's .gitignore
printf '*\n' > "$venv/.gitignore"
log "venv ready: $venv"
echo "$venv/bin/python"
