//! The node's configuration file (TOML), as `kms node init` writes it.
//!
//! ```toml
//! [chain]
//! rpc_url = "ws://127.0.0.1:8545"          # ws(s):// follows new blocks by subscription
//! deployments = "deployments/31337.json"
//! confirmations = 2                          # act on events this many blocks deep
//! poll_interval_ms = 1000
//! max_log_range = 2000                       # blocks per eth_getLogs
//!
//! [node]
//! staker = "0x…"
//! listen = "127.0.0.1:9151"
//! public_url = "https://127.0.0.1:9151"      # published in the node record (with the pin)
//! data_dir = "."                             # the store is data_dir/node.redb
//! worker_keystore = "worker.json"            # web3 secret storage, 0600
//! umbral_key = "umbral.json"                 # Umbral master secret, 0600
//! # password_file = "password.txt"
//!
//! [tls]                                      # see docs/node.md#tls
//! mode = "self-signed"                       # "self-signed" (pinned), "ca", or "off" (devnets)
//! cert_file = "tls/cert.pem"                 # the chain, leaf first (PEM)
//! key_file = "tls/key.pem"                   # its private key (PEM), 0600
//!
//! [duties]
//! commit = true
//! mint = true
//! withdraw_fees_threshold_wei = "auto"       # see below; omit to never withdraw
//! prune = true
//!
//! [audit]                                    # the node audits its peers (see docs/node.md)
//! budget_per_period_wei = "10000000000"      # policy fees per period; "0" turns audits off
//! peers = 5                                  # most peers in one period's audit policy
//! rounds_per_period = 4                      # audit rounds at random times in each period
//! # fee_rate_wei = "1000000000"              # default: the PolicyManager's default rate
//! # beneficiary = "0x…"                      # paid investigator rewards; default: the staker
//!
//! [limits]
//! max_body_bytes = 262144
//! max_capsules = 64
//! max_clock_skew_secs = 300
//! # workers = 2                              # default: the number of cores
//! max_remembered_per_policy = 10000          # replay entries per policy (429 above)
//! kfrag_uploads_per_minute = 120             # per client address, after the burst (429)
//! kfrag_upload_burst = 30
//! unknown_policy_ttl_secs = 5                # 404 for an unknown policy id, remembered
//! header_read_timeout_secs = 10              # then the connection is closed
//! body_read_timeout_secs = 30                # then 408
//! max_connections = 512                      # further connections wait in the backlog
//! max_head_age_secs = 15                     # 503 once the chain head was read this long ago
//!
//! [cors]                                     # browser apps calling /v1/ (see docs/node.md#cors)
//! allowed_origins = ["*"]                    # any; or ["https://app.example"]; [] for none
//! ```
//!
//! The `[limits]` keys after `workers`, and the whole `[audit]` section, may be omitted (older
//! files): they take the defaults shown. `[tls]` may not: plain HTTP is for devnets only, and
//! says so (`mode = "off"`).
//!
//! `withdraw_fees_threshold_wei` says when the node withdraws its fees (at most once a period,
//! after its commitment): `"auto"`, the default, once they are worth ten withdrawals' gas at the
//! gas price of the moment (`10 x 40,000 gas x eth_gasPrice`, 0.0004 ETH at 1 gwei: the gas is
//! then at most a tenth of what is withdrawn; see [`FeeThreshold`]); a decimal number of wei,
//! once they reach it; absent, never (the staker withdraws by hand: `kms rewards withdraw
//! --fees`). A period whose fees are below the threshold records the withdrawal skipped, with
//! the fees, the threshold and the gas price it came from. Files written before `"auto"` carry
//! `"1"` (withdraw every period, whatever the gas): replace it by `"auto"`.
//!
//! Relative paths are relative to the configuration file's directory.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use alloy::primitives::{Address, U256};
use serde::{Deserialize, Serialize};

use crate::{
    api::{AllowedOrigins, Limits},
    audit::AuditConfig,
    duties::{DutyConfig, FeeThreshold},
};

/// The configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML of this schema.
    #[error("{}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (with the line and field).
        reason: String,
    },
    /// A value is out of range.
    #[error("{}: {field}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// `[chain]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSection {
    /// The RPC endpoint (`http(s)://` or `ws(s)://`); `--rpc-url`/`ETH_RPC_URL` override it.
    pub rpc_url: String,
    /// The deployments file of the contracts.
    pub deployments: PathBuf,
    /// Act on events this many blocks deep.
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// How often to poll when no new-block subscription is available, in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Most blocks per `eth_getLogs` while catching up.
    #[serde(default = "default_max_log_range")]
    pub max_log_range: u64,
}

fn default_confirmations() -> u64 {
    2
}
fn default_poll_interval_ms() -> u64 {
    1000
}
fn default_max_log_range() -> u64 {
    2000
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The staker this node serves.
    pub staker: Address,
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// The URL clients reach the API at, published in the node record.
    pub public_url: String,
    /// The directory of the store.
    pub data_dir: PathBuf,
    /// The worker's web3 keystore.
    pub worker_keystore: PathBuf,
    /// The Umbral master-secret file.
    pub umbral_key: PathBuf,
    /// The keystore's password file (else `--password-file` or `KMS_PASSWORD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

/// How the API is served (`[tls] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// A self-signed certificate (`kms node init` makes one): clients pin it; the node publishes
    /// its URL with the certificate's SHA-256 as the fragment.
    SelfSigned,
    /// A certificate a certificate authority issued for the public URL's host name: clients and
    /// browsers verify it against the web PKI (what a node that web apps reach needs).
    Ca,
    /// Plain HTTP: devnets only (clients refuse it unless told otherwise).
    Off,
}

/// `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Self-signed, CA-issued, or off.
    pub mode: TlsMode,
    /// The certificate chain, leaf first (PEM); not with `mode = "off"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM; refused when group or others can read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

/// `[duties]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DutiesSection {
    /// Commit to each next period.
    #[serde(default = "yes")]
    pub commit: bool,
    /// Mint rewards no commitment will mint.
    #[serde(default = "yes")]
    pub mint: bool,
    /// When to withdraw the fees: `"auto"` (worth ten withdrawals' gas at the gas price of the
    /// moment) or a decimal number of wei; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdraw_fees_threshold_wei: Option<String>,
    /// Delete kfrags of revoked, ended or vanished policies.
    #[serde(default = "yes")]
    pub prune: bool,
}

fn yes() -> bool {
    true
}

/// `withdraw_fees_threshold_wei = "auto"`: [`FeeThreshold::DEFAULT`].
const AUTO: &str = "auto";

/// What `kms node init` writes above the threshold's line, to say what it means.
fn threshold_comment() -> String {
    format!(
        "# \"{AUTO}\": withdraw once the fees are worth {} withdrawals' gas at the gas price of the \
         moment (the gas is then at most 1/{} of them); or a decimal number of wei; remove the \
         line to never withdraw",
        crate::duties::WITHDRAW_FEES_GAS_MULTIPLE,
        crate::duties::WITHDRAW_FEES_GAS_MULTIPLE,
    )
}

impl Default for DutiesSection {
    fn default() -> Self {
        Self {
            commit: true,
            mint: true,
            withdraw_fees_threshold_wei: Some(AUTO.into()),
            prune: true,
        }
    }
}

/// `[audit]` (see [`AuditConfig`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Wei of policy fees per period (decimal string); `"0"` turns audits off.
    #[serde(default = "default_audit_budget")]
    pub budget_per_period_wei: String,
    /// Most peers in one period's audit policy.
    #[serde(default = "default_audit_peers")]
    pub peers: usize,
    /// Audit rounds per period.
    #[serde(default = "default_audit_rounds")]
    pub rounds_per_period: usize,
    /// Fee rate of the audit policies (wei, decimal string); absent: the PolicyManager's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_rate_wei: Option<String>,
    /// Who is paid the investigator reward of the evidence this node files; absent: the staker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beneficiary: Option<Address>,
}

fn default_audit_budget() -> String {
    crate::audit::DEFAULT_AUDIT_BUDGET_WEI.to_string()
}
fn default_audit_peers() -> usize {
    AuditConfig::default().peers
}
fn default_audit_rounds() -> usize {
    AuditConfig::default().rounds_per_period
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            budget_per_period_wei: default_audit_budget(),
            peers: default_audit_peers(),
            rounds_per_period: default_audit_rounds(),
            fee_rate_wei: None,
            beneficiary: None,
        }
    }
}

/// `[limits]` (see [`Limits`] for what each bounds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most capsules per re-encryption request.
    pub max_capsules: usize,
    /// Largest clock distance of a request, in seconds.
    pub max_clock_skew_secs: u64,
    /// Re-encryption workers (default: the number of cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Re-encryption requests remembered against replays per policy.
    #[serde(default = "default_max_remembered_per_policy")]
    pub max_remembered_per_policy: usize,
    /// Kfrag uploads per client address per minute, after the burst.
    #[serde(default = "default_kfrag_uploads_per_minute")]
    pub kfrag_uploads_per_minute: u32,
    /// Kfrag uploads per client address at once.
    #[serde(default = "default_kfrag_upload_burst")]
    pub kfrag_upload_burst: u32,
    /// How long an unknown policy id is answered 404 without asking the chain, in seconds.
    #[serde(default = "default_unknown_policy_ttl_secs")]
    pub unknown_policy_ttl_secs: u64,
    /// Longest time to receive a request's headers, in seconds.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// Longest time to receive a request's body, in seconds.
    #[serde(default = "default_body_read_timeout_secs")]
    pub body_read_timeout_secs: u64,
    /// Most connections served at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How old the node's read of the chain head may be before re-encryptions are refused (503).
    #[serde(default = "default_max_head_age_secs")]
    pub max_head_age_secs: u64,
}

fn default_max_remembered_per_policy() -> usize {
    Limits::default().max_remembered_per_policy
}
fn default_kfrag_uploads_per_minute() -> u32 {
    Limits::default().kfrag_uploads_per_minute
}
fn default_kfrag_upload_burst() -> u32 {
    Limits::default().kfrag_upload_burst
}
fn default_unknown_policy_ttl_secs() -> u64 {
    Limits::default().unknown_policy_ttl.as_secs()
}
fn default_header_read_timeout_secs() -> u64 {
    Limits::default().header_read_timeout.as_secs()
}
fn default_body_read_timeout_secs() -> u64 {
    Limits::default().body_read_timeout.as_secs()
}
fn default_max_connections() -> usize {
    Limits::default().max_connections
}
fn default_max_head_age_secs() -> u64 {
    Limits::default().max_head_age.as_secs()
}

impl Default for LimitsSection {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            max_body_bytes: limits.max_body_bytes,
            max_capsules: limits.max_capsules,
            max_clock_skew_secs: limits.max_clock_skew_secs,
            workers: None,
            max_remembered_per_policy: limits.max_remembered_per_policy,
            kfrag_uploads_per_minute: limits.kfrag_uploads_per_minute,
            kfrag_upload_burst: limits.kfrag_upload_burst,
            unknown_policy_ttl_secs: limits.unknown_policy_ttl.as_secs(),
            header_read_timeout_secs: limits.header_read_timeout.as_secs(),
            body_read_timeout_secs: limits.body_read_timeout.as_secs(),
            max_connections: limits.max_connections,
            max_head_age_secs: limits.max_head_age.as_secs(),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// `[chain]`.
    pub chain: ChainSection,
    /// `[node]`.
    pub node: NodeSection,
    /// `[tls]`: required (a file without it is refused with what to add).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSection>,
    /// `[duties]`.
    #[serde(default)]
    pub duties: DutiesSection,
    /// `[audit]`.
    #[serde(default)]
    pub audit: AuditSection,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[cors]` (may be omitted: any origin).
    #[serde(default)]
    pub cors: CorsSection,
}

/// `[cors]`: which browser origins may call the JSON API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSection {
    /// `["*"]` (any, the default), a list of origins (`"https://app.example"`), or `[]`.
    pub allowed_origins: Vec<String>,
}

impl Default for CorsSection {
    fn default() -> Self {
        Self {
            allowed_origins: vec!["*".to_owned()],
        }
    }
}

impl NodeConfig {
    /// A configuration with the defaults for everything but what must be given.
    pub fn new(
        rpc_url: String,
        deployments: PathBuf,
        staker: Address,
        listen: SocketAddr,
        public_url: String,
    ) -> Self {
        Self {
            chain: ChainSection {
                rpc_url,
                deployments,
                confirmations: default_confirmations(),
                poll_interval_ms: default_poll_interval_ms(),
                max_log_range: default_max_log_range(),
            },
            node: NodeSection {
                staker,
                listen,
                public_url,
                data_dir: PathBuf::from("."),
                worker_keystore: PathBuf::from("worker.json"),
                umbral_key: PathBuf::from("umbral.json"),
                password_file: None,
            },
            tls: Some(TlsSection {
                mode: TlsMode::SelfSigned,
                cert_file: Some(PathBuf::from("tls/cert.pem")),
                key_file: Some(PathBuf::from("tls/key.pem")),
            }),
            duties: DutiesSection::default(),
            audit: AuditSection::default(),
            limits: LimitsSection::default(),
            cors: CorsSection::default(),
        }
    }

    /// Reads `path`, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut config.chain.deployments);
        resolve(&mut config.node.data_dir);
        resolve(&mut config.node.worker_keystore);
        resolve(&mut config.node.umbral_key);
        if let Some(p) = config.node.password_file.as_mut() {
            resolve(p);
        }
        if let Some(tls) = config.tls.as_mut() {
            tls.cert_file.as_mut().map(resolve);
            tls.key_file.as_mut().map(resolve);
        }
        config.check_tls(path)?;
        config.duty_config(path)?;
        config.check_limits(path)?;
        config.cors_origins(path)?;
        Ok(config)
    }

    /// `[cors] allowed_origins`, checked.
    pub fn cors_origins(&self, path: &Path) -> Result<AllowedOrigins, ConfigError> {
        AllowedOrigins::parse(&self.cors.allowed_origins).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            field: "cors.allowed_origins",
            reason: e.to_string(),
        })
    }

    /// Refuses a missing `[tls]`, and a mode without its files (or `off` with some).
    fn check_tls(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, reason: &str| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            reason: reason.to_owned(),
        };
        let Some(tls) = &self.tls else {
            return Err(invalid(
                "tls",
                "missing: add a [tls] section, with `mode = \"self-signed\"` (or \"ca\") and \
                 `cert_file`/`key_file` (a new `kms node init` makes a self-signed pair), or \
                 `mode = \"off\"` for a devnet (plain HTTP)",
            ));
        };
        match (tls.mode, &tls.cert_file, &tls.key_file) {
            (TlsMode::Off, None, None) | (TlsMode::SelfSigned | TlsMode::Ca, Some(_), Some(_)) => {
                Ok(())
            }
            (TlsMode::Off, _, _) => Err(invalid(
                "tls.mode",
                "\"off\" serves plain HTTP: remove cert_file and key_file, or choose \"self-signed\" or \"ca\"",
            )),
            _ => Err(invalid(
                "tls",
                "cert_file and key_file are both needed with mode \"self-signed\" or \"ca\"",
            )),
        }
    }

    /// The certificate the API serves, from `[tls]`'s files (`None`: plain HTTP). The key file
    /// is refused when group or others can read it.
    pub fn tls_identity(&self) -> Result<Option<crate::tls::TlsIdentity>, ConfigError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let kind = match tls.mode {
            TlsMode::Off => return Ok(None),
            TlsMode::SelfSigned => crate::tls::TlsKind::SelfSigned,
            TlsMode::Ca => crate::tls::TlsKind::CaIssued,
        };
        let (Some(cert_file), Some(key_file)) = (&tls.cert_file, &tls.key_file) else {
            return Ok(None);
        };
        let cert = std::fs::read_to_string(cert_file).map_err(|source| ConfigError::Io {
            path: cert_file.clone(),
            source,
        })?;
        let key =
            kms_crypto::keys::read_secret_file(key_file).map_err(|e| ConfigError::Invalid {
                path: key_file.clone(),
                field: "tls.key_file",
                reason: e.to_string(),
            })?;
        let key = String::from_utf8(key.to_vec()).map_err(|_| ConfigError::Invalid {
            path: key_file.clone(),
            field: "tls.key_file",
            reason: "not a PEM file".into(),
        })?;
        crate::tls::TlsIdentity::from_pem(&cert, &key, kind)
            .map_err(|e| ConfigError::Invalid {
                path: cert_file.clone(),
                field: "tls",
                reason: e.to_string(),
            })
            .map(Some)
    }

    /// Refuses `[limits]` values that would make the node refuse everything or never time out.
    fn check_limits(&self, path: &Path) -> Result<(), ConfigError> {
        let limits = &self.limits;
        let positive = [
            ("limits.max_body_bytes", limits.max_body_bytes as u64),
            ("limits.max_capsules", limits.max_capsules as u64),
            (
                "limits.max_remembered_per_policy",
                limits.max_remembered_per_policy as u64,
            ),
            (
                "limits.kfrag_upload_burst",
                u64::from(limits.kfrag_upload_burst),
            ),
            (
                "limits.header_read_timeout_secs",
                limits.header_read_timeout_secs,
            ),
            (
                "limits.body_read_timeout_secs",
                limits.body_read_timeout_secs,
            ),
            ("limits.max_connections", limits.max_connections as u64),
            ("limits.max_head_age_secs", limits.max_head_age_secs),
        ];
        match positive.into_iter().find(|&(_, value)| value == 0) {
            Some((field, _)) => Err(ConfigError::Invalid {
                path: path.to_owned(),
                field,
                reason: "must be at least 1".into(),
            }),
            None => Ok(()),
        }
    }

    /// Writes the configuration to a new file at `path`, readable by this user only (`0600`): it
    /// names the RPC endpoint, whose URL often carries a provider's API key.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let text = toml::to_string_pretty(self).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let text = text.replacen(
            "\nwithdraw_fees_threshold_wei = ",
            &format!("\n{}\nwithdraw_fees_threshold_wei = ", threshold_comment()),
            1,
        );
        let io = |source| ConfigError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)
    }

    /// The `[duties]` section as the duty loop takes it.
    pub fn duty_config(&self, path: &Path) -> Result<DutyConfig, ConfigError> {
        let wei = |field: &'static str, s: &str| {
            s.parse::<U256>().map_err(|e| ConfigError::Invalid {
                path: path.to_owned(),
                field,
                reason: format!("{s:?} is not a decimal number of wei: {e}"),
            })
        };
        let threshold = self
            .duties
            .withdraw_fees_threshold_wei
            .as_deref()
            .map(|s| match s {
                AUTO => Ok(FeeThreshold::DEFAULT),
                amount => amount.parse::<U256>().map(FeeThreshold::Wei).map_err(|e| {
                    ConfigError::Invalid {
                        path: path.to_owned(),
                        field: "duties.withdraw_fees_threshold_wei",
                        reason: format!(
                            "{amount:?} is neither \"{AUTO}\" nor a decimal number of wei: {e}"
                        ),
                    }
                }),
            })
            .transpose()?;
        let audit = &self.audit;
        if audit.beneficiary == Some(Address::ZERO) {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                field: "audit.beneficiary",
                reason: "the zero address cannot be paid: omit it to pay the staker".into(),
            });
        }
        Ok(DutyConfig {
            commit: self.duties.commit,
            mint: self.duties.mint,
            withdraw_fees_threshold: threshold,
            prune: self.duties.prune,
            audit: AuditConfig {
                budget_per_period: wei(
                    "audit.budget_per_period_wei",
                    &audit.budget_per_period_wei,
                )?,
                peers: audit.peers,
                rounds_per_period: audit.rounds_per_period,
                fee_rate: audit
                    .fee_rate_wei
                    .as_deref()
                    .map(|s| wei("audit.fee_rate_wei", s))
                    .transpose()?,
            },
            beneficiary: audit.beneficiary,
        })
    }

    /// The `[limits]` section as the API takes it.
    pub fn limits(&self) -> Limits {
        let defaults = Limits::default();
        let l = &self.limits;
        Limits {
            max_body_bytes: l.max_body_bytes,
            max_capsules: l.max_capsules,
            max_clock_skew_secs: l.max_clock_skew_secs,
            workers: l.workers.unwrap_or(defaults.workers),
            max_remembered_per_policy: l.max_remembered_per_policy,
            kfrag_uploads_per_minute: l.kfrag_uploads_per_minute,
            kfrag_upload_burst: l.kfrag_upload_burst,
            unknown_policy_ttl: Duration::from_secs(l.unknown_policy_ttl_secs),
            header_read_timeout: Duration::from_secs(l.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(l.body_read_timeout_secs),
            max_connections: l.max_connections,
            max_head_age: Duration::from_secs(l.max_head_age_secs),
        }
    }

    /// The store's file.
    pub fn store_path(&self) -> PathBuf {
        self.node.data_dir.join("node.redb")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A default configuration saved in a temporary directory: the directory, the file, its text.
    fn saved_default() -> (tempfile::TempDir, PathBuf, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        NodeConfig::new(
            "http://127.0.0.1:8545".into(),
            PathBuf::from("deployments/31337.json"),
            Address::repeat_byte(7),
            "127.0.0.1:9151".parse().unwrap(),
            "http://127.0.0.1:9151".into(),
        )
        .save(&path)
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        (dir, path, text)
    }

    #[test]
    fn the_audit_section_has_defaults_and_is_checked() {
        let (dir, path, text) = saved_default();
        assert!(text.contains("[audit]"), "{text}");
        let audit = NodeConfig::load(&path).unwrap().duty_config(&path).unwrap();
        assert_eq!(audit.audit, AuditConfig::default());
        assert!(audit.audit.enabled());
        assert_eq!(audit.beneficiary, None);

        // A file from before audits: the defaults, audits on.
        let old = dir.path().join("old.toml");
        let start = text.find("[audit]").unwrap();
        let end = start + text[start..].find("\n[").unwrap() + 1;
        std::fs::write(&old, format!("{}{}", &text[..start], &text[end..])).unwrap();
        let loaded = NodeConfig::load(&old).unwrap();
        assert_eq!(
            loaded.duty_config(&old).unwrap().audit,
            AuditConfig::default()
        );

        let write = |name: &str, from: &str, to: &str| {
            let file = dir.path().join(name);
            std::fs::write(&file, text.replace(from, to)).unwrap();
            file
        };
        let off = write(
            "off.toml",
            "budget_per_period_wei = \"10000000000\"",
            "budget_per_period_wei = \"0\"",
        );
        let loaded = NodeConfig::load(&off).unwrap();
        assert!(!loaded.duty_config(&off).unwrap().audit.enabled());
        let bad = write(
            "bad.toml",
            "budget_per_period_wei = \"10000000000\"",
            "budget_per_period_wei = \"ten\"",
        );
        let err = NodeConfig::load(&bad).unwrap_err().to_string();
        assert!(err.contains("audit.budget_per_period_wei"), "{err}");
        let zero = write(
            "zero.toml",
            "rounds_per_period = 4",
            "rounds_per_period = 4\nbeneficiary = \"0x0000000000000000000000000000000000000000\"",
        );
        let err = NodeConfig::load(&zero).unwrap_err().to_string();
        assert!(err.contains("audit.beneficiary"), "{err}");
    }

    #[test]
    fn roundtrip_resolves_relative_paths_and_validates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let config = NodeConfig::new(
            "http://127.0.0.1:8545".into(),
            PathBuf::from("deployments/31337.json"),
            Address::repeat_byte(7),
            "127.0.0.1:9151".parse().unwrap(),
            "http://127.0.0.1:9151".into(),
        );
        config.save(&path).unwrap();
        assert!(config.save(&path).is_err(), "never overwrites");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "the RPC URL's API key is the user's only");
        }
        let loaded = NodeConfig::load(&path).unwrap();
        assert_eq!(loaded.node.staker, config.node.staker);
        assert_eq!(
            loaded.chain.deployments,
            dir.path().join("deployments/31337.json")
        );
        assert_eq!(loaded.store_path(), dir.path().join("./node.redb"));
        let duties = loaded.duty_config(&path).unwrap();
        assert_eq!(duties.withdraw_fees_threshold, Some(FeeThreshold::DEFAULT));

        let bad = dir.path().join("bad.toml");
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "withdraw_fees_threshold_wei = \"auto\"",
            "withdraw_fees_threshold_wei = \"x\"",
        );
        std::fs::write(&bad, text).unwrap();
        let err = NodeConfig::load(&bad).unwrap_err().to_string();
        assert!(err.contains("withdraw_fees_threshold_wei"), "{err}");

        // A file from before the connection and quota limits: they take the defaults.
        let old = dir.path().join("old.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let cut = text.find("max_remembered_per_policy").unwrap();
        std::fs::write(&old, &text[..cut]).unwrap();
        let limits = NodeConfig::load(&old).unwrap().limits();
        assert_eq!(limits.max_connections, Limits::default().max_connections);
        assert_eq!(
            limits.header_read_timeout,
            Limits::default().header_read_timeout
        );
        let zero = dir.path().join("zero.toml");
        std::fs::write(
            &zero,
            text.replace("max_connections = 512", "max_connections = 0"),
        )
        .unwrap();
        let err = NodeConfig::load(&zero).unwrap_err().to_string();
        assert!(err.contains("limits.max_connections"), "{err}");

        let unknown = dir.path().join("unknown.toml");
        std::fs::write(&unknown, "[chain]\nrpc = 1\n").unwrap();
        assert!(matches!(
            NodeConfig::load(&unknown),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn the_fee_threshold_is_auto_by_default_explained_and_may_be_wei_or_absent() {
        let (dir, path, text) = saved_default();
        assert!(
            text.contains(&format!(
                "{}\nwithdraw_fees_threshold_wei = \"auto\"\n",
                threshold_comment()
            )),
            "{text}"
        );
        let duties = NodeConfig::load(&path).unwrap().duty_config(&path).unwrap();
        assert_eq!(duties.withdraw_fees_threshold, Some(FeeThreshold::DEFAULT));
        assert_eq!(
            duties.withdraw_fees_threshold,
            DutyConfig::default().withdraw_fees_threshold,
            "`kms node init` writes the daemon's default"
        );

        let write = |name: &str, line: &str| {
            let file = dir.path().join(name);
            std::fs::write(
                &file,
                text.replace("withdraw_fees_threshold_wei = \"auto\"\n", line),
            )
            .unwrap();
            NodeConfig::load(&file).map(|c| c.duty_config(&file).unwrap().withdraw_fees_threshold)
        };
        assert_eq!(
            write(
                "wei.toml",
                "withdraw_fees_threshold_wei = \"5000000000000000\"\n"
            )
            .unwrap(),
            Some(FeeThreshold::Wei(U256::from(5_000_000_000_000_000u64)))
        );
        // Files written before "auto": their 1 wei is kept as written.
        assert_eq!(
            write("old.toml", "withdraw_fees_threshold_wei = \"1\"\n").unwrap(),
            Some(FeeThreshold::Wei(U256::from(1)))
        );
        assert_eq!(write("never.toml", "").unwrap(), None);
        let err = write("bad.toml", "withdraw_fees_threshold_wei = \"Auto\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("duties.withdraw_fees_threshold_wei") && err.contains("\"Auto\""),
            "{err}"
        );
    }

    #[test]
    fn the_tls_section_is_required_and_consistent() {
        let (_dir, path, text) = saved_default();
        assert!(
            text.contains("[tls]") && text.contains("mode = \"self-signed\""),
            "{text}"
        );
        // A file from before TLS: refused, saying what to add.
        let start = text.find("[tls]").unwrap();
        let end = start + text[start..].find("\n\n").unwrap();
        let without = format!("{}{}", &text[..start], &text[end..]);
        std::fs::write(&path, &without).unwrap();
        let err = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("tls") && err.contains("mode = \"off\""),
            "{err}"
        );
        // Plain HTTP says so, and takes no files; a certificate needs both files.
        let off = text.replace("mode = \"self-signed\"", "mode = \"off\"");
        std::fs::write(&path, &off).unwrap();
        let err = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("remove cert_file and key_file"), "{err}");
        let no_key = text
            .lines()
            .filter(|l| !l.starts_with("key_file"))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&path, &no_key).unwrap();
        let err = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("both needed"), "{err}");
        let plain = format!("{without}\n[tls]\nmode = \"off\"\n");
        std::fs::write(&path, &plain).unwrap();
        let config = NodeConfig::load(&path).unwrap();
        assert!(config.tls_identity().unwrap().is_none());
    }

    #[test]
    fn the_cors_section_defaults_to_any_origin_and_is_checked() {
        let (dir, path, text) = saved_default();
        assert!(text.contains("[cors]"), "{text}");
        let loaded = NodeConfig::load(&path).unwrap();
        assert_eq!(loaded.cors_origins(&path).unwrap(), AllowedOrigins::Any);

        // A file from before CORS: any origin.
        let start = text.find("[cors]").unwrap();
        let end = start
            + text[start..]
                .find("\n\n")
                .map_or(text.len() - start, |e| e + 2);
        let old = dir.path().join("old.toml");
        std::fs::write(&old, format!("{}{}", &text[..start], &text[end..])).unwrap();
        let loaded = NodeConfig::load(&old).unwrap();
        assert_eq!(loaded.cors_origins(&old).unwrap(), AllowedOrigins::Any);

        let listed = text.replace(
            "allowed_origins = [\"*\"]",
            "allowed_origins = [\"https://app.example\"]",
        );
        std::fs::write(&path, &listed).unwrap();
        let loaded = NodeConfig::load(&path).unwrap();
        assert!(matches!(
            loaded.cors_origins(&path).unwrap(),
            AllowedOrigins::List(origins) if origins == ["https://app.example"]
        ));

        let bad = text.replace(
            "allowed_origins = [\"*\"]",
            "allowed_origins = [\"https://app.example/\"]",
        );
        std::fs::write(&path, &bad).unwrap();
        let err = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("cors.allowed_origins") && err.contains("is not an origin"),
            "{err}"
        );
    }
}
