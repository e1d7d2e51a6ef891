#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine for celery-chaos: system packages (redis-server, docker.io, wrk,
# debootstrap, chromium), the Python package, and (where Docker can run) a Docker daemon and the offline images
# of the reference target. Idempotent; run as root. It starts nothing but a Docker daemon when none answers, and
# stops or kills nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
# the HTML report is checked in a real headless browser (tests/report)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need_apt+=(chromium)
command -v wrk >/dev/null || need_apt+=(wrk)                # the bench's load generator (submit section)
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Nothing already running is touched: the framework starts its own redis-server on free loopback ports, so
# a distribution Redis (or another run's) may keep running beside it. No service is stopped, nothing is killed.

python3 -m pip install -q --disable-pip-version-check -e '.[dev]'

# Docker: start a daemon if none answers (CI machines and fresh VMs), then build the images offline.
if [ "${CHAOS_SKIP_DOCKER:-0}" != "1" ]; then
  if ! docker info >/dev/null 2>&1; then
    (dockerd >/var/log/chaos-dockerd.log 2>&1 &)
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  fi
  if docker info >/dev/null 2>&1; then
    # --offline-base: debootstrap + docker import, so no registry is contacted (set CHAOS_PUBLIC_BASE=1 to
    # build on python:3.11-slim-bookworm instead, where a registry is reachable).
    base_flag=--offline-base
    [ "${CHAOS_PUBLIC_BASE:-0}" = "1" ] && base_flag=--public-base
    chaos images build "$base_flag" || echo "setup: image build failed; docker tests will skip" >&2
  else
    echo "setup: no Docker daemon could be started; docker tests will skip" >&2
  fi
fi
echo "setup: ready"
