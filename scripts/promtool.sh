#!/usr/bin/env bash
# promtool for `make test-rules`, without a Prometheus server.
#
#   scripts/promtool.sh DIR    print the path of a promtool: the one on PATH, else DIR/promtool,
#                              taken there from Debian's package `prometheus` when it is missing
#
# Installing that package would also install the Prometheus server and start and enable its
# service, which listens on :9090, loopserve's default metrics port. Only promtool is taken:
# `apt-get download` fetches the .deb (as any user once the package lists exist; they are
# updated as root or through sudo otherwise) and `dpkg-deb -x` unpacks it in a scratch
# directory. Nothing is installed, no service is started or enabled.
set -euo pipefail

die() { echo "error: $*" >&2; exit 1; }

dir=${1:?usage: scripts/promtool.sh DIR}
if command -v promtool >/dev/null 2>&1; then command -v promtool; exit 0; fi
if [ -x "$dir/promtool" ]; then echo "$dir/promtool"; exit 0; fi
command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 \
  || die "promtool is missing and there is no apt-get: install promtool (Prometheus' tools)"

echo "promtool not found: taking it from Debian's package prometheus (not installing it)" >&2
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
if ! apt-get -qq download prometheus >/dev/null 2>&1; then
  # No package lists yet (a fresh container): fetch them, which needs root.
  if [ "$(id -u)" -eq 0 ]; then sudo=
  elif command -v sudo >/dev/null 2>&1; then sudo=sudo
  else die "cannot download the package prometheus: updating the package lists needs root or sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=300 update
  apt-get -qq download prometheus >/dev/null || die "apt-get download prometheus failed"
fi
dpkg-deb -x prometheus_*.deb unpacked
[ -x unpacked/usr/bin/promtool ] || die "the package prometheus holds no usr/bin/promtool"
mkdir -p "$dir"
install -m 0755 unpacked/usr/bin/promtool "$dir/promtool"
echo "$dir/promtool"
