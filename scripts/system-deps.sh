#!/usr/bin/env bash
# System packages Mesh LLM needs: etcd (the mesh's store), a C++ toolchain for llama.cpp, and
# a headless Chromium for the tests that drive the console in a real browser.
# Installs only what is missing (Debian/Ubuntu, as root or with sudo).
set -euo pipefail
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
command -v ninja >/dev/null || need+=(ninja-build)
command -v curl >/dev/null || need+=(curl)
command -v ip >/dev/null || need+=(iproute2)
command -v chromium >/dev/null || need+=(chromium)
command -v systemd-analyze >/dev/null || need+=(systemd)
python3 -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
[[ ${#need[@]} -eq 0 ]] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "missing: ${need[*]} — install them with your package manager" >&2
  exit 1
fi
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo
echo "installing system packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian's etcd-server package enables a system service; the mesh runs its own etcd instead.
if [[ " ${need[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null; then
  $SUDO systemctl disable --now etcd >/dev/null 2>&1 || true
fi
