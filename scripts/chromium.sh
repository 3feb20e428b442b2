#!/usr/bin/env bash
# The browser of the console's end-to-end tests (tests/console/e2e): Debian's chromium, which
# Playwright drives through its executable path (executable_path). Playwright's own browser
# downloads need the internet and are never used.
#
#   scripts/chromium.sh install   install Debian's chromium when it is missing (as root, or through sudo)
#   scripts/chromium.sh path      print the browser's path (exit 1: none)
#
# LOOPSERVE_CHROMIUM names another executable (default /usr/bin/chromium); the tests read it too.
set -euo pipefail

BROWSER=${LOOPSERVE_CHROMIUM:-/usr/bin/chromium}
# fonts-dejavu-core: a known font, so that screenshots look alike from machine to machine.
PACKAGES=(chromium fonts-dejavu-core)

die() { echo "error: $*" >&2; exit 1; }

path() {
  [ -x "$BROWSER" ] || return 1
  echo "$BROWSER"
}

install() {
  if found=$(path); then echo "chromium found at $found"; return 0; fi
  [ "$BROWSER" = /usr/bin/chromium ] \
    || die "LOOPSERVE_CHROMIUM=$BROWSER is not an executable file"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    # -n: never wait for a password; a run without a terminal would hang.
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=(sudo -n)
    else
      echo "chromium (/usr/bin/chromium) is missing, and installing it needs root or sudo:" >&2
      echo "  sudo apt-get install -y ${PACKAGES[*]}     (Debian)" >&2
      exit 1
    fi
  fi
  command -v apt-get >/dev/null 2>&1 \
    || die "chromium is missing and there is no apt-get; install Debian's chromium (or set LOOPSERVE_CHROMIUM)"
  echo "installing Debian's ${PACKAGES[*]}" >&2
  # The lock timeout: another apt run (unattended upgrades, a parallel job) holds the lock for a while.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=300 update \
    || die "apt-get update failed"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=300 \
    install -y --no-install-recommends "${PACKAGES[@]}" >/dev/null \
    || die "apt-get install ${PACKAGES[*]} failed"
  path >/dev/null || die "chromium was installed but $BROWSER is still missing"
}

case "${1:-}" in
  install) install ;;
  path) path || { echo "no chromium at $BROWSER (scripts/chromium.sh install)" >&2; exit 1; } ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
