#!/usr/bin/env bash
# Generates the Python code for every contract in proto/ into the shared library
# (messages, gRPC stubs, and mypy stubs). The output is git-ignored: never edit it.
# Runs with whichever `python` has grpcio-tools and mypy-protobuf installed.
#
# proto/third_party holds other projects' protos that ours import. Of these only
# buf/validate/validate.proto is generated (as the top-level package `buf.validate`,
# which the protovalidate runtime imports; the runtime does not ship it), from the
# copy the annotations were written against, so the two always agree.
set -euo pipefail
cd "$(dirname "$0")/.."
out=libs/casemesh/src
include=$(python -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
rm -rf "$out/casemesh/v1" "$out/casemesh/events" "$out/buf"
mapfile -t protos < <(find proto -path proto/third_party -prune -o -name '*.proto' -print | sort)
python -m grpc_tools.protoc -I proto -I proto/third_party -I "$include" \
    --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" \
    "${protos[@]}" >/dev/null
python -m grpc_tools.protoc -I proto/third_party -I "$include" \
    --python_out="$out" --mypy_out="$out" \
    proto/third_party/buf/validate/validate.proto >/dev/null
touch "$out/buf/__init__.py" "$out/buf/validate/__init__.py"
