# Sourced by scripts: finds a Python 3.12 interpreter (sets PY312).
find_python312() {
  for candidate in "${LLAMDA_PYTHON:-}" python3.12 "$(pyenv root 2>/dev/null)/versions/3.12.1/bin/python3.12"; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
      PY312=$(command -v "$candidate"); return 0
    fi
  done
  for dir in "$(pyenv root 2>/dev/null)"/versions/3.12*/bin; do
    [ -x "$dir/python3.12" ] && { PY312="$dir/python3.12"; return 0; }
  done
  echo "error: Python 3.12 not found (set LLAMDA_PYTHON)" >&2; return 1
}
