#!/usr/bin/env bash
# Creates bench/.venv-mlserver: MLServer, the peer server that bench/serving.py --peer mlserver
# measures loopserve against, with the ONNX Runtime and tokenizers its runtime
# (bench/peers/mlserver_onnx.py) needs.
#
#   bench/peers/mlserver-venv.sh            # PYTHON=python3.11 by default
#
# MLServer lives in an environment of its own: it needs pydantic 2, and the project pins pydantic 1
# (alibi-detect). Versions are pinned so that runs compare; onnxruntime is the version the project's
# .venv runs (its CPU build: the peer serves on the CPU as the benchmark's server does), tokenizers
# the project's too. An existing environment is brought to these pins, not recreated.
set -euo pipefail

MLSERVER_VERSION="1.7.1"
ONNXRUNTIME_VERSION="1.31.1"
TOKENIZERS_VERSION="0.22.2"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/../.venv-mlserver"
python="${PYTHON:-python3.11}"

if ! "$python" -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12))' 2>/dev/null; then
  echo "error: $python is not Python 3.11 or 3.12 (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet \
  "mlserver==$MLSERVER_VERSION" \
  "onnxruntime==$ONNXRUNTIME_VERSION" \
  "tokenizers==$TOKENIZERS_VERSION"
"$venv/bin/python" - <<'PY'
import sys

import mlserver
import onnxruntime
import tokenizers

print(f"{sys.prefix}: mlserver {mlserver.__version__}, onnxruntime {onnxruntime.__version__},"
      f" tokenizers {tokenizers.__version__}")
PY
