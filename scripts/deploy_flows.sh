#!/bin/sh
# Compatibility shim for the old bash entry point: flow registration is now the compiled
# `xtask register-flows` (Fly's release_command runs it directly). Arguments pass through,
# e.g. `scripts/deploy_flows.sh --dry-run`.
set -eu
if command -v xtask >/dev/null 2>&1; then
    # Inside the image: the binary is on PATH.
    exec xtask register-flows "$@"
fi
# In a checkout: build and run it through cargo.
cd "$(dirname "$0")/.."
exec cargo xtask register-flows "$@"
