#!/usr/bin/env bash
# Installs what the proxy liveness test needs: Debian's HAProxy.
#
# Idempotent: installed only when missing. Needs root for apt-get.
set -euo pipefail

if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy
fi

/usr/sbin/haproxy -v | head -1
