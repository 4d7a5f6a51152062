# Shared by script/main and script/test: run from anywhere, work from the project root, and make
# sure the pinned Foundry + solc from package-lock.json are installed (a fresh clone has none).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/node_modules/.bin:$PATH"
# forge resolves `solc = "script/solc"` against the current directory; pin it absolutely too.
export FOUNDRY_SOLC="$ROOT/script/solc"
ANVIL_BIN="$ROOT/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"

ensure_node_modules() {
  local stamp="node_modules/.kms-lock-stamp"
  if [[ -x "$ANVIL_BIN" && -f "$stamp" ]] && cmp -s package-lock.json "$stamp"; then
    return
  fi
  echo "==> npm ci (Foundry and solc from package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
}

step() {
  echo
  echo "==> $*"
}
