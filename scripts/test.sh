#!/usr/bin/env bash
# `make test`'s body: the slow one-time builds overlap the tests that do not need them.
#
# A cold machine spends about 20 minutes compiling the control plane and node from the
# Go module proxy, several more building the images and installing Label Studio (the
# review tests' real labelling tool, into its own venv); run one after the other with the
# test suite that made about 49 minutes. Here the builds start first, in the background
# and niced (the tests keep their CPU share, so nothing they wait on runs late): the Go
# build even before the venv and the Debian packages (make setup system-deps, run here),
# the images and Label Studio right after them. Meanwhile lint, mypy and the 750-odd
# tests that need no built part run (pytest -m "not built").
# Then the tests marked `built` (the control-plane, chart and real-node tiers; the
# marker is added by tests/conftest.py) run against what was built. Warm, both builds
# return in seconds and this is the same as one pytest run.
#
# Every phase runs even when an earlier one failed, so one run shows every failure;
# the exit status is the first failure's. The phases' times are printed at the end.
# shellcheck disable=SC2317  # phase() calls these functions by name
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
LOGS="$(mktemp -d "${TMPDIR:-/tmp}/kanaria-test-build.XXXXXX")"
status=0
declare -a TIMES=()

phase() {  # phase NAME COMMAND...: run it, record its time, keep the first failure
  local name="$1" started=$SECONDS rc
  shift
  "$@"
  rc=$?
  TIMES+=("$(printf '%-34s %5ds  %s' "$name" $((SECONDS - started)) "$([[ $rc == 0 ]] && echo ok || echo "FAILED ($rc)")")")
  [[ $rc == 0 || $status != 0 ]] || status=$rc
  return 0
}

pytest_phase() {  # pytest exits 5 when a selection (with the user's PYTEST_ARGS) is empty
  local rc
  # shellcheck disable=SC2086  # PYTEST_ARGS is a list of words on purpose
  "$PY" -m pytest "$@" ${PYTEST_ARGS:-}
  rc=$?
  [[ $rc == 5 ]] && return 0
  return "$rc"
}

built_at=$SECONDS
# The control-plane build needs only Go and gcc (which this machine kind has), so it
# starts before the Python and Debian setup: on a cold machine those mostly wait on
# downloads, and the Go build (the longest part) gets that time too.
setsid nice -n 10 bash scripts/build-control-plane.sh >"$LOGS/control-plane.out" 2>"$LOGS/control-plane.log" &
control_plane_pid=$!
images_pid="" label_studio_pid=""
# Each build is its own process group (setsid), so that a Ctrl-C here stops the
# compilers too instead of leaving them running in the background.
stop_builds() {
  local pid
  for pid in $control_plane_pid $images_pid $label_studio_pid; do kill -- -"$pid" 2>/dev/null; done
  rm -rf "$LOGS"
}
trap stop_builds EXIT

phase "setup (venv, Debian packages)" make -s setup system-deps
setsid nice -n 10 bash scripts/build-images.sh --save >"$LOGS/images.out" 2>"$LOGS/images.log" &
images_pid=$!
setsid nice -n 10 bash scripts/install-label-studio.sh >"$LOGS/label-studio.out" 2>"$LOGS/label-studio.log" &
label_studio_pid=$!

phase "lint (ruff, imports, hadolint)" make -s lint
phase "typecheck (mypy --strict)" make -s typecheck
phase "pytest -m 'not built'" pytest_phase -m "not built"

wait_build() {  # wait_build NAME PID LOG: a failed build fails the run and shows its log tail
  local name="$1" pid="$2" log="$3" rc
  wait "$pid"
  rc=$?
  if [[ $rc != 0 ]]; then
    echo "== $name build failed (exit $rc); the end of its log:" >&2
    tail -n 40 "$log" >&2
  fi
  return "$rc"
}
phase "control-plane build (wait)" wait_build control-plane "$control_plane_pid" "$LOGS/control-plane.log"
phase "images build (wait)" wait_build images "$images_pid" "$LOGS/images.log"
phase "label-studio install (wait)" wait_build label-studio "$label_studio_pid" "$LOGS/label-studio.log"
builds_done=$((SECONDS - built_at))
control_plane="$(tail -n1 "$LOGS/control-plane.out" 2>/dev/null)"

KANARIA_CONTROL_PLANE="$control_plane" phase "pytest -m built" pytest_phase -m built

echo
echo "make test phases (the builds ran alongside, done ${builds_done}s after they started):"
printf '  %s\n' "${TIMES[@]}"
echo "  total                              $(printf '%5d' "$SECONDS")s"
exit $status
