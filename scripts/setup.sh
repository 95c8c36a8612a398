#!/usr/bin/env bash
# Everything hammer needs on a fresh Debian/Ubuntu machine, idempotent (re-running is cheap):
# system packages, a running Docker engine, the Python packages, and the sandbox image.
#   scripts/setup.sh           what `make demo` needs
#   scripts/setup.sh --test    also what the tests need (Chromium for the browser test)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

packages=()
command -v dockerd >/dev/null 2>&1 || packages+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || packages+=(debootstrap)
if [ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null 2>&1; then packages+=(chromium); fi
if [ ${#packages[@]} -gt 0 ]; then
  echo "setup: installing ${packages[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
fi

bash scripts/docker-up.sh

# torch first and pinned: a plain `torch` requirement can pull a multi-GB CUDA build.
if ! $PY -c "import torch" >/dev/null 2>&1; then
  $PY -m pip install -q --disable-pip-version-check torch==2.13.0
fi
extras="swift,slack,discord"
[ "${1:-}" = "--test" ] && extras="dev,$extras"
$PY -m pip install -q --disable-pip-version-check -e ".[$extras]"

# The sandbox image: built offline from a wheelhouse; a no-op when its inputs are unchanged.
hammer image build
