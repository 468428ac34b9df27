#!/usr/bin/env bash
# Builds the user guide (docs/, an mdBook) into docs/book.
#
# Usage:  scripts/docs.sh [--install-only] [mdbook arguments...]   # default: build docs
#
# mdbook 0.4.x is taken from PATH, else from the furcate cache, else installed
# once: Debian's package where the release has one that runs (Debian 13 and
# later), otherwise `cargo install mdbook` from crates.io into
# $FURCATE_CACHE/mdbook (search only, no `serve`/`watch`: a few minutes on two
# cores, once per machine). Nothing is downloaded when it is there.
set -euo pipefail

MDBOOK_VERSION=0.4.52

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${FURCATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/furcate}"
root="$cache/mdbook"
log() { printf 'furcate docs: %s\n' "$*" >&2; }

# An mdbook of the 0.4 series (book.toml's format), or nothing.
usable() { "$1" --version 2>/dev/null | grep -q '^mdbook v0\.4\.'; }

find_mdbook() {
  for m in "$(command -v mdbook || true)" "$root/bin/mdbook"; do
    if [ -n "$m" ] && usable "$m"; then printf '%s\n' "$m"; return 0; fi
  done
  return 1
}

install_mdbook() {
  mkdir -p "$cache"
  exec 8>"$cache/.mdbook.lock"
  flock 8
  find_mdbook >/dev/null && return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >&2 || true
    if apt-cache show mdbook >/dev/null 2>&1; then
      log "installing Debian's mdbook"
      if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mdbook >&2 && find_mdbook >/dev/null; then
        return 0
      fi
      log "Debian's mdbook is not a working 0.4.x; building it instead"
    fi
  fi
  command -v cargo >/dev/null || { log "cargo is needed to install mdbook"; exit 1; }
  log "building mdbook $MDBOOK_VERSION from crates.io into $root (once)"
  CARGO_TARGET_DIR="$cache/mdbook-build" cargo install mdbook --locked --version "$MDBOOK_VERSION" \
    --no-default-features --features search --root "$root" >&2
  rm -rf "$cache/mdbook-build"
}

install_only=0
if [ "${1:-}" = "--install-only" ]; then install_only=1; shift; fi
mdbook=$(find_mdbook) || { install_mdbook; mdbook=$(find_mdbook); }
[ "$install_only" = 1 ] && { printf '%s\n' "$mdbook"; exit 0; }
cd "$repo"
if [ "$#" -eq 0 ]; then set -- build docs; fi
exec "$mdbook" "$@"
