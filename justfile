# Casemesh developer commands. `just up` runs the whole system locally; `just test` runs every test.

set shell := ["bash", "-euo", "pipefail", "-c"]

gen := "libs/casemesh/src"

# List the recipes.
default:
    @just --list

# Create the virtualenv with every service, the shared library and the dev tools.
sync:
    uv sync --all-packages --frozen

# Generate Python code (messages, gRPC stubs, type stubs) from proto/. Never edit the output.
proto: sync
    rm -rf {{gen}}/casemesh/v1 {{gen}}/casemesh/events
    uv run --frozen python -m grpc_tools.protoc -I proto \
        -I "$(uv run --frozen python -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')" \
        --python_out={{gen}} --grpc_python_out={{gen}} --mypy_out={{gen}} --mypy_grpc_out={{gen}} \
        $(find proto -name '*.proto' | sort)

# Start PostgreSQL, Kafka, every service and the local mail/SMS sinks; Ctrl-C stops all.
up: proto
    uv run --frozen casemesh-dev up

# Start only PostgreSQL and Kafka (for running a service by hand).
infra: proto
    uv run --frozen casemesh-dev infra

# Run every test: unit, integration and end-to-end (starts its own PostgreSQL and Kafka).
test *ARGS: proto
    uv run --frozen pytest {{ARGS}}

# Static checks: ruff, mypy, buf lint.
lint: proto
    uv run --frozen ruff check .
    uv run --frozen ruff format --check .
    uv run --frozen mypy
    npx --yes @bufbuild/buf@1.75.0 lint proto

# Benchmarks (print numbers and ratios; not part of the tests).
bench: proto
    uv run --frozen python -m bench

# Remove the local run folder (databases, broker data, sinks, logs).
clean:
    uv run --frozen casemesh-dev clean
