# Sourced by the other scripts: finds uv, or installs it into .tools/ with only Python 3.11+.
set -euo pipefail
# The platform's certificate store, not uv's bundled roots: behind a proxy with its own CA (as on
# many company networks, and on the CI machines) uv's own roots are refused.
export UV_SYSTEM_CERTS="${UV_SYSTEM_CERTS:-1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if command -v uv >/dev/null 2>&1; then
  UV="uv"
elif [ -x "$ROOT/.tools/uv/bin/uv" ]; then
  UV="$ROOT/.tools/uv/bin/uv"
else
  echo "Installing uv into .tools/uv (once)..." >&2
  python3 -m venv "$ROOT/.tools/uv"
  "$ROOT/.tools/uv/bin/python" -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
  UV="$ROOT/.tools/uv/bin/uv"
fi
# The lock file makes the install exact; --frozen refuses to drift from it.
# --compile-bytecode writes .pyc files at install: where PYTHONDONTWRITEBYTECODE is set, every
# process (the forkserver, each task step, each CLI call) would compile every module from source.
"$UV" sync --frozen --quiet --compile-bytecode
