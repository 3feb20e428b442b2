#!/usr/bin/env bash
# Picks the Python interpreter that the Makefile makes its virtual environment with.
#
#   scripts/pick-python.sh VENV PY PYTHON SUPPORTED...
#
# SUPPORTED are the X.Y versions loopserve runs on, in order of preference; PY and PYTHON may be
# empty.
# Prints "X.Y INTERPRETER", or says on stderr what is wrong and exits 1, so that make stops
# within seconds, before anything is downloaded:
#   PYTHON set: that interpreter, which must run a supported version (PY's, when PY is set too);
#   PY set: pythonPY from PATH;
#   neither: the version VENV was made with when it exists; otherwise the first of SUPPORTED whose
#   pythonX.Y on PATH runs (a pyenv shim of a version that is not active does not), then python3.
# A VENV made with another version than the one picked is refused: its packages are built for
# that version. Each candidate is run, not merely looked up, because of such shims.
set -uo pipefail

venv="$1" requested="$2" interpreter="$3"
shift 3
supported=("$@")
accepted="${supported[*]}"
accepted="${accepted// /, }"

fail() {
  echo "error: $*" >&2
  exit 1
}

version_of() {  # the X.Y version an interpreter runs, or nothing when it does not run
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null
}

is_supported() {
  local v
  for v in "${supported[@]}"; do [[ "$v" == "$1" ]] && return 0; done
  return 1
}

refuse() {  # an unsupported version; "yet" when it is newer than every supported one
  local yet=""
  if [[ "$(printf '%s\n' "$1" "${supported[@]}" | sort -V | tail -n1)" == "$1" ]]; then
    yet=" yet"
  fi
  fail "Python $1 is not supported$yet. loopserve runs on Python $accepted: choose one with" \
    "PY=X.Y (or PYTHON=/path/to/python)."
}

venv_version() {  # the X.Y version VENV was made with, or nothing when there is no VENV
  [[ -f "$venv/pyvenv.cfg" ]] || return 0
  sed -n 's/^version\(_info\)\? *= *\([0-9]*\.[0-9]*\).*/\2/p' "$venv/pyvenv.cfg" | head -n1
}

pick() {  # prints "X.Y INTERPRETER"
  local v exe
  if [[ -n "$interpreter" ]]; then
    v="$(version_of "$interpreter")" || true
    [[ -n "$v" ]] || fail "PYTHON=$interpreter does not run."
    [[ -z "$requested" || "$v" == "$requested" ]] || fail "PYTHON=$interpreter is Python $v, not PY=$requested."
    is_supported "$v" || refuse "$v"
    echo "$v $interpreter"
  elif [[ -n "$requested" ]]; then
    is_supported "$requested" || refuse "$requested"
    exe="python$requested"
    [[ "$(version_of "$exe")" == "$requested" ]] ||
      fail "python$requested is not on PATH, or does not run; install Python $requested or name it with PYTHON=/path/to/python."
    echo "$requested $(command -v "$exe")"
  else
    v="$(venv_version)"
    if [[ -n "$v" ]]; then
      is_supported "$v" || fail "$venv was made with Python $v, which is not supported; remove it, or keep it and choose another version with PY=X.Y (loopserve runs on Python $accepted)."
      echo "$v $venv/bin/python"
      return
    fi
    for v in "${supported[@]}"; do
      [[ "$(version_of "python$v")" == "$v" ]] && echo "$v $(command -v "python$v")" && return
    done
    v="$(version_of python3)" || true
    [[ -n "$v" ]] || fail "no Python found: loopserve runs on Python $accepted (python3.X on PATH, or PYTHON=/path/to/python)."
    is_supported "$v" || refuse "$v"
    echo "$v $(command -v python3)"
  fi
}

picked="$(pick)" || exit 1
existing="$(venv_version)"
if [[ -n "$existing" && "$existing" != "${picked%% *}" ]]; then
  fail "$venv was made with Python $existing, not ${picked%% *}; remove it, or leave it and add" \
    "PY=${picked%% *}, which gives that version an environment of its own."
fi
echo "$picked"
