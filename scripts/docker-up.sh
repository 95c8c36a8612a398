#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine; safe to run any number of times.
#
# - installs Debian's docker.io and debootstrap when `dockerd` is missing (root only),
# - starts `dockerd --bridge=none --iptables=false` in the background when `docker info`
#   fails (no bridge and no iptables: job containers run with --network none, and
#   machines without NAT privileges can still run the engine),
# - waits up to 60 s for `docker info` to answer.
# The engine's log goes to ${DOCKERD_LOG:-/var/log/hammer-dockerd.log}.
set -euo pipefail

log=${DOCKERD_LOG:-/var/log/hammer-dockerd.log}

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "docker-up: dockerd or debootstrap is missing; run as root to install docker.io and debootstrap" >&2
        exit 1
    fi
    echo "docker-up: installing docker.io and debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io debootstrap >/dev/null
fi

if docker info >/dev/null 2>&1; then
    echo "docker-up: the engine is already running"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "docker-up: the engine is not running and only root can start it (sudo $0)" >&2
    exit 1
fi

echo "docker-up: starting dockerd (log: $log)"
mkdir -p "$(dirname "$log")"
nohup dockerd --bridge=none --iptables=false >>"$log" 2>&1 &

for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        echo "docker-up: the engine answers"
        exit 0
    fi
    sleep 1
done
echo "docker-up: dockerd did not answer within 60 s; the end of $log:" >&2
tail -n 20 "$log" >&2 || true
exit 1
