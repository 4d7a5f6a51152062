//! The policy file: what Alice's grant writes and Bob needs to retrieve (JSON, camelCase,
//! `"version": 1`; the fields are described in `docs/client.md`).
//!
//! It holds only public data: keys, addresses, the node list. The node list is the one the
//! `PolicyCreated` event carries, in the contract's (ascending) order: revocation and refunds
//! take it as an argument and the contract checks it against its hash.

use std::{
    path::{Path, PathBuf},
    str::FromStr,
};

use alloy::primitives::{hex, Address, U256};
use kms_crypto::wire::{decode_public_key, encode_public_key};
use serde::{Deserialize, Serialize};
use umbral_pre::PublicKey;

/// The policy file format this crate writes and reads.
pub const POLICY_FILE_VERSION: u32 = 1;

/// The most nodes one policy may name (the contract's `MAX_NODES`).
pub const MAX_NODES: usize = 32;

/// One node of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyNode {
    /// The staker: the address the policy names.
    pub staker: Address,
    /// The worker bonded to the staker when the policy was made: it signs every cfrag.
    pub worker: Address,
    /// The node's HTTP endpoint, from its on-chain node record.
    pub url: String,
    /// The node's Umbral public key, from its on-chain node record.
    pub umbral_public_key: PublicKey,
}

/// A policy, as Alice's grant records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    /// The chain the policy lives on.
    pub chain_id: u64,
    /// The `PolicyManager` it was created on.
    pub policy_manager: Address,
    /// The policy id.
    pub policy_id: [u8; 16],
    /// Alice's label (the delegating key is derived from it).
    pub label: String,
    /// The policy's owner: receives refunds, may revoke.
    pub owner: Address,
    /// The policy's public key (Alice's delegating key for the label): Enrico encrypts to it.
    pub delegating_key: PublicKey,
    /// The public key of the kfrag signer; its Ethereum address is the policy's `kfragSigner`.
    pub verifying_key: PublicKey,
    /// Bob's public key.
    pub receiving_key: PublicKey,
    /// The sender keys the owner authorizes to encrypt to the policy (see [`crate::sender`]):
    /// Bob accepts signed data from these (and from any sender he adds himself). Empty in
    /// files written before senders were recorded (the JSON field is then absent).
    pub senders: Vec<PublicKey>,
    /// Capsule fragments needed to decrypt.
    pub threshold: usize,
    /// Kfrags made, one per node.
    pub shares: usize,
    /// When the policy ends (Unix seconds).
    pub end_timestamp: u64,
    /// Wei per node per period.
    pub fee_rate: U256,
    /// The nodes, ascending by staker; node `i` holds kfrag `i`.
    pub nodes: Vec<PolicyNode>,
}

/// Why a policy file could not be read, written or accepted. The field variants name the JSON
/// field.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    /// The file could not be read.
    #[error("cannot read policy file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write policy file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The JSON does not have the policy file's shape (serde names the field and the line).
    #[error("policy file {}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A field's value is not acceptable.
    #[error("policy file {}: field `{field}` {reason}", path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// The JSON field, e.g. `nodes[2].umbralPublicKey`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The JSON form.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPolicyFile {
    version: u32,
    chain_id: u64,
    policy_manager: String,
    policy_id: String,
    label: String,
    owner: String,
    delegating_key: String,
    verifying_key: String,
    receiving_key: String,
    #[serde(default)]
    senders: Vec<String>,
    threshold: u64,
    shares: u64,
    end_timestamp: u64,
    fee_rate: String,
    nodes: Vec<RawNode>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawNode {
    staker: String,
    worker: String,
    url: String,
    umbral_public_key: String,
}

/// The name used in errors for JSON that did not come from a file.
const INLINE_SOURCE: &str = "<inline JSON>";

struct Checker<'a> {
    path: &'a Path,
}

impl Checker<'_> {
    fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> PolicyFileError {
        PolicyFileError::Field {
            path: self.path.to_path_buf(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn address(&self, field: impl Into<String>, value: &str) -> Result<Address, PolicyFileError> {
        Address::from_str(value).map_err(|e| self.err(field, format!("is not an address: {e}")))
    }

    fn key(&self, field: impl Into<String>, value: &str) -> Result<PublicKey, PolicyFileError> {
        let field = field.into();
        decode_public_key(&field, value).map_err(|e| self.err(field, e.reason))
    }
}

impl PolicyFile {
    /// Reads and checks the policy file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PolicyFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses a policy file's contents; errors name the source `<inline JSON>`.
    pub fn from_json_str(json: &str) -> Result<Self, PolicyFileError> {
        Self::parse(json, Path::new(INLINE_SOURCE))
    }

    fn parse(text: &str, path: &Path) -> Result<Self, PolicyFileError> {
        let raw: RawPolicyFile =
            serde_json::from_str(text).map_err(|source| PolicyFileError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        let c = Checker { path };
        if raw.version != POLICY_FILE_VERSION {
            return Err(c.err(
                "version",
                format!(
                    "is {}, this kms reads version {POLICY_FILE_VERSION}: use a matching kms",
                    raw.version
                ),
            ));
        }
        let id_bytes = hex::decode(&raw.policy_id)
            .map_err(|e| c.err("policyId", format!("is not hex: {e}")))?;
        let policy_id: [u8; 16] = id_bytes.as_slice().try_into().map_err(|_| {
            c.err(
                "policyId",
                format!("has {} bytes, expected 16", id_bytes.len()),
            )
        })?;
        let fee_rate =
            if raw.fee_rate.is_empty() || !raw.fee_rate.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                U256::from_str_radix(&raw.fee_rate, 10).ok()
            }
            .ok_or_else(|| {
                c.err(
                    "feeRate",
                    format!("must be a decimal number of wei, found {:?}", raw.fee_rate),
                )
            })?;

        let mut nodes = Vec::with_capacity(raw.nodes.len());
        for (i, node) in raw.nodes.iter().enumerate() {
            let field = |name: &str| format!("nodes[{i}].{name}");
            nodes.push(PolicyNode {
                staker: c.address(field("staker"), &node.staker)?,
                worker: c.address(field("worker"), &node.worker)?,
                url: check_url(&node.url).map_err(|reason| c.err(field("url"), reason))?,
                umbral_public_key: c.key(field("umbralPublicKey"), &node.umbral_public_key)?,
            });
        }
        let senders = raw
            .senders
            .iter()
            .enumerate()
            .map(|(i, key)| c.key(format!("senders[{i}]"), key))
            .collect::<Result<Vec<_>, _>>()?;
        let file = Self {
            chain_id: raw.chain_id,
            policy_manager: c.address("policyManager", &raw.policy_manager)?,
            policy_id,
            label: raw.label,
            owner: c.address("owner", &raw.owner)?,
            delegating_key: c.key("delegatingKey", &raw.delegating_key)?,
            verifying_key: c.key("verifyingKey", &raw.verifying_key)?,
            receiving_key: c.key("receivingKey", &raw.receiving_key)?,
            senders,
            threshold: usize::try_from(raw.threshold).unwrap_or(usize::MAX),
            shares: usize::try_from(raw.shares).unwrap_or(usize::MAX),
            end_timestamp: raw.end_timestamp,
            fee_rate,
            nodes,
        };
        file.check()
            .map_err(|(field, reason)| c.err(field, reason))?;
        Ok(file)
    }

    /// The consistency rules: `1 <= threshold <= shares == nodes <= 32`, nodes strictly
    /// ascending by staker. Returns the offending field and why.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.shares == 0 || self.shares > MAX_NODES {
            return Err((
                "shares",
                format!("is {}, must be 1 to {MAX_NODES}", self.shares),
            ));
        }
        if self.threshold == 0 || self.threshold > self.shares {
            return Err((
                "threshold",
                format!(
                    "is {}, must be 1 to shares ({})",
                    self.threshold, self.shares
                ),
            ));
        }
        if self.nodes.len() != self.shares {
            return Err((
                "nodes",
                format!(
                    "lists {} nodes, shares is {}",
                    self.nodes.len(),
                    self.shares
                ),
            ));
        }
        if let Some(i) = self
            .nodes
            .windows(2)
            .position(|pair| pair[0].staker >= pair[1].staker)
        {
            return Err((
                "nodes",
                format!(
                    "are not strictly ascending by staker at index {} (the contract's order)",
                    i + 1
                ),
            ));
        }
        Ok(())
    }

    /// The JSON text (pretty-printed, with a final newline).
    pub fn to_json_string(&self) -> String {
        let raw = RawPolicyFile {
            version: POLICY_FILE_VERSION,
            chain_id: self.chain_id,
            policy_manager: self.policy_manager.to_checksum(None),
            policy_id: hex::encode_prefixed(self.policy_id),
            label: self.label.clone(),
            owner: self.owner.to_checksum(None),
            delegating_key: encode_public_key(&self.delegating_key),
            verifying_key: encode_public_key(&self.verifying_key),
            receiving_key: encode_public_key(&self.receiving_key),
            senders: self.senders.iter().map(encode_public_key).collect(),
            threshold: self.threshold as u64,
            shares: self.shares as u64,
            end_timestamp: self.end_timestamp,
            fee_rate: self.fee_rate.to_string(),
            nodes: self
                .nodes
                .iter()
                .map(|n| RawNode {
                    staker: n.staker.to_checksum(None),
                    worker: n.worker.to_checksum(None),
                    url: n.url.clone(),
                    umbral_public_key: encode_public_key(&n.umbral_public_key),
                })
                .collect(),
        };
        // Strings, numbers and arrays of them: serializing cannot fail.
        let mut text = serde_json::to_string_pretty(&raw).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Writes the file (replacing one that exists).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), PolicyFileError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json_string()).map_err(|source| PolicyFileError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The node stakers, in the policy's order: the `nodes` argument of `revokePolicy` and
    /// `refund`.
    pub fn stakers(&self) -> Vec<Address> {
        self.nodes.iter().map(|n| n.staker).collect()
    }

    /// The node stakers, comma-separated (for messages naming the policy's nodes).
    pub fn staker_list(&self) -> String {
        self.stakers()
            .iter()
            .map(Address::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The policy id as `0x` + 32 hex digits.
    pub fn policy_id_hex(&self) -> String {
        hex::encode_prefixed(self.policy_id)
    }

    /// The Ethereum address of the verifying key: the policy's `kfragSigner`.
    pub fn kfrag_signer(&self) -> Address {
        kms_crypto::ethereum_address(&self.verifying_key)
    }
}

/// A node URL must be absolute `http` or `https` (it comes from the chain: anyone can publish
/// one, and it is only ever used as a base for the API paths).
pub(crate) fn check_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a URL ({url:?}): {e}"))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(format!("must be http or https, found {url:?}"));
    }
    if parsed.host().is_none() {
        return Err(format!("has no host: {url:?}"));
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use umbral_pre::SecretKey;

    pub(crate) fn sample() -> PolicyFile {
        let key = || SecretKey::random().public_key();
        PolicyFile {
            chain_id: 31337,
            policy_manager: Address::repeat_byte(0x11),
            policy_id: [0xab; 16],
            label: "media/2024".into(),
            owner: Address::repeat_byte(0x22),
            delegating_key: key(),
            verifying_key: key(),
            receiving_key: key(),
            senders: vec![key(), key()],
            threshold: 2,
            shares: 3,
            end_timestamp: 1_900_000_000,
            fee_rate: U256::from(10u64).pow(U256::from(30u64)),
            nodes: (1..=3u8)
                .map(|i| PolicyNode {
                    staker: Address::repeat_byte(i),
                    worker: Address::repeat_byte(0x80 + i),
                    url: format!("http://127.0.0.1:{}", 8000 + u16::from(i)),
                    umbral_public_key: key(),
                })
                .collect(),
        }
    }

    fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut value: serde_json::Value =
            serde_json::from_str(&sample().to_json_string()).unwrap();
        edit(&mut value);
        value.to_string()
    }

    fn field_error(json: &str) -> String {
        match PolicyFile::from_json_str(json) {
            Err(PolicyFileError::Field { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn roundtrip_through_a_file() {
        let policy = sample();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        policy.save(&path).unwrap();
        assert_eq!(PolicyFile::load(&path).unwrap(), policy);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"version\": 1"), "{text}");
        assert!(text.contains("\"feeRate\": \"1000000000000000000000000000000\""));
        assert!(text.contains("\"umbralPublicKey\": \"0x0"));
        assert!(text.contains("\"policyId\": \"0xabababababababababababababababab\""));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_error(&edited(|v| v["version"] = 2.into())), "version");
        assert_eq!(
            field_error(&edited(|v| v["policyId"] = "0x1234".into())),
            "policyId"
        );
        assert_eq!(
            field_error(&edited(|v| v["feeRate"] = "1e9".into())),
            "feeRate"
        );
        assert_eq!(
            field_error(&edited(|v| v["nodes"][1]["umbralPublicKey"] = "0x02".into())),
            "nodes[1].umbralPublicKey"
        );
        assert_eq!(
            field_error(&edited(|v| v["nodes"][2]["url"] = "ftp://x".into())),
            "nodes[2].url"
        );
        assert_eq!(
            field_error(&edited(|v| v["owner"] = "0xnope".into())),
            "owner"
        );
        assert_eq!(
            field_error(&edited(|v| v["threshold"] = 4.into())),
            "threshold"
        );
        assert_eq!(
            field_error(&edited(|v| {
                let nodes = v["nodes"].as_array_mut().unwrap();
                nodes.swap(0, 1);
            })),
            "nodes"
        );
        // A missing field: serde's message names it.
        let json = edited(|v| {
            v.as_object_mut().unwrap().remove("receivingKey");
        });
        let err = PolicyFile::from_json_str(&json).unwrap_err();
        assert!(err.to_string().contains("receivingKey"), "{err}");
        // A typo'd field is refused rather than ignored.
        let json = edited(|v| v["treshold"] = 2.into());
        assert!(PolicyFile::from_json_str(&json).is_err());
    }

    #[test]
    fn read_errors_name_the_file() {
        let err = PolicyFile::load("/nonexistent/policy.json").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/policy.json"),
            "{err}"
        );
    }
}
