#!/usr/bin/env bash
# Install Label Studio (the labelling tool the review path's tests run against) into a
# venv of its own under the cache: it pins Django, numpy and many more at versions
# that would fight the project's own venv.
#
# Two parts, each kept once made:
#   venv/      Label Studio from PyPI (about 1 GB installed);
#   template/  a data dir whose SQLite database has every migration applied. A first
#              start of Label Studio applies its hundreds of migrations before it
#              listens (minutes on a loaded machine); tests copy this instead, so
#              each start is seconds.
#
# Output: the venv's directory on the last line of stdout. A second run finds both
# parts and does nothing (no network, well under a second). A part a stopped run left
# half-made has no completion mark and is made again. Two runs at once wait for each
# other (flock) instead of writing the same files.
#
# Environment: LABEL_STUDIO_VERSION (default below), KANARIA_CACHE (default
# ~/.cache/kanaria), LABEL_STUDIO_PYTHON (the interpreter the venv is made from;
# default python3.11, which Label Studio supports and the project uses).
set -euo pipefail

VERSION="${LABEL_STUDIO_VERSION:-1.23.2}"
CACHE_ROOT="${KANARIA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kanaria}"
DIR="$CACHE_ROOT/label-studio/$VERSION"
VENV="$DIR/venv"
VENV_DONE="$DIR/venv.complete"
TEMPLATE="$DIR/template"

log() { printf '[label-studio] %s\n' "$*" >&2; }
have_venv() { [[ -f "$VENV_DONE" && -x "$VENV/bin/label-studio" ]]; }
have_template() { [[ -f "$TEMPLATE/label_studio.sqlite3" ]]; }

if have_venv && have_template; then
  log "cached: $VENV"
  echo "$VENV"
  exit 0
fi

mkdir -p "$DIR"
exec 9>"$DIR/lock"
flock 9
start=$SECONDS

if ! have_venv; then
  PYTHON="${LABEL_STUDIO_PYTHON:-$(command -v python3.11 || command -v python3)}"
  log "installing label-studio==$VERSION into $VENV (with $PYTHON)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
  "$VENV/bin/python" -m pip install --quiet "label-studio==$VERSION" >&2
  # Not `label-studio --version`: without a command that starts the server (on 0.0.0.0).
  installed="$("$VENV/bin/python" -c 'import label_studio; print(label_studio.__version__)')" || {
    log "label-studio was installed but does not import"
    exit 1
  }
  [[ "$installed" == "$VERSION" ]] || { log "installed $installed, expected $VERSION"; exit 1; }
  touch "$VENV_DONE"
  log "venv made in $((SECONDS - start))s, $(du -sh "$VENV" | cut -f1) on disk"
fi

if ! have_template; then
  log "applying Label Studio's database migrations to the template data dir"
  migrate_start=$SECONDS
  rm -rf "$TEMPLATE" "$TEMPLATE.tmp"
  mkdir -p "$TEMPLATE.tmp"
  # `label-studio version` applies the migrations, prints the version and exits.
  # Nothing phones home: no version check against PyPI, no analytics, no Sentry.
  LABEL_STUDIO_BASE_DATA_DIR="$TEMPLATE.tmp" LABEL_STUDIO_HOST="" \
    LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false SENTRY_DSN="" FRONTEND_SENTRY_DSN="" \
    "$VENV/bin/label-studio" version >"$DIR/migrate.log" 2>&1 || {
    log "migrating the template database failed; the end of its log:"
    tail -n 30 "$DIR/migrate.log" >&2
    exit 1
  }
  mv "$TEMPLATE.tmp" "$TEMPLATE"
  log "template made in $((SECONDS - migrate_start))s"
fi

echo "$VENV"
