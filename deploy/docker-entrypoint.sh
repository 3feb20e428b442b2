#!/bin/sh
# Build each served model's first version into the state dir unless it has one, then serve.
# Arguments starting with "-" go to `loopserve serve`; anything else is run as a command.
#
# Only the roles that may write versions build one: `all` (one process, the default) and
# `trainer`. A serving replica (--role serving) never builds: it waits for the trainer to publish.
set -eu

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

# `loopserve serve` reads LOOPSERVE_MODELS (comma-separated); MODEL is the one-model shorthand.
export LOOPSERVE_MODELS="${LOOPSERVE_MODELS:-${MODEL:-support-intents}}"

# The role as `serve` will see it: --role ROLE or --role=ROLE, else LOOPSERVE_ROLE, else all.
role="${LOOPSERVE_ROLE:-all}"
previous=""
for arg in "$@"; do
    case "$previous" in
        --role) role="$arg" ;;
    esac
    case "$arg" in
        --role=*) role="${arg#--role=}" ;;
    esac
    previous="$arg"
done

# Fail in a second, not after building version 1: the image binds 0.0.0.0, so the server needs
# tokens (LOOPSERVE_TOKENS_FILE or LOOPSERVE_TOKENS) and readable TLS files if any are set.
loopserve serve --check "$@" >/dev/null

case "$role" in
    all | trainer)
        # Models named by --model arguments, else LOOPSERVE_MODELS.
        models=""
        previous=""
        for arg in "$@"; do
            case "$previous" in
                --model) models="$models $arg" ;;
            esac
            case "$arg" in
                --model=*) models="$models ${arg#--model=}" ;;
            esac
            previous="$arg"
        done
        [ -n "$models" ] || models="$LOOPSERVE_MODELS"
        # --state-dir and --models-dir given as arguments apply to init as well.
        dirs=""
        previous=""
        for arg in "$@"; do
            case "$previous" in
                --state-dir | --models-dir) dirs="$dirs $previous $arg" ;;
            esac
            case "$arg" in
                --state-dir=* | --models-dir=*) dirs="$dirs $arg" ;;
            esac
            previous="$arg"
        done
        old_ifs=$IFS
        IFS=', '
        for name in $models; do
            # shellcheck disable=SC2086 # split on purpose: whole arguments, no spaces or commas
            loopserve init "$name" --if-missing $dirs
        done
        IFS=$old_ifs
        ;;
esac

exec loopserve serve "$@"
