#!/usr/bin/env bash
# Generates the Python code for every contract in proto/ into the shared library
# (messages, gRPC stubs, and mypy stubs). The output is git-ignored: never edit it.
# Runs with whichever `python` has grpcio-tools and mypy-protobuf installed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=libs/casemesh/src
include=$(python -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
rm -rf "$out/casemesh/v1" "$out/casemesh/events"
mapfile -t protos < <(find proto -name '*.proto' | sort)
python -m grpc_tools.protoc -I proto -I "$include" \
    --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" \
    "${protos[@]}" >/dev/null
