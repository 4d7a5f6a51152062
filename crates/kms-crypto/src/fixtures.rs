//! Deterministic test vectors for the Adjudicator's Solidity tests:
//! `test/fixtures/adjudicator/cases.json`, written by the `gen-adjudicator-fixtures` binary and
//! checked by this crate's tests (the committed file must equal what [`generate`] produces).
//!
//! Each of [`SCENARIOS`] scenarios draws, from a ChaCha20 RNG seeded with the scenario's index,
//! Alice's delegating key, her kfrag signer, Bob's key, the node's worker key, a key that is not
//! the worker, a policy id and a message; encrypts the message, makes 2-of-3 kfrags signing both
//! keys, re-encrypts with one of them, and emits one case per entry of [`CASES`].
//!
//! Also for tests: [`synthetic_cfrag`] builds a cfrag as a node that knows its re-encryption key
//! would, possibly cheating on one equation, and [`high_x_point`] gives points whose x coordinate
//! is beyond `ecrecover`'s range.

use alloy::primitives::{hex, Address, Signature, U256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;
use k256::{NonZeroScalar, ProjectivePoint};
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use serde::Serialize;
use umbral_pre::{
    encrypt_with_rng, generate_kfrags_with_rng, reencrypt_with_rng, Capsule, CapsuleFrag,
    PublicKey, SecretKey, Signer,
};

use crate::answer::{policy_id_of, recover_answer_signer, sign_answer, AnswerContext, AnswerError};
use crate::curve::{compress, decompress, scalar_from_be};
use crate::evidence::{
    challenge, ChainFacts, Evidence, EvidenceError, Outcome, Verdict, WorkerBond,
};
use crate::umbral::{ethereum_address, kfrag_signature_message, layout, U_COMPRESSED};

/// The chain id the answers are signed for (anvil's and forge's default).
pub const CHAIN_ID: u64 = 31337;
/// The address forge gives the test contract that deploys the contracts (`DEFAULT_TEST_CONTRACT`).
pub const FORGE_TEST_CONTRACT: Address =
    alloy::primitives::address!("7FA9385bE102ac3EAc297483Dd6233D62b3e1496");
/// The period the answers are given in: `test/utils/Base.sol`'s start time (1,700,000,000 s) in
/// days, the period in which the Solidity tests bond the workers.
pub const PERIOD: u64 = 1_700_000_000 / 86_400;
/// The evidence window of `test/utils/Base.sol`.
pub const EVIDENCE_WINDOW: u64 = 14;

/// The Adjudicator the answers name: `test/utils/Base.sol` deploys the token, the escrow, the
/// policy manager and then the Adjudicator, so it is the test contract's fourth creation.
pub fn adjudicator() -> Address {
    FORGE_TEST_CONTRACT.create(4)
}
/// Number of scenarios (independent sets of keys, capsule and cfrag).
pub const SCENARIOS: u64 = 8;
/// The RNG seed of scenario `i` is `SEED + i`.
pub const SEED: u64 = 0x4b4d_535f_4144_4a00;
/// Where the fixtures live, relative to the repository root.
pub const FIXTURE_PATH: &str = "test/fixtures/adjudicator/cases.json";
/// The command that rewrites [`FIXTURE_PATH`].
pub const REGENERATE: &str = "cargo run -p kms-crypto --bin gen-adjudicator-fixtures";

/// What a case does to the scenario's valid answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Nothing: the node's real cfrag, signed by the worker.
    None,
    /// Replaces a 33-byte point of the cfrag by another valid point; the worker re-signs.
    Point(CfragPoint),
    /// Replaces `z` by another nonzero scalar; the worker re-signs.
    Z,
    /// Replaces `E1` but keeps the worker's signature of the original answer.
    PointUnsigned,
    /// Replaces the kfrag id by other random bytes; the worker re-signs.
    KfragId,
    /// Replaces the kfrag signature's `s` by another nonzero scalar; the worker re-signs.
    KfragSignatureS,
    /// Flips `kfragSignatureV` in the valid evidence.
    KfragSignatureV,
    /// The valid answer, signed by a key that is not the worker.
    OtherSigner,
}

/// The outcome of every slashable case. Each tampered point is hashed into `h`, and `z` is
/// in no hash, so a tampered case fails the first equation already: `z*E != h*E1 + E2`.
const WRONG: Outcome = Outcome::Slash(Verdict::WrongE);

/// One kind of case: `(name suffix, field, expected outcome, tampering)`.
pub type CaseKind = (&'static str, &'static str, Outcome, Tamper);

/// The cases emitted for every scenario, in order.
pub const CASES: [CaseKind; 14] = [
    ("valid", "none", Outcome::Correct, Tamper::None),
    ("e1", "e1", WRONG, Tamper::Point(CfragPoint::E1)),
    ("v1", "v1", WRONG, Tamper::Point(CfragPoint::V1)),
    ("e2", "e2", WRONG, Tamper::Point(CfragPoint::E2)),
    ("v2", "v2", WRONG, Tamper::Point(CfragPoint::V2)),
    ("u2", "u2", WRONG, Tamper::Point(CfragPoint::U2)),
    ("z", "z", WRONG, Tamper::Z),
    (
        "e1-unsigned",
        "e1",
        Outcome::NotBondedInPeriod,
        Tamper::PointUnsigned,
    ),
    (
        "u1",
        "u1",
        Outcome::KfragSignature,
        Tamper::Point(CfragPoint::U1),
    ),
    (
        "kfragId",
        "kfragId",
        Outcome::KfragSignature,
        Tamper::KfragId,
    ),
    (
        "precursor",
        "precursor",
        Outcome::KfragSignature,
        Tamper::Point(CfragPoint::Precursor),
    ),
    (
        "kfragSignatureS",
        "kfragSignatureS",
        Outcome::KfragSignature,
        Tamper::KfragSignatureS,
    ),
    (
        "kfragSignatureV",
        "kfragSignatureV",
        Outcome::KfragSignature,
        Tamper::KfragSignatureV,
    ),
    (
        "other-signer",
        "workerSignature",
        Outcome::NotBondedInPeriod,
        Tamper::OtherSigner,
    ),
];

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// umbral-pre failed.
    #[error("umbral: {0}")]
    Umbral(String),
    /// A key could not be made.
    #[error("key: {0}")]
    Key(String),
    /// Building the evidence failed.
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// Signing or recovering the answer failed.
    #[error(transparent)]
    Answer(#[from] AnswerError),
    /// A case does not produce the outcome it is meant to (a bug, or an astronomically unlucky
    /// draw).
    #[error("case {name}: expected {expected:?}, the model says {got:?}")]
    Unexpected {
        /// The case.
        name: String,
        /// Its intended outcome.
        expected: Outcome,
        /// What [`Evidence::outcome`] says.
        got: Outcome,
    },
    /// Serializing a case failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// The keys and the honest answer of a scenario, for the tests.
pub struct Scenario {
    /// The capsule.
    pub capsule: Capsule,
    /// The node's real (verified) cfrag.
    pub cfrag: CapsuleFrag,
    /// Alice's delegating key.
    pub delegating_pk: PublicKey,
    /// Bob's key.
    pub receiving_pk: PublicKey,
    /// Alice's kfrag signer's key.
    pub verifying_pk: PublicKey,
    /// Its address (the policy's `kfragSigner`).
    pub kfrag_signer: Address,
    /// The node's bonded worker.
    pub worker: Address,
    /// The policy's creator (the Solidity test creates the policy from this address).
    pub creator: Address,
    /// The creator's salt: `policy_id == policy_id_of(creator, salt)`.
    pub salt: [u8; 16],
    /// The policy id.
    pub policy_id: [u8; 16],
    /// The staker the answers name (the Solidity test stakes from this address).
    pub staker: Address,
}

/// One test vector.
pub struct Case {
    /// `s<scenario>-<kind>`.
    pub name: String,
    /// Index into [`Fixtures::scenarios`].
    pub scenario: usize,
    /// What the Adjudicator must decide.
    pub expect: Outcome,
    /// The tampered field (`none` for the valid case).
    pub field: &'static str,
    /// The policy's `kfragSigner`.
    pub kfrag_signer: Address,
    /// The worker bonded to the node's staker.
    pub worker: Address,
    /// The address the answer signature recovers.
    pub signer: Address,
    /// The evidence.
    pub evidence: Evidence,
}

/// All the vectors.
pub struct Fixtures {
    /// [`CHAIN_ID`].
    pub chain_id: u64,
    /// [`adjudicator`].
    pub adjudicator: Address,
    /// [`PERIOD`].
    pub period: u64,
    /// The scenarios, by index.
    pub scenarios: Vec<Scenario>,
    /// The cases, scenario by scenario in [`CASES`] order.
    pub cases: Vec<Case>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CaseJson<'a> {
    name: &'a str,
    scenario: usize,
    expect: &'a str,
    field: &'a str,
    policy_id: String,
    creator: String,
    salt: String,
    staker: String,
    kfrag_signer: String,
    worker: String,
    signer: String,
    evidence: String,
}

impl Fixtures {
    /// The JSON file: one case per line.
    pub fn to_json(&self) -> Result<String, FixtureError> {
        let mut lines = Vec::with_capacity(self.cases.len());
        for case in &self.cases {
            lines.push(serde_json::to_string(&CaseJson {
                name: &case.name,
                scenario: case.scenario,
                expect: case.expect.as_str(),
                field: case.field,
                policy_id: hex::encode_prefixed(case.evidence.policyId),
                creator: hex::encode_prefixed(self.scenarios[case.scenario].creator),
                salt: hex::encode_prefixed(self.scenarios[case.scenario].salt),
                staker: hex::encode_prefixed(case.evidence.staker),
                kfrag_signer: hex::encode_prefixed(case.kfrag_signer),
                worker: hex::encode_prefixed(case.worker),
                signer: hex::encode_prefixed(case.signer),
                evidence: hex::encode_prefixed(case.evidence.abi_encode()),
            })?);
        }
        Ok(format!(
            "{{\n  \"chainId\": {},\n  \"adjudicator\": \"{}\",\n  \"period\": {},\n  \"count\": {},\n  \"cases\": [\n    {}\n  ]\n}}\n",
            self.chain_id,
            hex::encode_prefixed(self.adjudicator),
            self.period,
            self.cases.len(),
            lines.join(",\n    ")
        ))
    }
}

fn random_point(rng: &mut ChaCha20Rng, not: &[u8]) -> Result<[u8; 33], FixtureError> {
    loop {
        let k = NonZeroScalar::random(&mut *rng);
        let point = compress(&(ProjectivePoint::GENERATOR * *k))
            .ok_or_else(|| FixtureError::Key("identity point".into()))?;
        if point.as_slice() != not {
            return Ok(point);
        }
    }
}

fn random_scalar(rng: &mut ChaCha20Rng, not: &[u8]) -> [u8; 32] {
    loop {
        let k: [u8; 32] = NonZeroScalar::random(&mut *rng).to_bytes().into();
        if k.as_slice() != not {
            return k;
        }
    }
}

fn eth_signer(rng: &mut ChaCha20Rng) -> Result<PrivateKeySigner, FixtureError> {
    let sk = SecretKey::random_with_rng(rng);
    PrivateKeySigner::from_slice(sk.to_be_bytes().as_secret())
        .map_err(|err| FixtureError::Key(err.to_string()))
}

/// A 33-byte point of the cfrag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CfragPoint {
    /// `E1`.
    E1,
    /// `V1`.
    V1,
    /// `E2`.
    E2,
    /// `V2`.
    V2,
    /// `U1` (under the kfrag signature).
    U1,
    /// `U2`.
    U2,
    /// The precursor (under the kfrag signature).
    Precursor,
}

impl CfragPoint {
    /// Its bytes in `CapsuleFrag::to_bytes_simple`.
    pub fn range(self) -> core::ops::Range<usize> {
        match self {
            Self::E1 => layout::E1,
            Self::V1 => layout::V1,
            Self::E2 => layout::E2,
            Self::V2 => layout::V2,
            Self::U1 => layout::U1,
            Self::U2 => layout::U2,
            Self::Precursor => layout::PRECURSOR,
        }
    }
}

/// Generates every scenario and case. Deterministic.
pub fn generate() -> Result<Fixtures, FixtureError> {
    let mut scenarios = Vec::new();
    let mut cases = Vec::new();
    for index in 0..SCENARIOS {
        let mut rng = ChaCha20Rng::seed_from_u64(SEED + index);
        let alice = SecretKey::random_with_rng(&mut rng);
        let kfrag_signer = Signer::new(SecretKey::random_with_rng(&mut rng));
        let bob = SecretKey::random_with_rng(&mut rng);
        let worker = eth_signer(&mut rng)?;
        let other = eth_signer(&mut rng)?;
        let creator = eth_signer(&mut rng)?.address();
        let staker = eth_signer(&mut rng)?.address();
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let policy_id = policy_id_of(creator, salt);
        let mut message = [0u8; 32];
        rng.fill_bytes(&mut message);

        let (delegating_pk, receiving_pk) = (alice.public_key(), bob.public_key());
        let verifying_pk = kfrag_signer.verifying_key();
        let (capsule, _ciphertext) = encrypt_with_rng(&mut rng, &delegating_pk, &message)
            .map_err(|err| FixtureError::Umbral(err.to_string()))?;
        let kfrags = generate_kfrags_with_rng(
            &mut rng,
            &alice,
            &receiving_pk,
            &kfrag_signer,
            2,
            3,
            true,
            true,
        );
        let kfrag = kfrags
            .get(index as usize % kfrags.len())
            .ok_or_else(|| FixtureError::Umbral("no kfrag".into()))?;
        let cfrag = reencrypt_with_rng(&mut rng, &capsule, kfrag.clone()).unverify();

        let scenario = Scenario {
            capsule,
            cfrag,
            delegating_pk,
            receiving_pk,
            verifying_pk,
            kfrag_signer: ethereum_address(&verifying_pk),
            worker: worker.address(),
            creator,
            salt,
            policy_id,
            staker,
        };
        let context = AnswerContext {
            chain_id: CHAIN_ID,
            adjudicator: adjudicator(),
            staker,
            period: PERIOD,
            policy_id,
        };
        let facts = ChainFacts {
            chain_id: CHAIN_ID,
            adjudicator: adjudicator(),
            current_period: PERIOD,
            evidence_window: EVIDENCE_WINDOW,
            kfrag_signer: scenario.kfrag_signer,
            worker: scenario.worker,
            bond: WorkerBond::open(staker, PERIOD),
        };
        let capsule_simple = scenario.capsule.to_bytes_simple();
        let valid = scenario.cfrag.to_bytes_simple();
        let valid_signature = sign_answer(&worker, &context, &capsule_simple, &valid)?;

        for (suffix, field, expect, tamper) in CASES {
            let name = format!("s{index}-{suffix}");
            let mut cfrag_bytes = valid.to_vec();
            let mut signature: Option<Signature> = None;
            let mut flip_v = false;
            match tamper {
                Tamper::None => {}
                Tamper::Point(point) => {
                    let range = point.range();
                    let replacement = random_point(&mut rng, &valid[range.clone()])?;
                    cfrag_bytes[range].copy_from_slice(&replacement);
                }
                Tamper::PointUnsigned => {
                    let replacement = random_point(&mut rng, &valid[layout::E1])?;
                    cfrag_bytes[layout::E1].copy_from_slice(&replacement);
                    signature = Some(valid_signature);
                }
                Tamper::Z => {
                    let replacement = random_scalar(&mut rng, &valid[layout::Z]);
                    cfrag_bytes[layout::Z].copy_from_slice(&replacement);
                }
                Tamper::KfragId => loop {
                    let mut id = [0u8; 32];
                    rng.fill_bytes(&mut id);
                    if id.as_slice() != &valid[layout::KFRAG_ID] {
                        cfrag_bytes[layout::KFRAG_ID].copy_from_slice(&id);
                        break;
                    }
                },
                Tamper::KfragSignatureS => {
                    let replacement = random_scalar(&mut rng, &valid[layout::KFRAG_SIGNATURE_S]);
                    cfrag_bytes[layout::KFRAG_SIGNATURE_S].copy_from_slice(&replacement);
                }
                Tamper::KfragSignatureV => flip_v = true,
                Tamper::OtherSigner => {
                    signature = Some(sign_answer(&other, &context, &capsule_simple, &valid)?);
                }
            }
            let signature = match signature {
                Some(signature) => signature,
                None => sign_answer(&worker, &context, &capsule_simple, &cfrag_bytes)?,
            };
            let signature = signature.as_bytes();
            let mut evidence = Evidence::from_parts(
                &capsule_simple,
                &cfrag_bytes,
                &scenario.delegating_pk,
                &scenario.receiving_pk,
                scenario.kfrag_signer,
                &context,
                &signature,
            )?;
            if flip_v {
                evidence.kfragSignatureV = !evidence.kfragSignatureV;
            }
            let signer =
                recover_answer_signer(&context, &capsule_simple, &cfrag_bytes, &signature)?;
            let got = evidence.outcome(&facts);
            if got != expect {
                return Err(FixtureError::Unexpected {
                    name,
                    expected: expect,
                    got,
                });
            }
            cases.push(Case {
                name,
                scenario: index as usize,
                expect,
                field,
                kfrag_signer: scenario.kfrag_signer,
                worker: scenario.worker,
                signer,
                evidence,
            });
        }
        scenarios.push(scenario);
    }
    Ok(Fixtures {
        chain_id: CHAIN_ID,
        adjudicator: adjudicator(),
        period: PERIOD,
        scenarios,
        cases,
    })
}

/// What a node that builds its own cfrag (see [`synthetic_cfrag`]) gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cheat {
    /// Nothing: a correct cfrag (verdict `Correct`).
    None,
    /// `E1 = rk' * E` with another key `rk'`: only `z*E == h*E1 + E2` fails (`WrongE`).
    E1,
    /// `V1 = rk' * V`: only `z*V == h*V1 + V2` fails (`WrongV`).
    V1,
    /// `U1 = rk' * U`, signed by the kfrag signer all the same: only `z*U == h*U1 + U2` fails
    /// (`WrongU`).
    U1,
}

impl Cheat {
    /// Every kind, [`Cheat::None`] first.
    pub const ALL: [Cheat; 4] = [Self::None, Self::E1, Self::V1, Self::U1];

    /// The Adjudicator's verdict on a cfrag built with this cheat.
    pub fn verdict(self) -> Verdict {
        match self {
            Self::None => Verdict::Correct,
            Self::E1 => Verdict::WrongE,
            Self::V1 => Verdict::WrongV,
            Self::U1 => Verdict::WrongU,
        }
    }
}

/// A cfrag (`to_bytes_simple`, 359 bytes) built from scratch with the arithmetic of umbral's
/// re-encryption and proof, by a node that knows its re-encryption key: with `rk` and the proof
/// nonce `t` drawn from `rng`, `E1 = rk*E, V1 = rk*V, U1 = rk*U, E2 = t*E, V2 = t*V, U2 = t*U,
/// z = rk*h + t`, a random kfrag id and precursor, and a kfrag signature by `kfrag_signer` over
/// them and the two keys (what Alice's `generate_kfrags(.., true, true)` signs).
///
/// umbral's public API does not expose a kfrag's key, so the fixtures built from real kfrags can
/// only tamper with bytes, which changes `h` and fails the first equation. Knowing `rk`, `cheat`
/// makes exactly one equation fail instead (or none), which tests the verdicts `WrongV` and
/// `WrongU`. With [`Cheat::None`] the result passes `CapsuleFrag::verify`.
pub fn synthetic_cfrag(
    rng: &mut (impl CryptoRng + RngCore),
    capsule_simple: &[u8],
    delegating_pk: &PublicKey,
    receiving_pk: &PublicKey,
    kfrag_signer: &Signer,
    cheat: Cheat,
) -> Result<Vec<u8>, FixtureError> {
    use layout::*;
    if capsule_simple.len() != CAPSULE_LEN {
        return Err(EvidenceError::Bytes(crate::umbral::UmbralError::Length {
            what: "capsule",
            expected: CAPSULE_LEN,
            got: capsule_simple.len(),
        })
        .into());
    }
    let point = |bytes: &[u8], name| {
        decompress(bytes)
            .map(ProjectivePoint::from)
            .ok_or(EvidenceError::Point(name))
    };
    let e = point(&capsule_simple[E], "E")?;
    let v = point(&capsule_simple[V], "V")?;
    let u = point(&U_COMPRESSED, "U")?;
    let rk = *NonZeroScalar::random(&mut *rng);
    let t = *NonZeroScalar::random(&mut *rng);
    let other = *NonZeroScalar::random(&mut *rng);
    let key = |wrong: bool| if wrong { other } else { rk };
    let mut cfrag = vec![0u8; CFRAG_LEN];
    let mut put =
        |range: core::ops::Range<usize>, p: ProjectivePoint| -> Result<(), FixtureError> {
            let bytes = compress(&p).ok_or_else(|| FixtureError::Key("identity point".into()))?;
            cfrag[range].copy_from_slice(&bytes);
            Ok(())
        };
    put(E1, e * key(cheat == Cheat::E1))?;
    put(V1, v * key(cheat == Cheat::V1))?;
    put(U1, u * key(cheat == Cheat::U1))?;
    put(E2, e * t)?;
    put(V2, v * t)?;
    put(U2, u * t)?;
    put(
        PRECURSOR,
        ProjectivePoint::GENERATOR * *NonZeroScalar::random(&mut *rng),
    )?;
    rng.fill_bytes(&mut cfrag[KFRAG_ID]);

    let h = challenge(capsule_simple, &cfrag)?;
    let h = scalar_from_be(&h.to_be_bytes::<32>())
        .ok_or_else(|| FixtureError::Key("h is not below the order".into()))?;
    let z = rk * h + t;
    cfrag[Z].copy_from_slice(&z.to_bytes());

    let message = kfrag_signature_message(
        &cfrag[KFRAG_ID],
        &cfrag[U1],
        &cfrag[PRECURSOR],
        &delegating_pk.to_compressed_bytes(),
        &receiving_pk.to_compressed_bytes(),
    );
    let signature = kfrag_signer.sign_with_rng(rng, &message).to_be_bytes();
    cfrag[KFRAG_SIGNATURE_R.start..KFRAG_SIGNATURE_S.end].copy_from_slice(&signature);
    Ok(cfrag)
}

/// The `index`-th compressed point (counting from 0) whose x coordinate is at least the group
/// order `n` (and below the field prime `p`, as every x is): `0x02 || x` for the even y, `0x03`
/// with `odd`. About half of the ~2^128 such x have a point. `ecrecover` refuses an `r` that large,
/// so the contract cannot check a product with such a point (verdict `UncheckablePoint` for `E1`
/// or `V1`; a rejected `product` for `E` or `V`).
pub fn high_x_point(index: usize, odd: bool) -> [u8; 33] {
    let mut found = 0;
    let mut x = crate::secp256k1::N;
    loop {
        let mut bytes = [0u8; 33];
        bytes[0] = if odd { 0x03 } else { 0x02 };
        bytes[1..].copy_from_slice(&x.to_be_bytes::<32>());
        if decompress(&bytes).is_some() {
            if found == index {
                return bytes;
            }
            found += 1;
        }
        x += U256::from(1);
    }
}
