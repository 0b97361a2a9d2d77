#!/usr/bin/env bash
# Containers without a Docker engine: Debian's podman, configured to run as root here
# (runc, cgroupfs, raised ulimits), and a local debian:bookworm-slim base image made with
# debootstrap from the mirror apt already uses (no registry is pulled from). Idempotent.
set -euo pipefail
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  echo docker; exit 0   # a real Docker engine: nothing to set up
fi
need=()
# iptables: netavark's firewall driver; without it every `podman run` fails with
# "netavark: No such file or directory"
for tool in podman runc slirp4netns fuse-overlayfs debootstrap newuidmap catatonit iptables /usr/lib/podman/netavark /usr/lib/podman/aardvark-dns; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
if [[ ${#need[@]} -gt 0 ]]; then
  echo "installing podman and its helpers …" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman runc uidmap slirp4netns fuse-overlayfs debootstrap catatonit netavark aardvark-dns iptables >/dev/null
fi
mkdir -p /etc/containers/containers.conf.d
cat >/etc/containers/containers.conf.d/mesh-llm.conf <<'CONF'
# mesh-llm: root podman on a host with a hybrid cgroup layout; netavark + aardvark-dns give
# compose its service-name DNS
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[network]
network_backend = "netavark"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
CONF
if ! podman image exists docker.io/library/debian:bookworm-slim; then
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  echo "making the debian:bookworm-slim base image with debootstrap ($mirror) …" >&2
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/*
  tar -C "$root" -c . | podman import - docker.io/library/debian:bookworm-slim >/dev/null
fi
echo podman
