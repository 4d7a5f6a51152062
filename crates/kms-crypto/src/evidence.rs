//! The evidence an investigator submits to `IAdjudicator.evaluateCFrag`, built from the raw
//! `to_bytes_simple` encodings of the capsule and the cfrag.
//!
//! Everything is computed from the bytes, never from umbral's checked types, so that evidence
//! can be built for a cfrag that fails `CapsuleFrag::verify` (that is the point of it), and for
//! byte strings an investigator tampered with (the fixtures do, to test that the contract rejects
//! them). [`Evidence::outcome`] is a Rust model of the contract's decision.

use alloy::primitives::{Address, FixedBytes, B256, U256};
use alloy::sol;
use k256::elliptic_curve::ops::Reduce;
use k256::{FieldBytes, ProjectivePoint, Scalar};
use sha2::{Digest, Sha256};
use umbral_pre::{Capsule, CapsuleFrag, PublicKey};

use crate::answer::{recover_answer_signer, AnswerContext, SIGNATURE_LEN};
use crate::curve::{coordinates_u256, decompress, ecrecover_address, nonzero_scalar_from_digest};
use crate::secp256k1::{is_on_curve, is_product, is_sum, N};
use crate::umbral::{check_len, kfrag_signature_message, layout, UmbralError, U_COMPRESSED};

sol! {
    /// Mirror of `contracts/interfaces/IAdjudicator.sol` (same structs, same field order and
    /// types), so that `abi_encode` here is Solidity's `abi.encode`.
    #[derive(Debug, PartialEq, Eq)]
    interface IAdjudicator {
        /// An affine secp256k1 point.
        struct Point {
            uint256 x;
            uint256 y;
        }

        /// What an investigator submits: the node's signed answer and the data to check it.
        struct Evidence {
            bytes16 policyId;
            address staker;
            uint256 period;
            bytes capsule;
            bytes cfrag;
            bytes delegatingKey;
            bytes receivingKey;
            uint256[8] ys;
            Point ez;
            Point e1h;
            Point vz;
            Point v1h;
            Point uz;
            Point u1h;
            bool kfragSignatureV;
            bytes workerSignature;
        }

        /// Evaluates `evidence` once: slashes the node if its re-encryption is wrong.
        function evaluateCFrag(Evidence calldata evidence) external;

        /// `evaluateCFrag`, paying the investigator reward to `beneficiary`.
        function evaluateCFragFor(Evidence calldata evidence, address beneficiary) external;
    }
}

pub use IAdjudicator::{evaluateCFragCall, evaluateCFragForCall, Evidence, Point};

/// `keccak256(capsule || cfrag)` of the simple encodings: the Adjudicator's key for a piece of
/// evidence (`evaluated`, and the commitments).
pub fn evidence_hash(capsule_simple: &[u8], cfrag_simple: &[u8]) -> B256 {
    alloy::primitives::keccak256([capsule_simple, cfrag_simple].concat())
}

/// `Adjudicator.evidenceCommitment(evidenceHash, investigator)`:
/// `keccak256(abi.encode(evidenceHash, investigator))`, committed before `evaluateCFrag`.
pub fn evidence_commitment(evidence_hash: B256, investigator: Address) -> B256 {
    use alloy::sol_types::SolValue;
    alloy::primitives::keccak256((evidence_hash, investigator).abi_encode())
}

/// `Adjudicator.evidenceCommitmentFor(evidenceHash, submitter, beneficiary)`:
/// `keccak256(abi.encode(evidenceHash, submitter, beneficiary))`, committed by `submitter` before
/// it sends `evaluateCFragFor(evidence, beneficiary)`.
pub fn evidence_commitment_for(
    evidence_hash: B256,
    submitter: Address,
    beneficiary: Address,
) -> B256 {
    use alloy::sol_types::SolValue;
    alloy::primitives::keccak256((evidence_hash, submitter, beneficiary).abi_encode())
}

/// Length of a compressed public key.
pub const KEY_LEN: usize = 33;

/// umbral's `Parameters::u`, affine: the contract's `U_X` and `U_Y`.
const U_X: U256 = U256::from_be_bytes(alloy::primitives::hex!(
    "079390d0fbe220fc34aab8ecbf49098098036820fadb98c03143e55db8ec73cd"
));
const U_Y: U256 = U256::from_be_bytes(alloy::primitives::hex!(
    "7ea50b219da86a70e8489413e4b9388afb63ac6f26e5ec2cfdd983b83f0e84e7"
));

/// Errors building evidence.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The capsule or cfrag does not have its `to_bytes_simple` length.
    #[error(transparent)]
    Bytes(#[from] UmbralError),
    /// A 33-byte field is not a compressed point on secp256k1.
    #[error("{0} is not a compressed secp256k1 point")]
    Point(&'static str),
    /// The worker signature is not 65 bytes.
    #[error("worker signature: expected {SIGNATURE_LEN} bytes, got {0}")]
    SignatureLength(usize),
}

/// Why the Adjudicator judged a cfrag: mirror of the contract's `Adjudicator.Verdict`, in its
/// order, so that `verdict as u8` is the `uint8` of the `CFragEvaluated` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Verdict {
    /// The re-encryption is correct: nothing to slash.
    Correct = 0,
    /// `z*E != h*E1 + E2`.
    WrongE = 1,
    /// `z*V != h*V1 + V2` (the first equation holds).
    WrongV = 2,
    /// `z*U != h*U1 + U2` (the first two hold).
    WrongU = 3,
    /// `z` is zero or not below the group order.
    InvalidZ = 4,
    /// `E1` or `V1` has an x coordinate not below the group order, which the contract's product
    /// check (`ecrecover`) cannot take; an honest node produces one with probability ~2^-128.
    UncheckablePoint = 5,
}

impl Verdict {
    /// Every verdict, in the contract's order.
    pub const ALL: [Verdict; 6] = [
        Self::Correct,
        Self::WrongE,
        Self::WrongV,
        Self::WrongU,
        Self::InvalidZ,
        Self::UncheckablePoint,
    ];

    /// The verdict with this `uint8` value, if any.
    pub fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.get(usize::from(value)).copied()
    }

    /// The name of the Solidity enum member.
    pub fn name(self) -> &'static str {
        match self {
            Self::Correct => "Correct",
            Self::WrongE => "WrongE",
            Self::WrongV => "WrongV",
            Self::WrongU => "WrongU",
            Self::InvalidZ => "InvalidZ",
            Self::UncheckablePoint => "UncheckablePoint",
        }
    }
}

/// What the Adjudicator decides about a piece of evidence (see [`Evidence::outcome`]): a verdict
/// recorded ([`Outcome::Correct`] or [`Outcome::Slash`]), or the custom error the call reverts
/// with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything checks out and the re-encryption is correct: verdict `Correct`, nothing to slash.
    Correct,
    /// Everything checks out and the re-encryption is wrong: the node is slashed, with this
    /// verdict (never [`Verdict::Correct`]).
    Slash(Verdict),
    /// The policy has no `kfragSigner` (the contract's `Adjudicator_PolicyNotFound`).
    PolicyNotFound,
    /// The kfrag signature does not recover the policy's kfrag signer
    /// (`Adjudicator_KfragSignatureMismatch`).
    KfragSignature,
    /// OpenZeppelin's `ECDSA.tryRecover` refuses the worker signature: not 65 bytes, `s` above
    /// `n / 2`, `v` not 27 or 28, or nothing to recover (`Adjudicator_InvalidWorkerSignature`).
    InvalidWorkerSignature,
    /// The answer's period has not started (`Adjudicator_PeriodInFuture`).
    PeriodInFuture,
    /// The answer's period is more than the evidence window old (`Adjudicator_EvidenceExpired`).
    Expired,
    /// The answer's signer was not bonded to the staker it names in the period it names
    /// (`Adjudicator_WorkerNotBondedInPeriod`).
    NotBondedInPeriod,
    /// `Adjudicator_MalformedEvidence(what)`, with the contract's `what`: `capsule length`,
    /// `cfrag length`, `key length`, `point` or `product`.
    Malformed(&'static str),
}

impl Outcome {
    /// The name the fixtures use (`expect`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Correct => "correct",
            Self::Slash(_) => "slash",
            Self::PolicyNotFound => "policy-not-found",
            Self::KfragSignature => "kfrag-signature",
            Self::InvalidWorkerSignature => "invalid-worker-signature",
            Self::PeriodInFuture => "period-in-future",
            Self::Expired => "expired",
            Self::NotBondedInPeriod => "not-bonded",
            Self::Malformed(_) => "malformed",
        }
    }

    /// The verdict the contract records, or `None` if the call reverts.
    pub fn verdict(&self) -> Option<Verdict> {
        match self {
            Self::Correct => Some(Verdict::Correct),
            Self::Slash(verdict) => Some(*verdict),
            _ => None,
        }
    }
}

impl From<Verdict> for Outcome {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Correct => Self::Correct,
            wrong => Self::Slash(wrong),
        }
    }
}

/// A worker key's bond, as `StakingEscrow.workerBond` answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerBond {
    /// The staker the key was last bonded to (zero: never bonded).
    pub staker: Address,
    /// The period the bond started.
    pub first_period: u64,
    /// The period the bond ended (`u32::MAX` while in force).
    pub last_period: u64,
}

impl WorkerBond {
    /// A bond to `staker` from `first_period`, still in force.
    pub fn open(staker: Address, first_period: u64) -> Self {
        Self {
            staker,
            first_period,
            last_period: u64::from(u32::MAX),
        }
    }

    /// Whether the answer of `staker` in `period` is this bond's.
    pub fn covers(&self, staker: Address, period: u64) -> bool {
        self.staker == staker && self.first_period <= period && period <= self.last_period
    }
}

/// What the Adjudicator reads from the chain when it judges evidence: the inputs of the model
/// [`Evidence::outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainFacts {
    /// The chain id.
    pub chain_id: u64,
    /// The Adjudicator's address (the answers name it).
    pub adjudicator: Address,
    /// The period of the block the evidence is evaluated in.
    pub current_period: u64,
    /// `evidenceWindow`, in periods.
    pub evidence_window: u64,
    /// `PolicyManager.kfragSignerOf(policyId)`: zero for an unknown policy.
    pub kfrag_signer: Address,
    /// The worker key whose bond is known; any other signer has never been bonded.
    pub worker: Address,
    /// That worker's bond.
    pub bond: WorkerBond,
}

/// The points and scalars of a capsule and a cfrag, parsed from their simple encodings.
struct Parsed {
    /// E, V, E1, V1, E2, V2, U1, U2: the order of `Evidence::ys`.
    points: [ProjectivePoint; 8],
    u: ProjectivePoint,
    /// `z` reduced modulo the group order (the contract judges a `z` not below it `InvalidZ`).
    z: Scalar,
    h: Scalar,
}

impl Parsed {
    fn e(&self) -> ProjectivePoint {
        self.points[0]
    }
    fn v(&self) -> ProjectivePoint {
        self.points[1]
    }
    fn e1(&self) -> ProjectivePoint {
        self.points[2]
    }
    fn v1(&self) -> ProjectivePoint {
        self.points[3]
    }
    fn e2(&self) -> ProjectivePoint {
        self.points[4]
    }
    fn v2(&self) -> ProjectivePoint {
        self.points[5]
    }
    fn u1(&self) -> ProjectivePoint {
        self.points[6]
    }
    fn u2(&self) -> ProjectivePoint {
        self.points[7]
    }

    /// The six products of umbral's `ReencryptionEvidence`: `z*E, h*E1, z*V, h*V1, z*U, h*U1`.
    fn products(&self) -> [ProjectivePoint; 6] {
        [
            self.e() * self.z,
            self.e1() * self.h,
            self.v() * self.z,
            self.v1() * self.h,
            self.u * self.z,
            self.u1() * self.h,
        ]
    }

    /// `z*E == h*E1 + E2`, `z*V == h*V1 + V2`, `z*U == h*U1 + U2`.
    fn equations(&self) -> [bool; 3] {
        let [ez, e1h, vz, v1h, uz, u1h] = self.products();
        [
            ez == e1h + self.e2(),
            vz == v1h + self.v2(),
            uz == u1h + self.u2(),
        ]
    }
}

/// The compressed points, named, in the order of `Evidence::ys`.
fn point_fields<'a>(capsule: &'a [u8], cfrag: &'a [u8]) -> [(&'static str, &'a [u8]); 8] {
    use layout::*;
    [
        ("E", &capsule[E]),
        ("V", &capsule[V]),
        ("E1", &cfrag[E1]),
        ("V1", &cfrag[V1]),
        ("E2", &cfrag[E2]),
        ("V2", &cfrag[V2]),
        ("U1", &cfrag[U1]),
        ("U2", &cfrag[U2]),
    ]
}

fn parse(capsule_simple: &[u8], cfrag_simple: &[u8]) -> Result<Parsed, EvidenceError> {
    check_len("capsule", capsule_simple, layout::CAPSULE_LEN)?;
    check_len("cfrag", cfrag_simple, layout::CFRAG_LEN)?;
    let fields = point_fields(capsule_simple, cfrag_simple);
    let mut points = [ProjectivePoint::IDENTITY; 8];
    for (point, (name, bytes)) in points.iter_mut().zip(fields) {
        *point = decompress(bytes).ok_or(EvidenceError::Point(name))?.into();
    }
    let u = decompress(&U_COMPRESSED)
        .ok_or(EvidenceError::Point("U"))?
        .into();
    let mut z_bytes = [0u8; 32];
    z_bytes.copy_from_slice(&cfrag_simple[layout::Z]);
    let z = <Scalar as Reduce<k256::U256>>::reduce_bytes(&FieldBytes::from(z_bytes));
    let h = challenge_scalar(capsule_simple, cfrag_simple);
    Ok(Parsed { points, u, z, h })
}

/// umbral's `hash_to_cfrag_verification` on the raw bytes (lengths already checked).
fn challenge_scalar(capsule: &[u8], cfrag: &[u8]) -> Scalar {
    use layout::*;
    const DST: &[u8] = b"CFRAG_VERIFICATION";
    let mut hasher = Sha256::new();
    hasher.update((DST.len() as u32).to_be_bytes());
    hasher.update(DST);
    for bytes in [
        &capsule[E],
        &cfrag[E1],
        &cfrag[E2],
        &capsule[V],
        &cfrag[V1],
        &cfrag[V2],
        &U_COMPRESSED[..],
        &cfrag[U1],
        &cfrag[U2],
    ] {
        hasher.update(bytes);
    }
    nonzero_scalar_from_digest(&hasher.finalize().into())
}

fn scalar_u256(scalar: &Scalar) -> U256 {
    U256::from_be_slice(&scalar.to_bytes())
}

/// The challenge `h` of the re-encryption proof, as the contract computes it:
/// `sha256(0x00000012 || "CFRAG_VERIFICATION" || E || E1 || E2 || V || V1 || V2 || U || U1 || U2)`
/// as a big-endian integer, modulo `n - 1`, plus 1.
pub fn challenge(capsule_simple: &[u8], cfrag_simple: &[u8]) -> Result<U256, EvidenceError> {
    check_len("capsule", capsule_simple, layout::CAPSULE_LEN)?;
    check_len("cfrag", cfrag_simple, layout::CFRAG_LEN)?;
    Ok(scalar_u256(&challenge_scalar(capsule_simple, cfrag_simple)))
}

/// The three equations of the re-encryption proof, `[z*E == h*E1 + E2, z*V == h*V1 + V2,
/// z*U == h*U1 + U2]`, with k256's group law: all true for a correct re-encryption. A `z` not
/// below the group order is taken modulo it here (the contract judges it `InvalidZ` without
/// looking at the equations).
pub fn reencryption_equations(
    capsule_simple: &[u8],
    cfrag_simple: &[u8],
) -> Result<[bool; 3], EvidenceError> {
    Ok(parse(capsule_simple, cfrag_simple)?.equations())
}

/// `sha256` of the kfrag signature message the contract rebuilds from the cfrag and the two keys
/// (see [`kfrag_signature_message`]): the prehash the kfrag signature signs.
pub fn kfrag_message_hash(
    cfrag_simple: &[u8],
    delegating_key: &[u8],
    receiving_key: &[u8],
) -> Result<B256, EvidenceError> {
    check_len("cfrag", cfrag_simple, layout::CFRAG_LEN)?;
    check_len("delegating key", delegating_key, KEY_LEN)?;
    check_len("receiving key", receiving_key, KEY_LEN)?;
    let message = kfrag_signature_message(
        &cfrag_simple[layout::KFRAG_ID],
        &cfrag_simple[layout::U1],
        &cfrag_simple[layout::PRECURSOR],
        delegating_key,
        receiving_key,
    );
    Ok(B256::from(<[u8; 32]>::from(Sha256::digest(message))))
}

fn kfrag_signature_rs(cfrag_simple: &[u8]) -> ([u8; 32], [u8; 32]) {
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    r.copy_from_slice(&cfrag_simple[layout::KFRAG_SIGNATURE_R]);
    s.copy_from_slice(&cfrag_simple[layout::KFRAG_SIGNATURE_S]);
    (r, s)
}

/// The address `ecrecover(sha256(kfrag message), 27 + v, r, s)` gives for the cfrag's kfrag
/// signature, or `None` if nothing can be recovered (the precompile's `address(0)`). Like the
/// precompile, any `s` in `[1, n)` is accepted, and the keys need not be points: they are only
/// hashed.
pub fn recover_kfrag_signer(
    cfrag_simple: &[u8],
    delegating_key: &[u8],
    receiving_key: &[u8],
    y_odd: bool,
) -> Result<Option<Address>, EvidenceError> {
    let prehash = kfrag_message_hash(cfrag_simple, delegating_key, receiving_key)?;
    let (r, s) = kfrag_signature_rs(cfrag_simple);
    Ok(ecrecover_address(&prehash.0, &r, &s, y_odd))
}

/// The recovery bit of the cfrag's kfrag signature (`true`: `R` has an odd y) with which it
/// recovers `kfrag_signer`, or `None` if neither bit does (a tampered cfrag or message).
pub fn kfrag_signature_v(
    cfrag_simple: &[u8],
    delegating_key: &[u8],
    receiving_key: &[u8],
    kfrag_signer: Address,
) -> Result<Option<bool>, EvidenceError> {
    for y_odd in [false, true] {
        if recover_kfrag_signer(cfrag_simple, delegating_key, receiving_key, y_odd)?
            == Some(kfrag_signer)
        {
            return Ok(Some(y_odd));
        }
    }
    Ok(None)
}

fn point(p: &ProjectivePoint) -> Point {
    let (x, y) = coordinates_u256(p);
    Point { x, y }
}

/// The x coordinate of the compressed point at `bytes[..33]`: the contract's `_x`.
fn x_of(bytes: &[u8]) -> U256 {
    U256::from_be_slice(&bytes[1..33])
}

/// The contract's `_checkCompressed`: the prefix is `0x02` for an even `y`, `0x03` for an odd
/// one, and `(x, y)` is on the curve.
fn matches_compressed(bytes: &[u8], y: U256) -> bool {
    let prefix = if y.bit(0) { 0x03 } else { 0x02 };
    bytes[0] == prefix && is_on_curve(x_of(bytes), y)
}

impl Evidence {
    /// Builds the evidence from the raw `Capsule::to_bytes_simple` (98 bytes) and
    /// `CapsuleFrag::to_bytes_simple` (359 bytes) of a node's answer, the answer's context (its
    /// staker, period and policy go into the evidence) and the worker's 65-byte signature of it.
    ///
    /// The products and `h` are computed from the bytes as they are. `kfragSignatureV` is the bit
    /// with which the kfrag signature recovers `kfrag_signer` (the policy's `kfragSigner`, see
    /// [`ethereum_address`](crate::umbral::ethereum_address)); `false` if neither bit does.
    ///
    /// Fails only if the bytes cannot be evidence at all: wrong lengths, a point not on the
    /// curve, a worker signature that is not 65 bytes. Any `z` is accepted, since a cheating node
    /// can sign any: a product that is the point at infinity (`z = 0`) is encoded as `(0, 0)`, and
    /// a `z` not below the group order is taken modulo it for the products (the contract judges
    /// both `InvalidZ` before it looks at the products). Points with an x coordinate not below the
    /// group order are accepted too (`E1` or `V1`: verdict `UncheckablePoint`).
    pub fn from_parts(
        capsule_simple: &[u8],
        cfrag_simple: &[u8],
        delegating_pk: &PublicKey,
        receiving_pk: &PublicKey,
        kfrag_signer: Address,
        answer: &AnswerContext,
        worker_signature: &[u8],
    ) -> Result<Self, EvidenceError> {
        if worker_signature.len() != SIGNATURE_LEN {
            return Err(EvidenceError::SignatureLength(worker_signature.len()));
        }
        let parsed = parse(capsule_simple, cfrag_simple)?;
        let mut ys = [U256::ZERO; 8];
        for (y, p) in ys.iter_mut().zip(parsed.points.iter()) {
            *y = coordinates_u256(p).1;
        }
        let [ez, e1h, vz, v1h, uz, u1h] = parsed.products();
        let delegating_key = delegating_pk.to_compressed_bytes();
        let receiving_key = receiving_pk.to_compressed_bytes();
        let v = kfrag_signature_v(cfrag_simple, &delegating_key, &receiving_key, kfrag_signer)?;
        Ok(Self {
            policyId: FixedBytes(answer.policy_id),
            staker: answer.staker,
            period: U256::from(answer.period),
            capsule: capsule_simple.to_vec().into(),
            cfrag: cfrag_simple.to_vec().into(),
            delegatingKey: delegating_key.to_vec().into(),
            receivingKey: receiving_key.to_vec().into(),
            ys,
            ez: point(&ez),
            e1h: point(&e1h),
            vz: point(&vz),
            v1h: point(&v1h),
            uz: point(&uz),
            u1h: point(&u1h),
            kfragSignatureV: v.unwrap_or(false),
            workerSignature: worker_signature.to_vec().into(),
        })
    }

    /// [`Evidence::from_parts`] from umbral's types. The CLI uses it when a cfrag fails
    /// `CapsuleFrag::verify` (it works for any cfrag, verified or not).
    pub fn for_wrong_cfrag(
        capsule: &Capsule,
        cfrag: &CapsuleFrag,
        delegating_pk: &PublicKey,
        receiving_pk: &PublicKey,
        kfrag_signer: Address,
        answer: &AnswerContext,
        worker_signature: &[u8],
    ) -> Result<Self, EvidenceError> {
        Self::from_parts(
            &capsule.to_bytes_simple(),
            &cfrag.to_bytes_simple(),
            delegating_pk,
            receiving_pk,
            kfrag_signer,
            answer,
            worker_signature,
        )
    }

    /// A Rust model of `Adjudicator.evaluateCFrag`, check for check and in the contract's order,
    /// given what the contract reads from the chain ([`ChainFacts`]):
    ///
    /// 1. lengths: capsule 98, cfrag 359, each key 33 bytes, else
    ///    [`Malformed`](Outcome::Malformed)`("capsule length" | "cfrag length" | "key length")`
    ///    (the keys are only hashed, never checked to be points);
    /// 2. `AlreadyEvaluated` and the investigator's commitment (`NotCommitted`, `RevealTooEarly`)
    ///    are chain state and are not modelled;
    /// 3. the answer's period: after the current period is [`Outcome::PeriodInFuture`], more than
    ///    `evidence_window` periods before it is [`Outcome::Expired`];
    /// 4. a zero `kfrag_signer` is [`Outcome::PolicyNotFound`]; `ecrecover(sha256(kfrag message),
    ///    27 + kfragSignatureV, r, s)` must be `kfrag_signer`, else [`Outcome::KfragSignature`];
    /// 5. OpenZeppelin's `ECDSA.tryRecover` of the EIP-191 answer digest (65 bytes, low `s`, `v`
    ///    27 or 28), else [`Outcome::InvalidWorkerSignature`]; the signer's bond must cover the
    ///    staker and the period the evidence names, else [`Outcome::NotBondedInPeriod`];
    /// 6. each of `E, V, E1, V1, E2, V2, U1, U2` is `(x, ys[i])` on the curve with the parity of
    ///    its prefix, else `Malformed("point")`;
    /// 7. `z == 0` or `z >= n`: `Slash(InvalidZ)`; `E1.x >= n` or `V1.x >= n`:
    ///    `Slash(UncheckablePoint)`;
    /// 8. the six products with the `ecrecover` trick (a capsule point with `x >= n` fails it),
    ///    else `Malformed("product")`;
    /// 9. the three equations as the contract's affine sums: [`Outcome::Correct`], or
    ///    `Slash(WrongE | WrongV | WrongU)` for the first that fails.
    ///
    /// The refusal of the culprit as investigator (`InvestigatorIsCulprit`) depends on who sends
    /// the evidence and is not modelled.
    pub fn outcome(&self, facts: &ChainFacts) -> Outcome {
        let (capsule, cfrag) = (&self.capsule[..], &self.cfrag[..]);
        if capsule.len() != layout::CAPSULE_LEN {
            return Outcome::Malformed("capsule length");
        }
        if cfrag.len() != layout::CFRAG_LEN {
            return Outcome::Malformed("cfrag length");
        }
        if self.delegatingKey.len() != KEY_LEN || self.receivingKey.len() != KEY_LEN {
            return Outcome::Malformed("key length");
        }

        let period = match u64::try_from(self.period) {
            Ok(period) if period <= facts.current_period => period,
            _ => return Outcome::PeriodInFuture,
        };
        if facts.current_period - period > facts.evidence_window {
            return Outcome::Expired;
        }

        let kfrag_signer = facts.kfrag_signer;
        if kfrag_signer == Address::ZERO {
            return Outcome::PolicyNotFound;
        }
        let recovered = recover_kfrag_signer(
            cfrag,
            &self.delegatingKey,
            &self.receivingKey,
            self.kfragSignatureV,
        );
        if !matches!(recovered, Ok(Some(signer)) if signer == kfrag_signer) {
            return Outcome::KfragSignature;
        }

        let context = AnswerContext {
            chain_id: facts.chain_id,
            adjudicator: facts.adjudicator,
            staker: self.staker,
            period,
            policy_id: self.policyId.0,
        };
        match recover_answer_signer(&context, capsule, cfrag, &self.workerSignature) {
            Ok(signer) if signer == facts.worker && facts.bond.covers(self.staker, period) => {}
            Ok(_) => return Outcome::NotBondedInPeriod,
            Err(_) => return Outcome::InvalidWorkerSignature,
        }

        let fields = point_fields(capsule, cfrag);
        if fields
            .iter()
            .zip(self.ys.iter())
            .any(|((_, bytes), y)| !matches_compressed(bytes, *y))
        {
            return Outcome::Malformed("point");
        }

        self.verify()
    }

    /// The contract's `_verify`, once the points are checked.
    fn verify(&self) -> Outcome {
        use layout::*;
        let (capsule, cfrag, ys) = (&self.capsule[..], &self.cfrag[..], &self.ys);
        let z = U256::from_be_slice(&cfrag[Z]);
        if z.is_zero() || z >= N {
            return Outcome::Slash(Verdict::InvalidZ);
        }
        if x_of(&cfrag[E1]) >= N || x_of(&cfrag[V1]) >= N {
            return Outcome::Slash(Verdict::UncheckablePoint);
        }
        let h = scalar_u256(&challenge_scalar(capsule, cfrag));

        let product =
            |bytes: &[u8], y: U256, k: U256, q: &Point| is_product(x_of(bytes), y, k, q.x, q.y);
        if !(product(&capsule[E], ys[0], z, &self.ez)
            && product(&cfrag[E1], ys[2], h, &self.e1h)
            && product(&capsule[V], ys[1], z, &self.vz)
            && product(&cfrag[V1], ys[3], h, &self.v1h)
            && is_product(U_X, U_Y, z, self.uz.x, self.uz.y)
            && product(&cfrag[U1], ys[6], h, &self.u1h))
        {
            return Outcome::Malformed("product");
        }

        let sum = |a: &Point, bytes: &[u8], y: U256, c: &Point| {
            is_sum(a.x, a.y, x_of(bytes), y, c.x, c.y)
        };
        if !sum(&self.e1h, &cfrag[E2], ys[4], &self.ez) {
            return Outcome::Slash(Verdict::WrongE);
        }
        if !sum(&self.v1h, &cfrag[V2], ys[5], &self.vz) {
            return Outcome::Slash(Verdict::WrongV);
        }
        if !sum(&self.u1h, &cfrag[U2], ys[7], &self.uz) {
            return Outcome::Slash(Verdict::WrongU);
        }
        Outcome::Correct
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::answer::sign_answer;
    use crate::curve::scalar_from_be;
    use crate::umbral::ethereum_address;
    use alloy::signers::local::PrivateKeySigner;
    use alloy::sol_types::{SolCall, SolStruct, SolValue};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use umbral_pre::{
        encrypt_with_rng, generate_kfrags_with_rng, reencrypt_with_rng, CurvePoint,
        ReencryptionEvidence, SecretKey, Signer,
    };

    const ADJUDICATOR: Address = Address::repeat_byte(0xad);
    const STAKER: Address = Address::repeat_byte(0x5a);
    const PERIOD: u64 = 20_000;

    /// The context of the tests' answers: anvil's chain, a fixed adjudicator, staker and period.
    fn context(policy_id: [u8; 16]) -> AnswerContext {
        AnswerContext {
            chain_id: 31337,
            adjudicator: ADJUDICATOR,
            staker: STAKER,
            period: PERIOD,
            policy_id,
        }
    }

    /// The chain as the tests' answers need it: `worker` bonded to the staker since the period.
    fn facts(kfrag_signer: Address, worker: Address) -> ChainFacts {
        ChainFacts {
            chain_id: 31337,
            adjudicator: ADJUDICATOR,
            current_period: PERIOD,
            evidence_window: 14,
            kfrag_signer,
            worker,
            bond: WorkerBond::open(STAKER, PERIOD),
        }
    }

    fn u256_of(bytes: k256::FieldBytes) -> U256 {
        U256::from_be_slice(&bytes)
    }

    fn same(p: &CurvePoint, q: &Point) -> bool {
        let (x, y) = p.coordinates().unwrap();
        u256_of(x) == q.x && u256_of(y) == q.y
    }

    #[test]
    fn valid_cfrags_match_umbral_evidence() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        for round in 0..3 {
            let alice = SecretKey::random_with_rng(&mut rng);
            let signer = Signer::new(SecretKey::random_with_rng(&mut rng));
            let bob = SecretKey::random_with_rng(&mut rng);
            let (dk, rk, vk) = (alice.public_key(), bob.public_key(), signer.verifying_key());
            let worker = PrivateKeySigner::random();
            let (capsule, _) = encrypt_with_rng(&mut rng, &dk, b"evidence").unwrap();
            let kfrags = generate_kfrags_with_rng(&mut rng, &alice, &rk, &signer, 2, 3, true, true);
            for kfrag in kfrags.iter() {
                let vcfrag = reencrypt_with_rng(&mut rng, &capsule, kfrag.clone());
                let reference =
                    ReencryptionEvidence::new(&capsule, &vcfrag, &vk, &dk, &rk).unwrap();
                let cfrag = vcfrag.clone().unverify();
                let (capsule_simple, cfrag_simple) =
                    (capsule.to_bytes_simple(), cfrag.to_bytes_simple());
                let policy_id = [round as u8; 16];
                let signature =
                    sign_answer(&worker, &context(policy_id), &capsule_simple, &cfrag_simple)
                        .unwrap();
                let evidence = Evidence::for_wrong_cfrag(
                    &capsule,
                    &cfrag,
                    &dk,
                    &rk,
                    ethereum_address(&vk),
                    &context(policy_id),
                    &signature.as_bytes(),
                )
                .unwrap();

                let refs = [
                    (&reference.ez, &evidence.ez),
                    (&reference.e1h, &evidence.e1h),
                    (&reference.vz, &evidence.vz),
                    (&reference.v1h, &evidence.v1h),
                    (&reference.uz, &evidence.uz),
                    (&reference.u1h, &evidence.u1h),
                ];
                for (p, q) in refs {
                    assert!(same(p, q));
                }
                let points = [
                    reference.e,
                    reference.v,
                    reference.e1,
                    reference.v1,
                    reference.e2,
                    reference.v2,
                    reference.u1,
                    reference.u2,
                ];
                for (p, y) in points.iter().zip(evidence.ys.iter()) {
                    assert_eq!(u256_of(p.coordinates().unwrap().1), *y);
                }
                assert_eq!(evidence.kfragSignatureV, reference.kfrag_signature_v);
                assert_eq!(
                    kfrag_message_hash(
                        &cfrag_simple,
                        &evidence.delegatingKey,
                        &evidence.receivingKey
                    )
                    .unwrap()
                    .as_slice(),
                    &reference.kfrag_validity_message_hash[..]
                );

                // h: umbral's hash_to_cfrag_verification, seen through h*E1 (E1 is not the identity).
                let h = challenge(&capsule_simple, &cfrag_simple).unwrap();
                let h_scalar = scalar_from_be(&h.to_be_bytes::<32>()).unwrap();
                let e1 = decompress(&cfrag_simple[layout::E1]).unwrap();
                assert_eq!(point(&(ProjectivePoint::from(e1) * h_scalar)), evidence.e1h);
                let umbral_h = umbral_pre::hash_to_cfrag_verification(
                    &reference.e,
                    &reference.e1,
                    &reference.e2,
                    &reference.v,
                    &reference.v1,
                    &reference.v2,
                    &umbral_pre::Parameters::new().u,
                    &reference.u1,
                    &reference.u2,
                );
                assert!(same(&(&reference.e1 * &umbral_h), &evidence.e1h));

                assert_eq!(
                    reencryption_equations(&capsule_simple, &cfrag_simple).unwrap(),
                    [true; 3]
                );
                assert_eq!(
                    evidence.outcome(&facts(ethereum_address(&vk), worker.address())),
                    Outcome::Correct
                );
                assert_eq!(
                    evidence.outcome(&facts(ethereum_address(&vk), Address::ZERO)),
                    Outcome::NotBondedInPeriod
                );
                assert_eq!(
                    evidence.outcome(&facts(Address::repeat_byte(1), worker.address())),
                    Outcome::KfragSignature
                );
                // kfragSignerOf gives zero for an unknown policy.
                assert_eq!(
                    evidence.outcome(&facts(Address::ZERO, worker.address())),
                    Outcome::PolicyNotFound
                );
            }
        }
    }

    #[test]
    fn abi_encoding_is_the_calldata_argument() {
        let evidence = Evidence {
            policyId: FixedBytes([9u8; 16]),
            staker: STAKER,
            period: U256::from(PERIOD),
            capsule: vec![1u8; 98].into(),
            cfrag: vec![2u8; 359].into(),
            delegatingKey: vec![3u8; 33].into(),
            receivingKey: vec![4u8; 33].into(),
            ys: [U256::from(5); 8],
            ez: Point {
                x: U256::from(6),
                y: U256::from(7),
            },
            e1h: Point {
                x: U256::from(8),
                y: U256::from(9),
            },
            vz: Point {
                x: U256::from(10),
                y: U256::from(11),
            },
            v1h: Point {
                x: U256::from(12),
                y: U256::from(13),
            },
            uz: Point {
                x: U256::from(14),
                y: U256::from(15),
            },
            u1h: Point {
                x: U256::from(16),
                y: U256::from(17),
            },
            kfragSignatureV: true,
            workerSignature: vec![18u8; 65].into(),
        };
        let encoded = evidence.abi_encode();
        // abi.encode of a dynamic struct starts with the offset 0x20.
        assert_eq!(U256::from_be_slice(&encoded[..32]), U256::from(32));
        let call = evaluateCFragCall {
            evidence: evidence.clone(),
        }
        .abi_encode();
        assert_eq!(&call[..4], evaluateCFragCall::SELECTOR.as_slice());
        assert_eq!(&call[4..], encoded.as_slice());
        assert_eq!(Evidence::abi_decode(&encoded).unwrap(), evidence);
        assert_eq!(
            evaluateCFragCall::SIGNATURE,
            "evaluateCFrag((bytes16,address,uint256,bytes,bytes,bytes,bytes,uint256[8],(uint256,uint256),(uint256,uint256),\
             (uint256,uint256),(uint256,uint256),(uint256,uint256),(uint256,uint256),bool,bytes))"
        );
    }

    /// The `type name` fields of `struct <name> { ... }` in a Solidity source, comments removed.
    fn solidity_fields(source: &str, name: &str) -> Vec<String> {
        let open = format!("struct {name} {{");
        let start = source.find(&open).unwrap() + open.len();
        let end = start + source[start..].find('}').unwrap();
        let body: String = source[start..end]
            .lines()
            .map(|line| line.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ");
        body.split(';')
            .map(|field| field.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|field| !field.is_empty())
            .collect()
    }

    fn rust_fields(root_type: &str) -> Vec<String> {
        let inner = &root_type[root_type.find('(').unwrap() + 1..root_type.len() - 1];
        inner.split(',').map(str::to_owned).collect()
    }

    /// The `sol!` declaration above must stay the one of `contracts/interfaces/IAdjudicator.sol`.
    #[test]
    fn mirrors_the_solidity_interface() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../contracts/interfaces/IAdjudicator.sol"
        );
        let source = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            solidity_fields(&source, "Point"),
            rust_fields(&Point::eip712_root_type())
        );
        assert_eq!(
            solidity_fields(&source, "Evidence"),
            rust_fields(&Evidence::eip712_root_type())
        );
        assert!(source.contains("function evaluateCFrag(Evidence calldata evidence) external;"));
    }

    #[test]
    fn rejects_what_cannot_be_evidence() {
        let crate::umbral::TestScenario {
            alice,
            signer,
            bob,
            capsule,
            cfrag,
        } = crate::umbral::TestScenario::new(8, 1, 1);
        let (capsule_simple, cfrag_simple) = (capsule.to_bytes_simple(), cfrag.to_bytes_simple());
        let build = |capsule: &[u8], cfrag: &[u8], sig: &[u8]| {
            Evidence::from_parts(
                capsule,
                cfrag,
                &alice.public_key(),
                &bob.public_key(),
                ethereum_address(&signer.verifying_key()),
                &context([0u8; 16]),
                sig,
            )
        };
        assert!(build(&capsule_simple, &cfrag_simple, &[27u8; 65]).is_ok());
        assert!(matches!(
            build(&capsule_simple, &cfrag_simple, &[27u8; 64]),
            Err(EvidenceError::SignatureLength(64))
        ));
        assert!(matches!(
            build(&capsule_simple[..97], &cfrag_simple, &[27u8; 65]),
            Err(EvidenceError::Bytes(_))
        ));
        let mut bad = cfrag_simple.to_vec();
        bad[layout::E2][0] = 0x04;
        assert!(matches!(
            build(&capsule_simple, &bad, &[27u8; 65]),
            Err(EvidenceError::Point("E2"))
        ));
        // Any z can be evidence (a cheating node can sign any): see invalid_z_is_slashed.
        let mut high_z = cfrag_simple.to_vec();
        high_z[layout::Z].fill(0xff);
        assert!(build(&capsule_simple, &high_z, &[27u8; 65]).is_ok());
        // About half of the x coordinates have no point on the curve: take the first such small x.
        let mut bad = capsule_simple.to_vec();
        let mut x = 1u8;
        loop {
            let mut candidate = [0u8; 33];
            candidate[0] = 2;
            candidate[32] = x;
            if decompress(&candidate).is_none() {
                bad[layout::V].copy_from_slice(&candidate);
                break;
            }
            x += 1;
        }
        assert!(matches!(
            build(&bad, &cfrag_simple, &[27u8; 65]),
            Err(EvidenceError::Point("V"))
        ));

        // A zero z: the products z*E, z*V, z*U are the identity, encoded (0, 0).
        let mut zero_z = cfrag_simple.to_vec();
        zero_z[layout::Z].fill(0);
        let evidence = build(&capsule_simple, &zero_z, &[27u8; 65]).unwrap();
        assert_eq!(
            evidence.ez,
            Point {
                x: U256::ZERO,
                y: U256::ZERO
            }
        );
        assert_eq!(
            reencryption_equations(&capsule_simple, &zero_z).unwrap(),
            [false; 3]
        );
    }

    /// A scenario whose answer tests re-sign, as a cheating node would sign its own bytes.
    struct Node {
        capsule: Vec<u8>,
        cfrag: Vec<u8>,
        alice: SecretKey,
        bob: SecretKey,
        signer: Signer,
        kfrag_signer: Address,
        worker: PrivateKeySigner,
        policy_id: [u8; 16],
    }

    impl Node {
        fn new(seed: u64) -> Self {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let alice = SecretKey::random_with_rng(&mut rng);
            let signer = Signer::new(SecretKey::random_with_rng(&mut rng));
            let bob = SecretKey::random_with_rng(&mut rng);
            let (capsule, _) = encrypt_with_rng(&mut rng, &alice.public_key(), b"model").unwrap();
            let kfrags = generate_kfrags_with_rng(
                &mut rng,
                &alice,
                &bob.public_key(),
                &signer,
                2,
                3,
                true,
                true,
            );
            let cfrag = reencrypt_with_rng(&mut rng, &capsule, kfrags[1].clone()).unverify();
            let kfrag_signer = ethereum_address(&signer.verifying_key());
            Self {
                capsule: capsule.to_bytes_simple().to_vec(),
                cfrag: cfrag.to_bytes_simple().to_vec(),
                alice,
                bob,
                signer,
                kfrag_signer,
                worker: PrivateKeySigner::random_with(&mut rng),
                policy_id: [seed as u8; 16],
            }
        }

        /// The evidence for these bytes, signed by the worker.
        fn evidence(&self, capsule: &[u8], cfrag: &[u8]) -> Evidence {
            let signature = sign_answer(&self.worker, &context(self.policy_id), capsule, cfrag)
                .unwrap()
                .as_bytes();
            Evidence::from_parts(
                capsule,
                cfrag,
                &self.alice.public_key(),
                &self.bob.public_key(),
                self.kfrag_signer,
                &context(self.policy_id),
                &signature,
            )
            .unwrap()
        }

        /// The evidence for the capsule and this cfrag.
        fn with_cfrag(&self, cfrag: &[u8]) -> Evidence {
            self.evidence(&self.capsule, cfrag)
        }

        fn outcome(&self, evidence: &Evidence) -> Outcome {
            evidence.outcome(&facts(self.kfrag_signer, self.worker.address()))
        }
    }

    /// The answer binds its staker and period: evidence is judged only inside the window and only
    /// against the stake the signer was bonded to in that period.
    #[test]
    fn period_window_and_bond() {
        let node = Node::new(23);
        let valid = node.with_cfrag(&node.cfrag);
        let at = |current_period: u64, bond: WorkerBond| {
            valid.outcome(&ChainFacts {
                current_period,
                bond,
                ..facts(node.kfrag_signer, node.worker.address())
            })
        };
        let bonded = WorkerBond::open(STAKER, PERIOD);
        assert_eq!(at(PERIOD, bonded), Outcome::Correct);
        assert_eq!(
            at(PERIOD + 14, bonded),
            Outcome::Correct,
            "the window's last period"
        );
        assert_eq!(at(PERIOD + 15, bonded), Outcome::Expired);
        assert_eq!(at(PERIOD - 1, bonded), Outcome::PeriodInFuture);
        // Unbonded later: still this stake's answer. Bonded only after it: not.
        let closed = WorkerBond {
            last_period: PERIOD,
            ..bonded
        };
        assert_eq!(at(PERIOD + 3, closed), Outcome::Correct);
        let later = WorkerBond::open(STAKER, PERIOD + 1);
        assert_eq!(at(PERIOD + 1, later), Outcome::NotBondedInPeriod);
        let before = WorkerBond {
            last_period: PERIOD - 1,
            ..bonded
        };
        assert_eq!(at(PERIOD, before), Outcome::NotBondedInPeriod);
        // The same key bonded to another stake cannot be blamed for this stake's answer.
        let elsewhere = WorkerBond::open(Address::repeat_byte(0x77), PERIOD);
        assert_eq!(at(PERIOD, elsewhere), Outcome::NotBondedInPeriod);
        // Naming another staker or period breaks the signature: another signer, no bond.
        let mut e = valid.clone();
        e.staker = Address::repeat_byte(0x77);
        assert_eq!(
            e.outcome(&facts(node.kfrag_signer, node.worker.address())),
            Outcome::NotBondedInPeriod
        );
        let mut e = valid.clone();
        e.period = U256::from(PERIOD - 1);
        assert_eq!(
            e.outcome(&facts(node.kfrag_signer, node.worker.address())),
            Outcome::NotBondedInPeriod
        );
        // A period beyond u64 is in the future, not a panic.
        let mut e = valid.clone();
        e.period = U256::MAX;
        assert_eq!(
            e.outcome(&facts(node.kfrag_signer, node.worker.address())),
            Outcome::PeriodInFuture
        );
    }

    fn with_field(bytes: &[u8], range: core::ops::Range<usize>, value: &[u8]) -> Vec<u8> {
        let mut bytes = bytes.to_vec();
        bytes[range].copy_from_slice(value);
        bytes
    }

    #[test]
    fn invalid_z_is_slashed() {
        let node = Node::new(21);
        assert_eq!(
            node.outcome(&node.with_cfrag(&node.cfrag)),
            Outcome::Correct
        );
        let n = crate::secp256k1::N;
        for z in [U256::ZERO, n, n + U256::from(1), U256::MAX] {
            let cfrag = with_field(&node.cfrag, layout::Z, &z.to_be_bytes::<32>());
            let evidence = node.with_cfrag(&cfrag);
            assert_eq!(
                node.outcome(&evidence),
                Outcome::Slash(Verdict::InvalidZ),
                "z = {z:#x}"
            );
            if z.is_zero() {
                // z*E, z*V and z*U are the point at infinity.
                let zero = Point {
                    x: U256::ZERO,
                    y: U256::ZERO,
                };
                assert_eq!([&evidence.ez, &evidence.vz, &evidence.uz], [&zero; 3]);
                assert_ne!(evidence.e1h, zero);
            }
        }
        // z = n - 1 is a valid scalar: a wrong proof, judged by the equations.
        let cfrag = with_field(
            &node.cfrag,
            layout::Z,
            &(n - U256::from(1)).to_be_bytes::<32>(),
        );
        assert_eq!(
            node.outcome(&node.with_cfrag(&cfrag)),
            Outcome::Slash(Verdict::WrongE)
        );
    }

    #[test]
    fn high_x_points() {
        let n = crate::secp256k1::N;
        for (index, odd) in [(0, false), (0, true), (3, false)] {
            let bytes = crate::fixtures::high_x_point(index, odd);
            assert!(x_of(&bytes) >= n && x_of(&bytes) < crate::secp256k1::P);
            assert!(decompress(&bytes).is_some());
            assert_eq!(bytes[0], if odd { 3 } else { 2 });
        }
        assert!(
            x_of(&crate::fixtures::high_x_point(1, false))
                > x_of(&crate::fixtures::high_x_point(0, false))
        );
    }

    #[test]
    fn uncheckable_points() {
        let node = Node::new(22);
        for (index, odd) in [(0, false), (1, true)] {
            let high = crate::fixtures::high_x_point(index, odd);
            // E1 or V1 beyond ecrecover's range: the node signed it, it is slashed.
            for range in [layout::E1, layout::V1] {
                let cfrag = with_field(&node.cfrag, range.clone(), &high);
                let evidence = node.with_cfrag(&cfrag);
                assert_eq!(
                    node.outcome(&evidence),
                    Outcome::Slash(Verdict::UncheckablePoint),
                    "{range:?}"
                );
                // ... even with a zero z: InvalidZ comes first.
                let zero_z = with_field(&cfrag, layout::Z, &[0u8; 32]);
                assert_eq!(
                    node.outcome(&node.with_cfrag(&zero_z)),
                    Outcome::Slash(Verdict::InvalidZ)
                );
            }
            // The same in the capsule (E or V, not the node's doing): the product check fails.
            for range in [layout::E, layout::V] {
                let capsule = with_field(&node.capsule, range.clone(), &high);
                let evidence = node.evidence(&capsule, &node.cfrag);
                assert_eq!(
                    node.outcome(&evidence),
                    Outcome::Malformed("product"),
                    "{range:?}"
                );
            }
            // Points past E1 and V1 (E2, V2, U2) are only added, never multiplied: judged wrong.
            for range in [layout::E2, layout::V2, layout::U2] {
                let cfrag = with_field(&node.cfrag, range.clone(), &high);
                assert_eq!(
                    node.outcome(&node.with_cfrag(&cfrag)),
                    Outcome::Slash(Verdict::WrongE),
                    "{range:?}"
                );
            }
        }
    }

    #[test]
    fn model_checks_in_the_contract_order() {
        let node = Node::new(23);
        let valid = node.with_cfrag(&node.cfrag);
        let outcome = |evidence: &Evidence| node.outcome(evidence);
        assert_eq!(outcome(&valid), Outcome::Correct);

        // Lengths first, capsule before cfrag before keys.
        let mut e = valid.clone();
        e.capsule = node.capsule[..97].to_vec().into();
        e.delegatingKey = vec![2u8; 32].into();
        assert_eq!(outcome(&e), Outcome::Malformed("capsule length"));
        e.capsule = valid.capsule.clone();
        e.cfrag = [&node.cfrag[..], &[0u8][..]].concat().into();
        assert_eq!(outcome(&e), Outcome::Malformed("cfrag length"));
        e.cfrag = valid.cfrag.clone();
        assert_eq!(outcome(&e), Outcome::Malformed("key length"));
        let mut e = valid.clone();
        e.receivingKey = vec![2u8; 34].into();
        assert_eq!(outcome(&e), Outcome::Malformed("key length"));

        // The keys are hashed, never checked to be points: a key that is not one fails the kfrag
        // signature, not the shape checks.
        let mut e = valid.clone();
        let mut not_a_point = valid.delegatingKey.to_vec();
        not_a_point[0] = 0x04;
        e.delegatingKey = not_a_point.into();
        assert_eq!(outcome(&e), Outcome::KfragSignature);

        // No policy, then the kfrag signature, before the worker signature and the points.
        let mut e = valid.clone();
        e.kfragSignatureV = !e.kfragSignatureV;
        e.workerSignature = vec![0u8; 64].into();
        e.ys[0] += U256::from(1);
        assert_eq!(
            e.outcome(&facts(Address::ZERO, node.worker.address())),
            Outcome::PolicyNotFound
        );
        assert_eq!(outcome(&e), Outcome::KfragSignature);
        e.kfragSignatureV = valid.kfragSignatureV;
        assert_eq!(outcome(&e), Outcome::InvalidWorkerSignature);

        // The worker signature: OpenZeppelin's tryRecover rules, then the bonded worker.
        let sig = &valid.workerSignature[..];
        let mut high_s = sig.to_vec();
        let s = crate::secp256k1::N - U256::from_be_slice(&sig[32..64]);
        high_s[32..64].copy_from_slice(&s.to_be_bytes::<32>());
        high_s[64] ^= 27 ^ 28;
        let mut v_zero_one = sig.to_vec();
        v_zero_one[64] -= 27;
        let mut r_zero = sig.to_vec();
        r_zero[..32].fill(0);
        for bad in [
            &sig[..64],
            &[sig, &[0u8][..]].concat()[..],
            &high_s[..],
            &v_zero_one[..],
            &r_zero[..],
        ] {
            let mut e = valid.clone();
            e.workerSignature = bad.to_vec().into();
            e.ys[0] += U256::from(1); // the points come later
            assert_eq!(outcome(&e), Outcome::InvalidWorkerSignature, "{bad:?}");
        }
        let mut e = valid.clone();
        e.ys[0] += U256::from(1);
        assert_eq!(
            e.outcome(&facts(node.kfrag_signer, Address::repeat_byte(7))),
            Outcome::NotBondedInPeriod
        );
        // Another chain id: the signature recovers another address.
        assert_eq!(
            valid.outcome(&ChainFacts {
                chain_id: 1,
                ..facts(node.kfrag_signer, node.worker.address())
            }),
            Outcome::NotBondedInPeriod
        );

        // The points: y must match the prefix's parity and be on the curve.
        for i in 0..8 {
            let mut e = valid.clone();
            e.ys[i] = crate::secp256k1::P - e.ys[i]; // the other root: wrong parity
            e.cfrag = with_field(&node.cfrag, layout::Z, &[0u8; 32]).into(); // z comes later
            e.workerSignature =
                sign_answer(&node.worker, &context(node.policy_id), &e.capsule, &e.cfrag)
                    .unwrap()
                    .as_bytes()
                    .to_vec()
                    .into();
            assert_eq!(outcome(&e), Outcome::Malformed("point"), "ys[{i}]");
            let mut e = valid.clone();
            e.ys[i] += U256::from(2); // right parity, off the curve
            assert_eq!(outcome(&e), Outcome::Malformed("point"), "ys[{i}]");
        }
        // A prefix that is not 02/03 (and the y of an even point) is no point either.
        let cfrag = with_field(&node.cfrag, layout::E2.start..layout::E2.start + 1, &[0x04]);
        let mut e = valid.clone();
        e.cfrag = cfrag.clone().into();
        e.workerSignature = sign_answer(
            &node.worker,
            &context(node.policy_id),
            &node.capsule,
            &cfrag,
        )
        .unwrap()
        .as_bytes()
        .to_vec()
        .into();
        assert_eq!(outcome(&e), Outcome::Malformed("point"));

        // The products: any change, on the curve or not, is the investigator's error.
        for i in 0..6 {
            for change in 0..3 {
                let mut e = valid.clone();
                let field = match i {
                    0 => &mut e.ez,
                    1 => &mut e.e1h,
                    2 => &mut e.vz,
                    3 => &mut e.v1h,
                    4 => &mut e.uz,
                    _ => &mut e.u1h,
                };
                match change {
                    0 => field.y += U256::from(1),                // off the curve
                    1 => field.y = crate::secp256k1::P - field.y, // its negation
                    _ => {
                        *field = if i == 0 {
                            valid.e1h.clone()
                        } else {
                            valid.ez.clone()
                        }
                    }
                }
                assert_eq!(
                    outcome(&e),
                    Outcome::Malformed("product"),
                    "product {i}/{change}"
                );
            }
        }
    }

    #[test]
    fn synthetic_cheats_get_their_verdicts() {
        use crate::fixtures::{synthetic_cfrag, Cheat};
        use crate::umbral::{capsule_from_bytes_simple, cfrag_from_bytes_simple};
        let node = Node::new(24);
        let mut rng = ChaCha20Rng::seed_from_u64(25);
        let capsule = capsule_from_bytes_simple(&node.capsule).unwrap();
        let (dk, rk) = (node.alice.public_key(), node.bob.public_key());
        for _ in 0..3 {
            for cheat in Cheat::ALL {
                let cfrag = synthetic_cfrag(&mut rng, &node.capsule, &dk, &rk, &node.signer, cheat)
                    .unwrap();
                let evidence = node.with_cfrag(&cfrag);
                assert_eq!(
                    node.outcome(&evidence),
                    Outcome::from(cheat.verdict()),
                    "{cheat:?}"
                );
                let equations = reencryption_equations(&node.capsule, &cfrag).unwrap();
                let failing = equations.iter().filter(|ok| !**ok).count();
                assert_eq!(failing, usize::from(cheat != Cheat::None), "{cheat:?}");
                // umbral agrees: a correct cfrag verifies, the others fail the re-encryption check.
                let verified = cfrag_from_bytes_simple(&cfrag).unwrap().verify(
                    &capsule,
                    &node.signer.verifying_key(),
                    &dk,
                    &rk,
                );
                match cheat {
                    Cheat::None => assert!(verified.is_ok()),
                    _ => assert_eq!(
                        verified.err().map(|(err, _)| err),
                        Some(umbral_pre::CapsuleFragVerificationError::IncorrectReencryption)
                    ),
                }
            }
        }
    }

    /// `Verdict` and the `Malformed` reasons must stay the contract's.
    #[test]
    fn mirrors_the_contract_verdicts_and_reasons() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../contracts/Adjudicator.sol"
        );
        let source = std::fs::read_to_string(path).unwrap();
        let start = source.find("enum Verdict {").unwrap() + "enum Verdict {".len();
        let end = start + source[start..].find('}').unwrap();
        let members: Vec<&str> = source[start..end]
            .lines()
            .map(|line| line.split("//").next().unwrap_or_default())
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .collect();
        let names: Vec<&str> = Verdict::ALL.iter().map(|v| v.name()).collect();
        assert_eq!(members, names);
        for (i, verdict) in Verdict::ALL.iter().enumerate() {
            assert_eq!(*verdict as usize, i);
            assert_eq!(Verdict::from_u8(i as u8), Some(*verdict));
            assert_eq!(Outcome::from(*verdict).verdict(), Some(*verdict));
        }
        assert_eq!(Verdict::from_u8(6), None);
        for what in [
            "capsule length",
            "cfrag length",
            "key length",
            "point",
            "product",
        ] {
            let revert = format!("Adjudicator_MalformedEvidence(\"{what}\")");
            assert!(source.contains(&revert), "{revert}");
        }
    }
}
