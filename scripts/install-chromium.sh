#!/usr/bin/env bash
# Installs what the playground's browser test needs: Debian's Chromium and Playwright (PyPI).
#
# Idempotent: each piece is installed only when missing. Playwright drives /usr/bin/chromium
# through `executable_path`, so `playwright install` (which downloads its own browsers) is
# never run. Needs root for apt-get.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${TOKENWIRE_PYTHON:-$repo_root/.venv/bin/python}"

if [ ! -x /usr/bin/chromium ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi

if ! "$python" -c "import playwright" >/dev/null 2>&1; then
    "$python" -m pip install playwright
fi

/usr/bin/chromium --version 2>/dev/null  # Debian's wrapper script warns on stderr
"$python" -c "import importlib.metadata as m; print('playwright', m.version('playwright'))"
