# Casemesh developer commands. `just up` runs the whole system locally; `just test` runs every test.

set shell := ["bash", "-euo", "pipefail", "-c"]
# Recipe arguments reach commands as "$@", quoting intact (`./dev test -k "a and b"`).
set positional-arguments

# List the recipes.
default:
    @just --list

# Create the virtualenv with every service, the shared library and the dev tools.
sync:
    uv sync --all-packages --frozen

# Generate Python code (messages, gRPC stubs, type stubs) from proto/. Never edit the output.
proto: sync
    uv run --frozen bash scripts/gen-proto.sh

# The page is bundled into clients/web/selfservice/dist (the gateway serves it).
# Generate the TypeScript client from proto/, type-check it (strict) and bundle the pages.
web:
    cd clients/web && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } && npm run build

# From the code that publishes and the .proto files (scripts/asyncapi.py); `--check` only
# says if it is stale.
# Write docs/asyncapi.yaml, the AsyncAPI document of every topic.
asyncapi *ARGS: proto
    uv run --frozen python scripts/asyncapi.py "$@"

# (`./dev up` runs this command itself, after `proto` and `web`, so a Ctrl-C ends quietly.)
# Start PostgreSQL, Kafka, every service and the local mail/SMS sinks; Ctrl-C stops all.
up: proto web
    uv run --frozen casemesh-dev up

# Start only PostgreSQL and Kafka (for running a service by hand).
infra: proto
    uv run --frozen casemesh-dev infra

# Run every test: unit, integration and end-to-end (starts its own PostgreSQL and Kafka).
test *ARGS: proto web
    uv run --frozen pytest "$@"

# Kill -9 and restore PostgreSQL, Kafka, each relay, the notifier, a writer and the gateway,
# one at a time; prints what each did to the people.
# Fault drills under load (about 8 min).
faults *ARGS: proto
    uv run --frozen pytest tests/faults -m faults "$@"

# (buf breaking compares proto/ with main: scripts/check-breaking.sh says against which commit.)
# Static checks: ruff, mypy, docs current, buf lint and breaking, TypeScript strict (in `web`).
lint: proto web
    uv run --frozen ruff check .
    uv run --frozen ruff format --check .
    uv run --frozen mypy
    uv run --frozen python scripts/asyncapi.py --check
    npx --yes --prefer-offline @bufbuild/buf@1.75.0 lint proto
    bash scripts/check-breaking.sh
    bash scripts/gen-api-docs.sh --check
    cd clients/web && npm run -s format:check

# Write the API reference (docs/api/) from proto/; `./dev lint` fails while it is stale.
api-docs:
    bash scripts/gen-api-docs.sh

# Renders every deploy/k8s overlay (and component) and checks each object against its schema,
# hadolints the Dockerfile, validates docker-compose.yml. Needs go and node/npm the first time
# (fetches into .run/cache/deploy-check), then works offline.
# Check the deployment files: Kubernetes, Docker, Compose.
deploy-check: sync
    uv run --frozen python -m scripts.deploy_check

# Benchmarks (print numbers and ratios; not part of the tests).
bench *ARGS: proto
    uv run --frozen python -m bench "$@"

# Remove the local run folder (databases, broker data, sinks, logs).
clean:
    uv run --frozen casemesh-dev clean
