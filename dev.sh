#!/usr/bin/env bash
# One entry point for a fresh checkout: creates .venv at the repository root when it is missing
# (or when pyproject.toml / requirements changed), then runs what was asked.
#   ./dev.sh demo [--out DIR]   run `vfmlab demo` (default output: ./demo-out)
#   ./dev.sh test [PYTEST ARGS] run the test suite
#   ./dev.sh env                only create / update the environment
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$root/.venv"
python_bin="${VFMLAB_PYTHON:-$(command -v python3.11 || command -v python3)}"

stamp_of() { cat "$root/pyproject.toml" "$root/requirements/torch.txt" | sha256sum | cut -d' ' -f1; }

ensure_env() {
  local want; want="$(stamp_of)"
  if [[ -x "$venv/bin/python" && -f "$venv/.vfmlab-stamp" && "$(cat "$venv/.vfmlab-stamp")" == "$want" ]]; then
    return
  fi
  echo "[dev.sh] creating environment in $venv (first run takes a few minutes)" >&2
  [[ -x "$venv/bin/python" ]] || "$python_bin" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r "$root/requirements/torch.txt"
  "$venv/bin/python" -m pip install --quiet -c "$root/requirements/torch.txt" -e "$root[test]"
  echo "$want" > "$venv/.vfmlab-stamp"
}

export VTK_DEFAULT_OPENGL_WINDOW="${VTK_DEFAULT_OPENGL_WINDOW:-vtkEGLRenderWindow}"
cmd="${1:-test}"; shift || true
case "$cmd" in
  env)  ensure_env ;;
  demo) ensure_env
        if [[ " $* " == *" --out "* ]]; then exec "$venv/bin/vfmlab" demo "$@"; fi
        exec "$venv/bin/vfmlab" demo --out "$root/demo-out" "$@" ;;
  test) ensure_env; cd "$root"; exec "$venv/bin/python" -m pytest "$@" ;;
  *) echo "usage: ./dev.sh {demo|test|env} [args]" >&2; exit 2 ;;
esac
