#!/usr/bin/env bash
# Prepare this machine (fresh Debian, as root) to build and test Clarity:
# apt packages, a running dockerd, the .venv with the project installed, the local images.
# Idempotent: a second run only checks and returns in a few seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { echo "setup: $*" >&2; }

# --- apt packages (only what is missing) -------------------------------------------
pkg_installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]; }
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
pkg_installed busybox-static || missing+=(busybox-static)
command -v git >/dev/null 2>&1 || missing+=(git)
pkg_installed debian-archive-keyring || missing+=(debian-archive-keyring)   # debootstrap verifies with it
pkg_installed ca-certificates || missing+=(ca-certificates)
# PostgreSQL: only the binaries (initdb, pg_ctl). No server is started here: the tests start a
# throwaway cluster of their own (tests/conftest.py), as user nobody, on 127.0.0.1.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if ! command -v python3 >/dev/null 2>&1; then
  missing+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)                                                  # Debian splits it off
fi
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || { log "need root to install: ${missing[*]}"; exit 1; }
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${missing[@]}" >&2
fi

# --- dockerd -------------------------------------------------------------------------
dockerd_running() {
  local c
  for c in /proc/[0-9]*/comm; do
    [[ "$(cat "$c" 2>/dev/null)" == dockerd ]] && return 0
  done
  return 1
}
if ! docker info >/dev/null 2>&1; then
  if ! dockerd_running; then
    rm -f /var/run/docker.pid              # a stale pid file from a killed daemon blocks a new one
    log "starting dockerd (log: /tmp/clarity-dockerd.log)"
    setsid nohup dockerd --bridge=none --iptables=false >>/tmp/clarity-dockerd.log 2>&1 </dev/null &
  else
    log "dockerd is running but not answering yet; waiting"
  fi
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { log "docker did not come up in 60 s; see /tmp/clarity-dockerd.log"; tail -n 20 /tmp/clarity-dockerd.log >&2 || true; exit 1; }
  log "dockerd is up"
fi

# --- .venv ---------------------------------------------------------------------------
stamp=.venv/.clarity-pyproject.sha256
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c '' >/dev/null 2>&1; then
  log "creating .venv"
  rm -rf .venv
  python3 -m venv .venv
fi
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
  log "pip install -e '.[test]' (pyproject.toml changed or first install)"
  .venv/bin/python -m pip install -q -e '.[test]' >&2
  echo "$want" >"$stamp"
fi

# --- images --------------------------------------------------------------------------
bash .ci/images.sh
log "ready"
