#!/usr/bin/env bash
# Installs torch into the Python environment of PIP (default: pip on PATH).
#
#   scripts/install-torch.sh [--dry-run] [PIP]
#
# A visible NVIDIA GPU (nvidia-smi -L succeeds) gets the default build from PyPI, which is the
# CUDA build. Anywhere else the CPU build is installed, never the CUDA libraries (about 3 GB):
#   1. TORCH_VERSION+cpu from the indexes pip is already configured with (a mirror or a local
#      wheel directory that keeps the CPU builds);
#   2. otherwise TORCH_VERSION from the PyTorch project's CPU wheel index (TORCH_CPU_INDEX_URL),
#      the standard way to install CPU-only torch.
# Each attempt gives up on an unreachable index after PIP_TIMEOUT seconds instead of retrying for
# minutes. TORCH_SPEC, when set, is installed as given and skips the choice.
# --dry-run prints the pip commands it would try, one per line, and installs nothing.
set -euo pipefail

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
TORCH_CPU_INDEX_URL="${TORCH_CPU_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
PIP_TIMEOUT="${PIP_TIMEOUT:-15}"

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
  dry_run=1
  shift
fi
pip_cmd="${1:-pip}"
quick=(--timeout "$PIP_TIMEOUT" --retries 1)

attempt() {
  echo "$pip_cmd install ${quick[*]} $*"
  if ((dry_run)); then
    return 1  # show every attempt in order
  fi
  # shellcheck disable=SC2086  # pip_cmd may be "python -m pip"
  $pip_cmd install --quiet "${quick[@]}" "$@"
}

if [[ -n "${TORCH_SPEC:-}" ]]; then
  attempt "$TORCH_SPEC" && exit 0
elif nvidia-smi -L >/dev/null 2>&1; then
  attempt "torch==$TORCH_VERSION" && exit 0
else
  attempt "torch==$TORCH_VERSION+cpu" && exit 0
  ((dry_run)) || echo "torch $TORCH_VERSION+cpu not found on the configured indexes; trying $TORCH_CPU_INDEX_URL" >&2
  attempt --index-url "$TORCH_CPU_INDEX_URL" "torch==$TORCH_VERSION" && exit 0
fi
((dry_run)) && exit 0
echo "error: could not install torch $TORCH_VERSION; set TORCH_SPEC (and PIP_INDEX_URL) to a build that your indexes host" >&2
exit 1
