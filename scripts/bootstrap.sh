#!/usr/bin/env bash
# Installs what building and testing fleet needs on a fresh Debian machine that has
# only the Swift toolchain: the C libraries' headers, git, python3-venv, and the
# fixtures' virtual environment. Idempotent; quiet when everything is there.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf 'bootstrap: %s\n' "$*" >&2; }

if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
fi
command -v swift >/dev/null 2>&1 || { log "swift not found: install the Swift 6 toolchain"; exit 1; }

# Debian packages: headers for sqlite3 and libcurl, git for worktrees, venv for fixtures.
need=()
for pkg in libsqlite3-dev libcurl4-openssl-dev git python3-venv util-linux procps; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        log "missing packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})"
        exit 1
    fi
    log "installing ${need[*]}"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi

# Git needs an identity for the fixtures' commits on a machine that never had one.
git config --global user.email >/dev/null 2>&1 || git config --global user.email "fleet-tests@localhost"
git config --global user.name >/dev/null 2>&1 || git config --global user.name "fleet tests"

"$repo/scripts/setup-fixtures.sh" >/dev/null
