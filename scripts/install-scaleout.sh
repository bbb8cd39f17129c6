#!/usr/bin/env bash
# Installs what the scale-out tests need: Debian's redis-server (7.0: streams, XADD MAXLEN ~,
# XREAD BLOCK, pub/sub) and haproxy (2.6), and the redis client (PyPI, tokenwire[redis]).
#
# Idempotent: each piece is installed only when missing. Needs root for apt-get. The tests
# start their own servers on free ports; the packages' system services are not used.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${TOKENWIRE_PYTHON:-$repo_root/.venv/bin/python}"

missing=()
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

if ! "$python" -c "import redis.asyncio" >/dev/null 2>&1; then
    "$python" -m pip install 'redis>=5.0,<7'
fi

/usr/bin/redis-server --version
/usr/sbin/haproxy -v | head -1
"$python" -c "import redis; print('redis-py', redis.__version__)"
