#!/usr/bin/env bash
# Prints the path of a Python 3.10 interpreter: Rasa 3.6 runs on 3.8-3.10 only.
# Looks on PATH first, then in pyenv's versions; exits 1 with advice when none is found.
set -u

is_310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; }

for candidate in "${PYTHON310:-}" python3.10 python3 python; do
  [ -n "$candidate" ] || continue
  path=$(command -v "$candidate" 2>/dev/null) || continue
  if is_310 "$path"; then echo "$path"; exit 0; fi
done

pyenv_root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for path in $(ls -d "$pyenv_root"/versions/3.10*/bin/python3.10 2>/dev/null | sort -rV); do
  if is_310 "$path"; then echo "$path"; exit 0; fi
done

cat >&2 <<'MSG'
No Python 3.10 found (Rasa 3.6 needs Python 3.8-3.10; this project uses 3.10).
Install one, then run the command again. For example:
  - Debian/Ubuntu:  apt-get install python3.10 python3.10-venv
  - pyenv:          pyenv install 3.10
  - or point to one: make run PYTHON310=/path/to/python3.10
MSG
exit 1
