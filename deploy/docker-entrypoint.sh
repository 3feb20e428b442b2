#!/bin/sh
# Build each served model's first version into the state dir unless it has one, then serve.
# Arguments starting with "-" go to `loopserve serve`; anything else is run as a command.
set -eu

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

# `loopserve serve` reads LOOPSERVE_MODELS (comma-separated); MODEL is the one-model shorthand.
export LOOPSERVE_MODELS="${LOOPSERVE_MODELS:-${MODEL:-support-intents}}"

old_ifs=$IFS
IFS=', '
for name in $LOOPSERVE_MODELS; do
    loopserve init "$name" --if-missing
done
IFS=$old_ifs

exec loopserve serve "$@"
