#!/usr/bin/env bash
# Fails when proto/ as it stands in the working tree breaks a contract of the main
# branch: the public API (casemesh.v1) and the event messages (casemesh.events.v1),
# by the `breaking` rules of proto/buf.yaml. `./dev lint` (and so CI) runs it.
#
# Compared against:
# - on a branch: main where the branch left it (their merge base), so that what main
#   added since is not taken for something this branch deleted;
# - on main itself (or a commit main already holds, as in CI's fresh clone): HEAD's
#   first parent, that is main before HEAD's changes (a merge's other side included).
# With nothing earlier to compare with (no git, a single commit, no main, a shallow
# clone) it says why and passes; a shallow clone fails in CI, where a guard that
# quietly never runs would be worse than a red build.
#
# Usage: scripts/check-breaking.sh [checkout]   (default: the one holding this script)
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
# The same pinned buf as `buf lint` in the justfile's lint recipe.
buf=(npx --yes --prefer-offline @bufbuild/buf@1.75.0)

skip() {
    echo "check-breaking: not checked: $*" >&2
    exit 0
}
no_history() {
    if [[ "${CI:-}" =~ ^(1|true|yes)$ ]] && [[ "$(git rev-parse --is-shallow-repository)" == true ]]; then
        echo "check-breaking: $* in a shallow clone; CI needs the history (git fetch --deepen=1)" >&2
        exit 1
    fi
    skip "$*"
}

git rev-parse --verify -q HEAD >/dev/null 2>&1 || skip "not a git checkout with a commit"
main=""
for ref in main origin/main; do
    if git rev-parse --verify -q "$ref^{commit}" >/dev/null; then
        main=$ref
        break
    fi
done
[[ -n "$main" ]] || no_history "no main branch to compare with"
fork=$(git merge-base HEAD "$main") || no_history "no history shared with $main"
if [[ "$fork" == "$(git rev-parse HEAD)" ]]; then
    base=$(git rev-parse --verify -q "HEAD^1^{commit}") || no_history "HEAD has no parent here"
    what="HEAD's first parent"
else
    base=$fork
    what="$main where this branch left it"
fi
git cat-file -e "$base:proto/buf.yaml" 2>/dev/null || skip "no proto/ module at $what"

echo "check-breaking: proto/ against $what ($(git rev-parse --short "$base"))" >&2
# buf reads the base from git itself; the common directory also serves a worktree.
gitdir=$(cd "$(git rev-parse --git-common-dir)" && pwd)
"${buf[@]}" breaking proto --against "$gitdir#ref=$base,subdir=proto"
