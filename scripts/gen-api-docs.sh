#!/usr/bin/env bash
# The API reference in docs/api/, generated from proto/ by protoc-gen-doc (through
# buf, like the code): the public API (casemesh.v1) in api.md, the event messages
# on the topics (casemesh.events.v1) in events.md. Never edit them by hand.
#
# Usage: scripts/gen-api-docs.sh           write docs/api/
#        scripts/gen-api-docs.sh --check   fail when docs/api/ is not what proto/ makes
#                                          (`./dev lint`, and so CI)
#        scripts/gen-api-docs.sh --check DIR   the same for the checkout DIR
# protoc-gen-doc is installed with `go install` into .run/tools (of this checkout) the
# first time.
#
# protoc-gen-doc links a field's type to the type's section on the page; the
# well-known types (google.protobuf.Timestamp) are not among the files generated, so
# their links are pointed at the protobuf reference instead (`link_well_known`).
set -euo pipefail
cd "$(dirname "$0")/.."
version=v1.5.1
tools=$PWD/.run/tools/protoc-gen-doc@$version
if [[ ! -x $tools/protoc-gen-doc ]]; then
    echo "gen-api-docs: installing protoc-gen-doc $version" >&2
    GOBIN=$tools go install "github.com/pseudomuto/protoc-gen-doc/cmd/protoc-gen-doc@$version"
fi
if [[ ${1:-} == --check && -n ${2:-} ]]; then
    cd "$2"
fi
# The same pinned buf as the justfile's lint recipe.
buf=(npx --yes --prefer-offline @bufbuild/buf@1.75.0)

out=docs/api
if [[ ${1:-} == --check ]]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
generate() { # <proto package path> <file name>
    PATH=$tools:$PATH "${buf[@]}" generate proto --path "proto/$1" --template \
        '{"version":"v2","plugins":[{"local":"protoc-gen-doc","out":"'"$out"'","opt":"markdown,'"$2"'"}]}'
}
link_well_known() { # <markdown file>: google.protobuf.X's in-page link to protobuf.dev
    sed -E -i 's|\(#google-protobuf-([A-Za-z]+)\)|(https://protobuf.dev/reference/protobuf/google.protobuf/#\L\1)|g' "$1"
}
generate casemesh/v1 api.md
generate casemesh/events/v1 events.md
link_well_known "$out/api.md"
link_well_known "$out/events.md"

if [[ ${1:-} == --check ]]; then
    if ! diff -ru docs/api "$out" >/dev/null; then
        diff -ru docs/api "$out" | head -40 >&2 || true
        echo "gen-api-docs: docs/api/ is stale; run \`./dev api-docs\` and commit it" >&2
        exit 1
    fi
    echo "gen-api-docs: docs/api/ is what proto/ generates"
fi
