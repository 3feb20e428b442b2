#!/bin/sh
# Build each served model's first version into the state dir unless it has one, then serve.
# Arguments starting with "-" go to `loopserve serve`; anything else is run as a command.
set -eu

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

# `loopserve serve` reads LOOPSERVE_MODELS (comma-separated); MODEL is the one-model shorthand.
export LOOPSERVE_MODELS="${LOOPSERVE_MODELS:-${MODEL:-support-intents}}"

# Fail in a second, not after building version 1: the image binds 0.0.0.0, so the server needs
# tokens (LOOPSERVE_TOKENS_FILE or LOOPSERVE_TOKENS) and readable TLS files if any are set.
loopserve serve --check "$@" >/dev/null

old_ifs=$IFS
IFS=', '
for name in $LOOPSERVE_MODELS; do
    loopserve init "$name" --if-missing
done
IFS=$old_ifs

exec loopserve serve "$@"
