//! The deployments file that `script/Deploy.s.sol` writes: where the contracts live on one chain
//! and the parameters they were deployed with.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use alloy::{
    network::Network,
    primitives::{Address, U256},
    providers::Provider,
};
use serde_json::value::RawValue;

use crate::bindings::{
    Adjudicator::AdjudicatorInstance, KMSToken::KMSTokenInstance,
    PolicyManager::PolicyManagerInstance, StakingEscrow::StakingEscrowInstance,
};

/// Addresses and parameters of one deployment of the KMS contracts, as written by
/// `script/Deploy.s.sol` (by default to `deployments/<chainId>.json`).
///
/// The parameters are copies of the escrow's immutables, kept here so that clients can plan
/// (period lengths, stake bounds) without a round trip; the chain stays authoritative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The chain the contracts were deployed on; guards against pointing a client at the wrong
    /// network with a file from another.
    pub chain_id: u64,
    /// The block the deployment started at: event scans need not look earlier.
    pub start_block: u64,
    /// The account that broadcast the deployment (the escrow's owner, and by default the fee
    /// governor of the policy manager).
    pub deployer: Address,
    /// The `KMSToken` contract.
    pub token: Address,
    /// The `StakingEscrow` contract.
    pub staking_escrow: Address,
    /// The `PolicyManager` contract.
    pub policy_manager: Address,
    /// The adjudicator; the zero address until one is deployed and linked.
    pub adjudicator: Address,
    /// Length of a period, in seconds.
    pub seconds_per_period: u64,
    /// Smallest sub-stake, in token units.
    pub min_stake: U256,
    /// Largest locked total per staker, in token units.
    pub max_stake: U256,
    /// Shortest lock of a sub-stake, in periods.
    pub min_lock_periods: u64,
    /// Longest lock of a sub-stake, in periods.
    pub max_lock_periods: u64,
    /// Periods a worker must stay bonded before it can be changed.
    pub min_worker_periods: u64,
    /// Share of the unallocated reserve issued per period, as a WAD (1e18 = 100%).
    pub issuance_rate: U256,
}

/// Why a deployments file could not be loaded. Every variant names the file, and the field
/// variants name the field, so that a broken or stale file can be fixed without reading code.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// The file could not be read.
    #[error("cannot read deployments file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a JSON object.
    #[error("deployments file {} is not a JSON object: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A required field is absent.
    #[error("deployments file {} has no `{field}` field", path.display())]
    MissingField {
        /// The file.
        path: PathBuf,
        /// The field's JSON name.
        field: &'static str,
    },
    /// A field is present but its value is not of the expected form.
    #[error("deployments file {}: field `{field}` {reason}", path.display())]
    InvalidField {
        /// The file.
        path: PathBuf,
        /// The field's JSON name.
        field: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
}

/// The name used in errors for JSON that did not come from a file.
const INLINE_SOURCE: &str = "<inline JSON>";

impl Deployment {
    /// Reads and validates the deployments file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DeploymentError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| DeploymentError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses the contents of a deployments file; errors name the source as `<inline JSON>`.
    pub fn from_json_str(json: &str) -> Result<Self, DeploymentError> {
        Self::parse(json, Path::new(INLINE_SOURCE))
    }

    fn parse(text: &str, path: &Path) -> Result<Self, DeploymentError> {
        // Each value is kept as its raw JSON text: forge writes large integers as JSON numbers or
        // as strings depending on their size, and going through `f64` would silently round them.
        let fields: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(text).map_err(|source| DeploymentError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        let reader = Fields {
            fields: &fields,
            path,
        };
        Ok(Self {
            chain_id: reader.u64("chainId")?,
            start_block: reader.u64("startBlock")?,
            deployer: reader.address("deployer")?,
            token: reader.address("token")?,
            staking_escrow: reader.address("stakingEscrow")?,
            policy_manager: reader.address("policyManager")?,
            adjudicator: reader.address("adjudicator")?,
            seconds_per_period: reader.u64("secondsPerPeriod")?,
            min_stake: reader.u256("minStake")?,
            max_stake: reader.u256("maxStake")?,
            min_lock_periods: reader.u64("minLockPeriods")?,
            max_lock_periods: reader.u64("maxLockPeriods")?,
            min_worker_periods: reader.u64("minWorkerPeriods")?,
            issuance_rate: reader.u256("issuanceRate")?,
        })
    }

    /// The deployments file's JSON for this deployment (what [`Deployment::load`] reads; large
    /// numbers as decimal strings).
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "chainId": self.chain_id,
            "startBlock": self.start_block,
            "deployer": self.deployer,
            "token": self.token,
            "stakingEscrow": self.staking_escrow,
            "policyManager": self.policy_manager,
            "adjudicator": self.adjudicator,
            "secondsPerPeriod": self.seconds_per_period,
            "minStake": self.min_stake.to_string(),
            "maxStake": self.max_stake.to_string(),
            "minLockPeriods": self.min_lock_periods,
            "maxLockPeriods": self.max_lock_periods,
            "minWorkerPeriods": self.min_worker_periods,
            "issuanceRate": self.issuance_rate.to_string(),
        })
        .to_string()
    }

    /// The length of a period.
    pub fn period_duration(&self) -> Duration {
        Duration::from_secs(self.seconds_per_period)
    }

    /// Whether an adjudicator has been linked (the file holds the zero address until then).
    pub fn has_adjudicator(&self) -> bool {
        !self.adjudicator.is_zero()
    }

    /// The token contract, bound to `provider`.
    pub fn token<P: Provider<N>, N: Network>(&self, provider: P) -> KMSTokenInstance<P, N> {
        KMSTokenInstance::new(self.token, provider)
    }

    /// The staking escrow, bound to `provider`.
    pub fn staking_escrow<P: Provider<N>, N: Network>(
        &self,
        provider: P,
    ) -> StakingEscrowInstance<P, N> {
        StakingEscrowInstance::new(self.staking_escrow, provider)
    }

    /// The policy manager, bound to `provider`.
    pub fn policy_manager<P: Provider<N>, N: Network>(
        &self,
        provider: P,
    ) -> PolicyManagerInstance<P, N> {
        PolicyManagerInstance::new(self.policy_manager, provider)
    }

    /// The adjudicator, bound to `provider` (check `has_adjudicator` first on old deployments).
    pub fn adjudicator<P: Provider<N>, N: Network>(
        &self,
        provider: P,
    ) -> AdjudicatorInstance<P, N> {
        AdjudicatorInstance::new(self.adjudicator, provider)
    }
}

/// Typed access to the raw fields of one file, turning every failure into an error that names the
/// file and the field.
struct Fields<'a> {
    fields: &'a BTreeMap<String, Box<RawValue>>,
    path: &'a Path,
}

/// A JSON value reduced to the two forms forge writes for scalars.
enum Scalar<'a> {
    /// The text of a JSON number, verbatim.
    Number(&'a str),
    /// A JSON string, unescaped.
    String(String),
}

impl Fields<'_> {
    fn raw(&self, field: &'static str) -> Result<&str, DeploymentError> {
        self.fields
            .get(field)
            .map(|raw| raw.get())
            .ok_or_else(|| DeploymentError::MissingField {
                path: self.path.to_path_buf(),
                field,
            })
    }

    fn invalid(&self, field: &'static str, reason: impl Into<String>) -> DeploymentError {
        DeploymentError::InvalidField {
            path: self.path.to_path_buf(),
            field,
            reason: reason.into(),
        }
    }

    fn scalar(&self, field: &'static str) -> Result<Scalar<'_>, DeploymentError> {
        let raw = self.raw(field)?;
        if raw.starts_with('"') {
            serde_json::from_str::<String>(raw)
                .map(Scalar::String)
                .map_err(|e| self.invalid(field, format!("is not a valid JSON string: {e}")))
        } else if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            Ok(Scalar::Number(raw))
        } else {
            Err(self.invalid(field, format!("must be a number or a string, found {raw}")))
        }
    }

    fn u256(&self, field: &'static str) -> Result<U256, DeploymentError> {
        let (text, radix) = match self.scalar(field)? {
            Scalar::Number(text) => (text.to_owned(), 10),
            Scalar::String(text) => match text.strip_prefix("0x").or(text.strip_prefix("0X")) {
                Some(hex) => (hex.to_owned(), 16),
                None => (text, 10),
            },
        };
        // `from_str_radix` would accept an empty string as zero: a blank field is a mistake.
        if text.is_empty() || !text.chars().all(|c| c.is_digit(radix)) {
            let what = if radix == 16 {
                "a hexadecimal"
            } else {
                "a non-negative decimal"
            };
            return Err(self.invalid(
                field,
                format!("must be {what} integer (no sign, fraction or exponent), found {text:?}"),
            ));
        }
        U256::from_str_radix(&text, u64::from(radix))
            .map_err(|e| self.invalid(field, format!("does not fit in 256 bits: {e}")))
    }

    fn u64(&self, field: &'static str) -> Result<u64, DeploymentError> {
        let value = self.u256(field)?;
        u64::try_from(value)
            .map_err(|_| self.invalid(field, format!("{value} does not fit in 64 bits")))
    }

    fn address(&self, field: &'static str) -> Result<Address, DeploymentError> {
        let Scalar::String(text) = self.scalar(field)? else {
            return Err(self.invalid(field, "must be an address string, found a number"));
        };
        let address = Address::from_str(&text)
            .map_err(|e| self.invalid(field, format!("is not an address ({text:?}): {e}")))?;
        // Forge writes EIP-55 checksummed addresses; a mixed-case address with a wrong checksum
        // is a hand-edit gone wrong, while an all-lower or all-upper one carries no checksum.
        let hex = text.trim_start_matches("0x");
        let mixed_case = hex.chars().any(|c| c.is_ascii_lowercase())
            && hex.chars().any(|c| c.is_ascii_uppercase());
        if mixed_case && address.to_checksum(None) != format!("0x{hex}") {
            return Err(self.invalid(
                field,
                format!(
                    "has a bad EIP-55 checksum ({text:?}, expected {})",
                    address.to_checksum(None)
                ),
            ));
        }
        Ok(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file as `script/Deploy.s.sol` writes it: large amounts as strings, the rest as numbers.
    const SAMPLE: &str = r#"{
        "adjudicator": "0x0000000000000000000000000000000000000000",
        "chainId": 31337,
        "startBlock": 0,
        "deployer": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "issuanceRate": 474323552147416,
        "maxLockPeriods": 1825,
        "maxStake": "4000000000000000000000000",
        "minLockPeriods": 30,
        "minStake": "15000000000000000000000",
        "minWorkerPeriods": 2,
        "policyManager": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
        "secondsPerPeriod": 60,
        "stakingEscrow": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        "token": "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    }"#;

    fn sample_with(field: &str, value: &str) -> String {
        let mut map: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(SAMPLE).expect("sample parses");
        map.insert(
            field.to_owned(),
            serde_json::from_str(value).expect("value parses"),
        );
        serde_json::to_string(&map).expect("serializes")
    }

    fn invalid_field(json: &str) -> (&'static str, String) {
        match Deployment::from_json_str(json) {
            Err(DeploymentError::InvalidField { field, reason, .. }) => (field, reason),
            other => panic!("expected InvalidField, got {other:?}"),
        }
    }

    #[test]
    fn to_json_roundtrips() {
        let d = Deployment::from_json_str(&sample_with("startBlock", "7")).expect("valid");
        assert_eq!(Deployment::from_json_str(&d.to_json()).expect("valid"), d);
    }

    #[test]
    fn parses_forge_output() {
        let d = Deployment::from_json_str(SAMPLE).expect("valid");
        assert_eq!(d.chain_id, 31337);
        assert_eq!(d.start_block, 0);
        assert_eq!(d.seconds_per_period, 60);
        assert_eq!(d.period_duration(), Duration::from_secs(60));
        assert_eq!(
            d.min_stake,
            U256::from(15_000u64) * U256::from(10u64).pow(U256::from(18))
        );
        assert_eq!(
            d.max_stake,
            U256::from(4_000_000u64) * U256::from(10u64).pow(U256::from(18))
        );
        assert_eq!(d.issuance_rate, U256::from(474_323_552_147_416u64));
        assert_eq!(
            (d.min_lock_periods, d.max_lock_periods, d.min_worker_periods),
            (30, 1825, 2)
        );
        assert_eq!(
            d.token,
            "0x5FbDB2315678afecb367f032d93F642f64180aa3"
                .parse::<Address>()
                .expect("address")
        );
        assert!(!d.has_adjudicator());
    }

    #[test]
    fn large_numbers_keep_full_precision_as_json_numbers() {
        // 4e24 + 1 is not representable as an f64: a lossy parse would round it. (The JSON is
        // edited as text, since a round trip through `serde_json::Value` would round it too.)
        let json = SAMPLE.replace(
            r#""maxStake": "4000000000000000000000000""#,
            r#""maxStake": 4000000000000000000000001"#,
        );
        assert_ne!(json, SAMPLE);
        let d = Deployment::from_json_str(&json).expect("valid");
        assert_eq!(
            d.max_stake,
            U256::from_str_radix("4000000000000000000000001", 10).expect("number")
        );
    }

    #[test]
    fn accepts_small_numbers_as_strings_and_hex() {
        let d = Deployment::from_json_str(&sample_with("chainId", r#""0x7a69""#)).expect("valid");
        assert_eq!(d.chain_id, 31337);
        let d = Deployment::from_json_str(&sample_with("startBlock", r#""12""#)).expect("valid");
        assert_eq!(d.start_block, 12);
    }

    #[test]
    fn ignores_unknown_fields() {
        let d = Deployment::from_json_str(&sample_with("futureContract", r#""0x01""#));
        assert!(d.is_ok(), "{d:?}");
    }

    #[test]
    fn rejects_bad_numbers_naming_the_field() {
        for bad in [
            r#""""#,
            "-1",
            "1.5",
            "1e24",
            r#""12abc""#,
            "true",
            "null",
            "[1]",
        ] {
            let (field, reason) = invalid_field(&sample_with("minStake", bad));
            assert_eq!(field, "minStake", "{bad}: {reason}");
        }
        let (field, reason) = invalid_field(&sample_with("chainId", r#""18446744073709551616""#));
        assert_eq!(field, "chainId");
        assert!(reason.contains("64 bits"), "{reason}");
        let too_big = format!(r#""0x1{}""#, "0".repeat(64));
        let (field, reason) = invalid_field(&sample_with("maxStake", &too_big));
        assert_eq!(field, "maxStake");
        assert!(reason.contains("256 bits"), "{reason}");
    }

    #[test]
    fn rejects_bad_addresses_naming_the_field() {
        let (field, _) = invalid_field(&sample_with("token", r#""0x1234""#));
        assert_eq!(field, "token");
        let (field, _) = invalid_field(&sample_with("token", "1234"));
        assert_eq!(field, "token");
        // One letter's case flipped: the checksum catches it.
        let (field, reason) = invalid_field(&sample_with(
            "stakingEscrow",
            r#""0xE7f1725E7734CE288F8367e1Bb143E90bb3F0512""#,
        ));
        assert_eq!(field, "stakingEscrow");
        assert!(reason.contains("checksum"), "{reason}");
        // Without a checksum (all lower case) the address is accepted.
        let d = Deployment::from_json_str(&sample_with(
            "stakingEscrow",
            r#""0xe7f1725e7734ce288f8367e1bb143e90bb3f0512""#,
        ))
        .expect("valid");
        assert_eq!(
            d.staking_escrow,
            "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
                .parse::<Address>()
                .expect("address")
        );
    }

    #[test]
    fn missing_field_is_named() {
        let mut map: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(SAMPLE).expect("sample parses");
        map.remove("policyManager");
        let json = serde_json::to_string(&map).expect("serializes");
        let err = Deployment::from_json_str(&json).expect_err("missing field");
        assert!(matches!(
            err,
            DeploymentError::MissingField {
                field: "policyManager",
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "deployments file <inline JSON> has no `policyManager` field"
        );
    }

    #[test]
    fn load_errors_name_the_file() {
        let path = std::env::temp_dir().join(format!("kms-deployment-{}.json", std::process::id()));
        std::fs::write(&path, "[1, 2]").expect("write");
        let err = Deployment::load(&path).expect_err("not an object");
        std::fs::remove_file(&path).expect("remove");
        assert!(matches!(err, DeploymentError::Json { .. }));
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );

        let err = Deployment::load(&path).expect_err("gone");
        assert!(matches!(err, DeploymentError::Read { .. }));
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}
