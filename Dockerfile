# syntax=docker/dockerfile:1
# SPDX-License-Identifier: GPL-3.0-or-later
#
# The `kms` binary in an image for node operators (docs/operating.md#running-with-docker):
#
#   docker build -t kms .
#   docker run -d --name kms-node -v kms-node:/var/lib/kms -p 9151:9151 --stop-timeout 45 kms
#
# Three stages: the contracts' ABIs (Node.js: Foundry and solc come from npm), the Rust build (it
# reads those ABIs at compile time), and a slim runtime that runs `kms node run` as a non-root
# user with the node's directory (keys, configuration, store) on a volume.

# --- contracts: `forge build` writes out/*.json, which crates/kms-contracts' `sol!` reads ---------
FROM node:20-bookworm-slim AS contracts
WORKDIR /src
# The lock file alone first: the npm layer is rebuilt only when the pins change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY foundry.toml ./
COPY contracts ./contracts
COPY script/solc ./script/solc
# Only contracts/: the binary's bindings need the four deployed contracts' artifacts, not the
# Foundry tests or the deployment script. forge resolves `solc = "script/solc"` from the current
# directory, so this runs at the project root, as script/lib.sh does.
RUN ./node_modules/.bin/forge build --skip test --skip script

# --- builder: the release `kms` --------------------------------------------------------------
# The toolchain rust-toolchain.toml pins; its bookworm base matches the runtime's glibc.
FROM rust:1.95.0-bookworm AS builder
WORKDIR /src
# Every workspace member (cargo reads them all, benches and tests included), not only kms-cli.
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
COPY crates ./crates
COPY examples ./examples
COPY --from=contracts /src/out ./out
# The registry and target directories are build caches, not layers: the binary is copied out of
# the cache in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kms-cli \
 && install -m 0755 target/release/kms /usr/local/bin/kms

# --- runtime -----------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
LABEL org.opencontainers.image.title="kms" \
      org.opencontainers.image.description="KMS node: threshold proxy re-encryption on Ethereum" \
      org.opencontainers.image.licenses="GPL-3.0-or-later"
# ca-certificates: the RPC endpoint is reached over https:// or wss://, verified against the
# system's roots. Debian's version is not pinned: bookworm's security updates replace it, and a
# pinned version would stop building once they do.
# The user has a fixed uid so that a bind-mounted node directory can be chowned to it on the host
# (chown -R 10001:10001 DIR); a named volume takes the ownership of /var/lib/kms below.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 kms \
 && useradd --system --no-log-init --uid 10001 --gid kms --home-dir /var/lib/kms \
      --shell /usr/sbin/nologin kms \
 && install -d -m 0700 -o kms -g kms /var/lib/kms
COPY --from=builder /usr/local/bin/kms /usr/local/bin/kms

USER 10001:10001
WORKDIR /var/lib/kms
# The node's directory as `kms node init --dir /var/lib/kms` writes it: node.toml, worker.json
# and umbral.json (the keys, 0600), and node.redb (the store, data_dir = "."). The deployments
# file and the password file go here too: init records their absolute paths in node.toml.
VOLUME ["/var/lib/kms"]
# The API (`kms node init`'s default port). /metrics is served on the same port.
EXPOSE 9151
# The daemon stops cleanly on SIGTERM (and SIGINT): it stops accepting, finishes in-flight
# requests (each bounded by the body timeout, 30 s by default) and exits; every store write is
# already durable. Give `docker stop` more than its default 10 s: --stop-timeout 45.
STOPSIGNAL SIGTERM
# Healthy once the API answers GET /v1/status with 200: while the node starts (waiting for the
# chain, the worker's bond, the node record) every request is answered 503, which the start
# period covers. A stale chain view is not reported here (the status is still 200, with
# "refusing"): restarting the container would not fix an RPC endpoint, so that is an alert on the
# node's metrics instead (docs/operating.md#alerts). bash's /dev/tcp does the request: no curl
# in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5m --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9151 && printf 'GET /v1/status HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q '^HTTP/1\\.[01] 200 '"]
ENTRYPOINT ["kms"]
# --listen: inside a container the API must listen on every interface to be reachable through a
# published port (node.toml written by `kms node init` without --listen says 127.0.0.1); which
# host addresses reach it is decided by `docker run -p`. It also keeps the health check's port.
CMD ["node", "run", "--config", "/var/lib/kms/node.toml", "--listen", "0.0.0.0:9151"]
