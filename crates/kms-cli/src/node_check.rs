//! `kms node check`: verifies a node's configuration before (or while) running it, and says for
//! each check what to do when it fails: the key files are readable and private, the RPC endpoint
//! answers and serves the deployment's chain, the worker is bonded to the staker (or proposed, to
//! be accepted at the node's start) and funded, the staker has tokens locked, and the public URL
//! reaches this node from outside, through the URL the node record publishes.
//!
//! The certificate is checked by loading it as the node will, and, through the reachability
//! check, the way clients check it: against its pin (self-signed), or against the web PKI for
//! the public URL's host (CA-issued).
//!
//! The reachability check goes out through the public URL and must come back to this machine:
//! when the node is not running, the check listens on the node's listen address itself for a
//! moment and asks, through the public URL, for a random token only it knows; when the node is
//! running (the address is taken), it asks the node's `GET /v1/node` and compares the staker and
//! the Umbral key.

use std::{path::Path, time::Duration};

use alloy::{
    primitives::{Address, U256},
    providers::{DynProvider, Provider, ProviderBuilder},
};
use anyhow::{bail, Result};
use kms_client::{HttpConfig, NodeClient};
use kms_contracts::{Deployment, StakingEscrow};
use kms_crypto::{
    keys::{self, MasterSecret},
    wire,
};
use kms_node::{
    standing::{LOW_BALANCE_PERIODS, PERIOD_DUTY_GAS},
    tls::{TlsIdentity, TlsKind},
    NodeConfig,
};
use rand_core::{OsRng, RngCore};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// Works, but something should be done (or cannot be checked yet).
    Warn,
    Fail,
}

/// The checks' outcomes, printed as they come.
#[derive(Debug, Default)]
struct Report {
    failed: usize,
    warned: usize,
}

impl Report {
    fn record(&mut self, outcome: Outcome, what: &str, detail: impl std::fmt::Display) {
        let tag = match outcome {
            Outcome::Ok => "ok  ",
            Outcome::Warn => {
                self.warned += 1;
                "warn"
            }
            Outcome::Fail => {
                self.failed += 1;
                "FAIL"
            }
        };
        println!("{tag}  {what}: {detail}");
    }

    fn ok(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.record(Outcome::Ok, what, detail);
    }

    fn warn(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.record(Outcome::Warn, what, detail);
    }

    fn fail(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.record(Outcome::Fail, what, detail);
    }
}

/// What the key checks found, for the chain and reachability checks.
struct Keys {
    worker: Option<Address>,
    umbral_public_key: Option<String>,
    tls: Option<TlsIdentity>,
    /// The URL the node publishes (its certificate's pin included, if self-signed).
    published_url: String,
}

/// Runs every check of the configuration at `config_path` with the keystore `password` (or why
/// there is none); fails (exit 1) if any check failed.
pub async fn check(config_path: &Path, password: Result<&[u8], &str>) -> Result<()> {
    let mut report = Report::default();
    let config = match NodeConfig::load(config_path) {
        Ok(config) => {
            report.ok("config", config_path.display());
            config
        }
        Err(e) => {
            report.fail("config", e);
            bail!("the configuration does not load: nothing else can be checked");
        }
    };
    let mut keys = check_keys(&config, password, &mut report);
    check_certificate(&config, &mut keys, &mut report);
    let deployment = match Deployment::load(&config.chain.deployments) {
        Ok(d) => {
            report.ok(
                "deployments",
                format!(
                    "{} (chain {})",
                    config.chain.deployments.display(),
                    d.chain_id
                ),
            );
            Some(d)
        }
        Err(e) => {
            report.fail("deployments", e);
            None
        }
    };
    if let Some(deployment) = &deployment {
        if let Some(provider) = check_rpc(&config.chain.rpc_url, deployment, &mut report).await {
            check_chain_standing(&provider, deployment, &config, &keys, &mut report).await;
        }
    }
    check_reachability(&config, &keys, &mut report).await;
    println!("{} failed, {} warning(s)", report.failed, report.warned);
    if report.failed > 0 {
        bail!(
            "{} check(s) failed (FAIL above): fix them before `kms node run`",
            report.failed
        );
    }
    Ok(())
}

/// The worker keystore (private, and the password opens it) and the Umbral key file.
fn check_keys(config: &NodeConfig, password: Result<&[u8], &str>, report: &mut Report) -> Keys {
    let keystore = &config.node.worker_keystore;
    let mut worker = None;
    // The keystore is encrypted, but its password may be weak: it is held to the key files'
    // rule (readable by the owner only), with the same message.
    match keys::read_secret_file(keystore).map(|_| ()) {
        Err(e) => report.fail("worker keystore", e),
        Ok(()) => match password {
            Err(reason) => report.fail("worker keystore", format!("cannot open it: {reason}")),
            Ok(password) => match keys::load_keystore(keystore, password) {
                Ok(signer) => {
                    report.ok(
                        "worker keystore",
                        format!("{} opens: worker {}", keystore.display(), signer.address()),
                    );
                    worker = Some(signer.address());
                }
                Err(e) => report.fail("worker keystore", e),
            },
        },
    }
    let umbral_public_key = match MasterSecret::load(&config.node.umbral_key) {
        Ok(master) => {
            let key = wire::encode_public_key(&master.node_key().public_key());
            report.ok(
                "umbral key",
                format!("{} (private): {key}", config.node.umbral_key.display()),
            );
            Some(key)
        }
        Err(e) => {
            report.fail("umbral key", e);
            None
        }
    };
    Keys {
        worker,
        umbral_public_key,
        tls: None,
        published_url: config.node.public_url.clone(),
    }
}

/// The certificate loads as the node will load it (its key private and matching).
fn check_certificate(config: &NodeConfig, keys: &mut Keys, report: &mut Report) {
    match config.tls_identity() {
        Ok(None) => report.warn(
            "certificate",
            "none: plain HTTP (`[tls] mode = \"off\"`), for a devnet only; clients refuse it \
             unless given --allow-plain-http",
        ),
        Ok(Some(identity)) => {
            let published = identity.public_url(&config.node.public_url);
            let detail = match identity.kind() {
                TlsKind::SelfSigned => {
                    format!("self-signed, pinned in the published URL {published}")
                }
                TlsKind::CaIssued => "CA-issued: checked against the web PKI below".to_owned(),
            };
            report.ok("certificate", detail);
            keys.published_url = published;
            keys.tls = Some(identity);
        }
        Err(e) => report.fail("certificate", e),
    }
}

/// The RPC endpoint answers, on the deployment's chain, and the contracts are there.
async fn check_rpc(
    rpc_url: &str,
    deployment: &Deployment,
    report: &mut Report,
) -> Option<DynProvider> {
    let provider = match tokio::time::timeout(
        Duration::from_secs(10),
        ProviderBuilder::new().connect(rpc_url),
    )
    .await
    {
        Ok(Ok(provider)) => provider.erased(),
        Ok(Err(e)) => {
            report.fail("rpc", format!("cannot connect to {rpc_url}: {e}"));
            return None;
        }
        Err(_) => {
            report.fail("rpc", format!("{rpc_url} did not answer within 10 s"));
            return None;
        }
    };
    let chain_id = match provider.get_chain_id().await {
        Ok(id) => id,
        Err(e) => {
            report.fail("rpc", format!("{rpc_url} does not answer eth_chainId: {e}"));
            return None;
        }
    };
    if chain_id != deployment.chain_id {
        report.fail(
            "rpc",
            format!(
                "{rpc_url} serves chain {chain_id}, the deployments file is for chain {}: point \
                 the node at an endpoint of that chain",
                deployment.chain_id
            ),
        );
        return None;
    }
    match provider.get_code_at(deployment.staking_escrow).await {
        Ok(code) if !code.is_empty() => {
            report.ok(
                "rpc",
                format!("{rpc_url} serves chain {chain_id}, contracts found"),
            );
            Some(provider)
        }
        Ok(_) => {
            report.fail(
                "rpc",
                format!(
                    "no contract at the StakingEscrow address {} on chain {chain_id}: wrong \
                     deployments file, or a chain restarted since the deployment",
                    deployment.staking_escrow
                ),
            );
            None
        }
        Err(e) => {
            report.fail("rpc", format!("{rpc_url}: {e}"));
            None
        }
    }
}

/// The worker bonded (or proposed) and funded, the staker's tokens locked, the node record.
async fn check_chain_standing(
    provider: &DynProvider,
    deployment: &Deployment,
    config: &NodeConfig,
    keys: &Keys,
    report: &mut Report,
) {
    let escrow = StakingEscrow::new(deployment.staking_escrow, provider);
    let staker = config.node.staker;
    if let Some(worker) = keys.worker {
        let bonded_to = escrow.stakerOf(worker).call().await;
        let pending = escrow.pendingWorker(staker).call().await;
        match (bonded_to, pending) {
            (Ok(bonded), _) if bonded == staker => {
                report.ok("worker bond", format!("{worker} is bonded to {staker}"));
            }
            (Ok(bonded), _) if bonded != Address::ZERO => report.fail(
                "worker bond",
                format!("{worker} is bonded to another staker, {bonded}, not to {staker}"),
            ),
            (Ok(_), Ok(pending)) if pending == worker => report.ok(
                "worker bond",
                format!("{staker} proposed {worker}: `kms node run` accepts the bond at start"),
            ),
            (Ok(_), Ok(_)) => report.fail(
                "worker bond",
                format!(
                    "{worker} is neither bonded nor proposed: as the staker, run `kms stake \
                     bond-worker --worker {worker}`"
                ),
            ),
            (Err(e), _) | (_, Err(e)) => report.fail("worker bond", e),
        }
        let balance = provider.get_balance(worker).await;
        let gas_price = provider.get_gas_price().await;
        match (balance, gas_price) {
            (Ok(balance), Ok(gas_price)) => {
                let low = U256::from(gas_price)
                    * U256::from(PERIOD_DUTY_GAS)
                    * U256::from(LOW_BALANCE_PERIODS);
                if balance.is_zero() {
                    report.fail(
                        "worker funds",
                        format!("{worker} has no ETH: send it at least {low} wei for gas"),
                    );
                } else if balance < low {
                    report.warn(
                        "worker funds",
                        format!(
                            "{balance} wei pays fewer than {LOW_BALANCE_PERIODS} periods of \
                             duties at the current gas price: send it at least {low} wei"
                        ),
                    );
                } else {
                    report.ok("worker funds", format!("{balance} wei"));
                }
            }
            (Err(e), _) | (_, Err(e)) => report.fail("worker funds", e),
        }
    }
    match escrow.getStakerInfo(staker).call().await {
        Ok(info) if info.lockedNextPeriod.is_zero() => report.warn(
            "stake",
            format!(
                "{staker} has no tokens locked for the next period: the node earns nothing and \
                 gets no policies (`kms stake deposit`, `kms stake lock`)"
            ),
        ),
        Ok(info) => report.ok(
            "stake",
            format!("{} locked for the next period", info.lockedNextPeriod),
        ),
        Err(e) => report.fail("stake", e),
    }
    match escrow.nodeRecordOf(staker).call().await {
        Ok(record) if record.url.is_empty() => report.ok(
            "node record",
            format!(
                "none yet: `kms node run` publishes {} at start",
                keys.published_url
            ),
        ),
        Ok(record) if record.url == keys.published_url => {
            let key = wire::encode_hex(&record.umbralPublicKey);
            if keys.umbral_public_key.as_ref().is_some_and(|k| *k != key) {
                report.warn(
                    "node record",
                    "publishes another Umbral key than this configuration's: `kms node run` \
                     publishes this one at start; kfrags sealed to the old key cannot be opened",
                );
            } else {
                report.ok("node record", format!("publishes {}", record.url));
            }
        }
        Ok(record) => report.warn(
            "node record",
            format!(
                "publishes {}, the configuration says {}: `kms node run` publishes the new URL \
                 at start (clients use the old one until then)",
                record.url, keys.published_url
            ),
        ),
        Err(e) => report.fail("node record", e),
    }
}

/// The public URL reaches this node from outside (see the module docs), over TLS as clients
/// reach it.
async fn check_reachability(config: &NodeConfig, keys: &Keys, report: &mut Report) {
    let url = keys.published_url.clone();
    let nodes = match NodeClient::new(HttpConfig {
        connect_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(10),
        attempts: 1,
        backoff: Duration::ZERO,
        // The node's own mode: a devnet's plain-HTTP node is checked over plain HTTP.
        allow_plain_http: keys.tls.is_none(),
    }) {
        Ok(nodes) => nodes,
        Err(e) => return report.fail("public url", e),
    };
    match tokio::net::TcpListener::bind(config.node.listen).await {
        Ok(listener) => {
            // The node is not running: answer through the listen address ourselves, with the
            // node's certificate.
            let acceptor = match keys.tls.as_ref().map(TlsIdentity::acceptor).transpose() {
                Ok(acceptor) => acceptor,
                Err(e) => return report.fail("public url", e),
            };
            let mut token = [0u8; 16];
            OsRng.fill_bytes(&mut token);
            let token = alloy::hex::encode(token);
            let answer = token.clone();
            let app = axum::Router::new().fallback(move || {
                let answer = answer.clone();
                async move { answer }
            });
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let limits = config.limits();
            let gauge = match kms_node::api::Metrics::new() {
                Ok(metrics) => metrics.open_connections(),
                Err(e) => return report.fail("public url", e),
            };
            let server = tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.await;
                };
                kms_node::server::serve(listener, app, &limits, acceptor, gauge, shutdown).await;
            });
            let result = nodes.get_text(&url, "/.well-known/kms-node-check").await;
            let _ = stop.send(());
            let _ = server.await;
            match result {
                Ok(body) if body == token => report.ok(
                    "public url",
                    format!(
                        "{url} reaches this machine's {} (checked with a token; the node is not \
                         running)",
                        config.node.listen
                    ),
                ),
                Ok(_) => report.fail(
                    "public url",
                    format!(
                        "{url} answers, but not from this machine's {}: it points elsewhere (DNS, \
                         port forwarding, a proxy)",
                        config.node.listen
                    ),
                ),
                Err(e) => report.fail(
                    "public url",
                    format!(
                        "{url} does not reach this machine's {}: {e} (check DNS, the firewall, \
                         port forwarding; for a CA-issued certificate, that it names the URL's \
                         host)",
                        config.node.listen
                    ),
                ),
            }
        }
        Err(_) => {
            // Taken: the node (or something else) is running there; ask it who it is.
            match nodes.node_info(&url).await {
                Ok(info) if info.staker != config.node.staker => report.fail(
                    "public url",
                    format!(
                        "{url} answers as the node of {}, not of {}: it points at another node",
                        info.staker, config.node.staker
                    ),
                ),
                Ok(info)
                    if keys
                        .umbral_public_key
                        .as_ref()
                        .is_some_and(|key| *key != info.umbral_public_key) =>
                {
                    report.fail(
                        "public url",
                        format!(
                            "{url} answers with another Umbral key than this configuration's: it \
                             points at another node of the same staker"
                        ),
                    );
                }
                Ok(_) => report.ok(
                    "public url",
                    format!("{url} reaches this running node (GET /v1/node)"),
                ),
                Err(e) => report.fail(
                    "public url",
                    format!(
                        "{} is taken (the node running?) but {url} does not answer as a KMS \
                         node: {e}",
                        config.node.listen
                    ),
                ),
            }
        }
    }
}
