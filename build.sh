#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Bootstrap for the Cake build script (build.cake).
#
#   ./build.sh                      # same as --target=Default (= Test)
#   ./build.sh --target=Test
#   ./build.sh --target=Native
#   ./build.sh --target=Bench --bench-args="--filter *Decoder*"
#   ./build.sh --target=Build --configuration=Debug
#
# Every argument is handed to Cake unchanged.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"

export DOTNET_CLI_TELEMETRY_OPTOUT=1
export DOTNET_NOLOGO=1
export DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

if ! command -v dotnet >/dev/null 2>&1; then
    echo "build.sh: 'dotnet' was not found on PATH; install the .NET 10 SDK." >&2
    exit 1
fi

# Restores cake.tool at the version pinned in .config/dotnet-tools.json.
if ! restore_log="$(dotnet tool restore 2>&1)"; then
    printf '%s\n' "$restore_log" >&2
    echo "build.sh: 'dotnet tool restore' failed." >&2
    exit 1
fi

exec dotnet tool run dotnet-cake -- build.cake "$@"
