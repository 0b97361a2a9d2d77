#!/usr/bin/env bash
# Generate Python stubs for proto/ into services/core/proto (package meshllm.core.proto).
# protoc writes absolute imports ("from mesh.v1 import x_pb2"), which break inside a package:
# they are rewritten to relative ones.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-services/core/proto}
PY=${PYTHON:-python3}
rm -rf "$OUT/mesh"
mkdir -p "$OUT"
"$PY" -m grpc_tools.protoc -I proto --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" \
  proto/mesh/v1/*.proto
sed -i -E 's/^from mesh\.v1 import /from . import /' "$OUT"/mesh/v1/*.py "$OUT"/mesh/v1/*.pyi
touch "$OUT/__init__.py" "$OUT/mesh/__init__.py" "$OUT/mesh/v1/__init__.py"
