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

# The TypeScript SDK's own packages (sdk/ts/package-lock.json: umbral-pre's WASM build, viem,
# noble, TypeScript, esbuild), installed beside the root's.
ensure_sdk_modules() {
  local stamp="sdk/ts/node_modules/.kms-lock-stamp"
  if [[ -f "$stamp" ]] && cmp -s sdk/ts/package-lock.json "$stamp"; then
    return
  fi
  echo "==> npm ci in sdk/ts (the TypeScript SDK's packages)"
  (cd sdk/ts && npm ci --no-audit --no-fund --loglevel=error)
  cp sdk/ts/package-lock.json "$stamp"
}

# The browser tests (the node's status page) run Debian's Chromium through puppeteer-core (from
# package-lock.json). It comes from Debian's packages, which every project machine reaches; a
# machine that already has it (or names another in $CHROMIUM) installs nothing.
ensure_chromium() {
  if [[ -n "${CHROMIUM:-}" && -x "${CHROMIUM}" ]] || command -v chromium >/dev/null; then
    return
  fi
  echo "==> apt-get install chromium (Debian's, for the browser tests)"
  local sudo=""
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || {
      echo "error: Chromium is missing and this user cannot install it: run \`apt-get install chromium\` as root, or set CHROMIUM to a Chromium binary" >&2
      exit 1
    }
    sudo="sudo"
  fi
  # A fresh machine's package lists may be stale or absent: refresh them once if the install fails.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null ||
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null; }
}

# rust-toolchain.toml pins the compiler by version. The project's machines cannot download a
# toolchain, but the one they come with is installed as `stable` and may be exactly that version:
# then the pinned name is made to point at it (rustup treats it as installed, components and all).
# Anywhere else rustup installs the pinned toolchain as usual.
ensure_rust_toolchain() {
  command -v rustup >/dev/null || return 0 # no rustup: the cargo on PATH is what there is
  local channel host toolchains stable_version
  channel="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)"
  host="$(rustup show 2>/dev/null | sed -n 's/^Default host: //p')" || true
  if rustup toolchain list | cut -d" " -f1 | grep -xF "$channel-$host" >/dev/null; then
    return
  fi
  stable_version="$(rustup run stable rustc -V 2>/dev/null | cut -d' ' -f2)" || true
  if [[ -n "$host" && "$stable_version" == "$channel" ]]; then
    toolchains="${RUSTUP_HOME:-$HOME/.rustup}/toolchains"
    echo "==> rust-toolchain.toml: the installed stable is $channel; naming it $channel-$host"
    ln -s "$toolchains/stable-$host" "$toolchains/$channel-$host"
    return
  fi
  echo "==> rustup toolchain install (rust-toolchain.toml: $channel)"
  rustup toolchain install
}

# cargo-deny, pinned, built once into the project's target/tools (a fresh clone has none; about 3
# minutes on 2 cores). A different version there is replaced.
CARGO_DENY_VERSION="0.20.2"
ensure_cargo_deny() {
  local tools="$ROOT/target/tools"
  export PATH="$tools/bin:$PATH"
  if [[ "$(cargo-deny --version 2>/dev/null)" == "cargo-deny $CARGO_DENY_VERSION" ]]; then
    return
  fi
  echo "==> cargo install cargo-deny@$CARGO_DENY_VERSION into target/tools"
  cargo install --locked --quiet "cargo-deny@$CARGO_DENY_VERSION" --root "$tools"
}

step() {
  echo
  echo "==> $*"
}
