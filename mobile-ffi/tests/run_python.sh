#!/usr/bin/env bash
# Builds cascade-ffi, generates its Python bindings and runs the Python
# tests against a real relay. Also checks that Kotlin and Swift bindings
# generate (they cannot be compiled here: no Kotlin or Swift toolchain).
#
# Usage: mobile-ffi/tests/run_python.sh [pytest args...]
# Env:   CARGO_TARGET_DIR (default <workspace>/target),
#        CASCADE_PY_BINDINGS (where to generate; default a temp dir).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
workspace="$(cd "$here/../.." && pwd)"
cd "$workspace"
target="${CARGO_TARGET_DIR:-$workspace/target}"
export CARGO_TARGET_DIR="$target"

# The whole workspace, as `cargo xtask test` builds it: one feature set, so
# nothing is rebuilt (a no-op after the xtask build).
cargo build --workspace --locked

lib="$target/debug/libcascade_ffi.so"
bindgen="$target/debug/uniffi-bindgen"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
out="${CASCADE_PY_BINDINGS:-$tmp/python}"
mkdir -p "$out"

"$bindgen" generate --library "$lib" --language python --out-dir "$out"
# Python loads the library only from beside the generated module.
cp "$lib" "$out/"

"$bindgen" generate --library "$lib" --language kotlin --no-format --out-dir "$tmp/kotlin"
"$bindgen" generate --library "$lib" --language swift --no-format --out-dir "$tmp/swift"
test -n "$(find "$tmp/kotlin" -name '*.kt' -print -quit)" || { echo "no Kotlin generated" >&2; exit 1; }
test -n "$(find "$tmp/swift" -name '*.swift' -print -quit)" || { echo "no Swift generated" >&2; exit 1; }
echo "Kotlin and Swift bindings generated."

# pytest in a virtual environment beside the build, so no system Python is
# changed (Debian's is externally managed).
venv="$target/python-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -m pytest --version >/dev/null 2>&1; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check pytest
fi

export CASCADE_BIN_DIR="${CASCADE_BIN_DIR:-$target/debug}"
PYTHONPATH="$out${PYTHONPATH:+:$PYTHONPATH}" "$venv/bin/python" -m pytest -p no:cacheprovider "$here/python" "$@"
