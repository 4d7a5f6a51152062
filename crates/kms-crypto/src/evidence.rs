//! The evidence an investigator submits to `IAdjudicator.evaluateCFrag`, built from the raw
//! `to_bytes_simple` encodings of the capsule and the cfrag.
//!
//! Everything is computed from the bytes, never from umbral's checked types, so that evidence
//! can be built for a cfrag that fails `CapsuleFrag::verify` (that is the point of it), and for
//! byte strings an investigator tampered with (the fixtures do, to test that the contract rejects
//! them). [`Evidence::outcome`] is a Rust model of the contract's decision.

use alloy::primitives::{Address, FixedBytes, B256, U256};
use alloy::sol;
use k256::{ProjectivePoint, Scalar};
use sha2::{Digest, Sha256};
use umbral_pre::{Capsule, CapsuleFrag, PublicKey};

use crate::answer::{recover_answer_signer, SIGNATURE_LEN};
use crate::curve::{
    coordinates, coordinates_u256, decompress, ecrecover_address, nonzero_scalar_from_digest,
    scalar_from_be,
};
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
    }
}

pub use IAdjudicator::{evaluateCFragCall, Evidence, Point};

/// Length of a compressed public key.
pub const KEY_LEN: usize = 33;

/// Errors building evidence.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The capsule or cfrag does not have its `to_bytes_simple` length.
    #[error(transparent)]
    Bytes(#[from] UmbralError),
    /// A 33-byte field is not a compressed point on secp256k1.
    #[error("{0} is not a compressed secp256k1 point")]
    Point(&'static str),
    /// The cfrag's `z` is not below the group order.
    #[error("the cfrag's z is not below the secp256k1 order")]
    Scalar,
    /// The worker signature is not 65 bytes.
    #[error("worker signature: expected {SIGNATURE_LEN} bytes, got {0}")]
    SignatureLength(usize),
}

/// What the Adjudicator decides about a piece of evidence (see [`Evidence::outcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything checks out and the re-encryption is correct: nothing to slash.
    Correct,
    /// Everything checks out and the re-encryption is wrong: the node is slashed.
    Slash,
    /// The kfrag signature does not recover the policy's kfrag signer: rejected.
    KfragSignature,
    /// The answer is not signed by the expected worker: rejected.
    UnknownWorker,
    /// Lengths, points, `ys` or products are inconsistent: rejected.
    Malformed(&'static str),
}

impl Outcome {
    /// The name the fixtures use (`expect`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Correct => "correct",
            Self::Slash => "slash",
            Self::KfragSignature => "kfrag-signature",
            Self::UnknownWorker => "unknown-worker",
            Self::Malformed(_) => "malformed",
        }
    }
}

/// The points and scalars of a capsule and a cfrag, parsed from their simple encodings.
struct Parsed {
    /// E, V, E1, V1, E2, V2, U1, U2: the order of `Evidence::ys`.
    points: [ProjectivePoint; 8],
    u: ProjectivePoint,
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
    let z = scalar_from_be(&z_bytes).ok_or(EvidenceError::Scalar)?;
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

/// The challenge `h` of the re-encryption proof, as the contract computes it:
/// `sha256(0x00000012 || "CFRAG_VERIFICATION" || E || E1 || E2 || V || V1 || V2 || U || U1 || U2)`
/// as a big-endian integer, modulo `n - 1`, plus 1.
pub fn challenge(capsule_simple: &[u8], cfrag_simple: &[u8]) -> Result<U256, EvidenceError> {
    check_len("capsule", capsule_simple, layout::CAPSULE_LEN)?;
    check_len("cfrag", cfrag_simple, layout::CFRAG_LEN)?;
    Ok(U256::from_be_bytes::<32>(
        challenge_scalar(capsule_simple, cfrag_simple)
            .to_bytes()
            .into(),
    ))
}

/// The three equations of the re-encryption proof, `[z*E == h*E1 + E2, z*V == h*V1 + V2,
/// z*U == h*U1 + U2]`: all true for a correct re-encryption.
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
/// signature, or `None` if nothing can be recovered.
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

impl Evidence {
    /// Builds the evidence from the raw `Capsule::to_bytes_simple` (98 bytes) and
    /// `CapsuleFrag::to_bytes_simple` (359 bytes) of a node's answer, and the worker's 65-byte
    /// signature of it.
    ///
    /// The products and `h` are computed from the bytes as they are. `kfragSignatureV` is the bit
    /// with which the kfrag signature recovers `kfrag_signer` (the policy's `kfragSigner`, see
    /// [`ethereum_address`](crate::umbral::ethereum_address)); `false` if neither bit does.
    ///
    /// Fails only if the bytes cannot be evidence at all: wrong lengths, a point not on the
    /// curve, `z` not below the group order. A product that is the point at infinity (`z = 0`)
    /// is encoded as `(0, 0)`.
    pub fn from_parts(
        capsule_simple: &[u8],
        cfrag_simple: &[u8],
        delegating_pk: &PublicKey,
        receiving_pk: &PublicKey,
        kfrag_signer: Address,
        policy_id: [u8; 16],
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
            policyId: FixedBytes(policy_id),
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
        policy_id: [u8; 16],
        worker_signature: &[u8],
    ) -> Result<Self, EvidenceError> {
        Self::from_parts(
            &capsule.to_bytes_simple(),
            &cfrag.to_bytes_simple(),
            delegating_pk,
            receiving_pk,
            kfrag_signer,
            policy_id,
            worker_signature,
        )
    }

    /// A Rust model of the Adjudicator's decision, given the policy's `kfragSigner` and the
    /// worker the answer must come from:
    ///
    /// 1. lengths, every point on the curve with `ys` matching its compressed sign, the six
    ///    products equal to the recomputed ones, otherwise [`Outcome::Malformed`];
    /// 2. the kfrag signature recovers `kfrag_signer`, otherwise [`Outcome::KfragSignature`];
    /// 3. the worker signature recovers `worker`, otherwise [`Outcome::UnknownWorker`];
    /// 4. the three equations hold: [`Outcome::Correct`], otherwise [`Outcome::Slash`].
    pub fn outcome(&self, chain_id: u64, kfrag_signer: Address, worker: Address) -> Outcome {
        let parsed = match parse(&self.capsule, &self.cfrag) {
            Ok(parsed) => parsed,
            Err(_) => return Outcome::Malformed("capsule or cfrag"),
        };
        if self.delegatingKey.len() != KEY_LEN
            || self.receivingKey.len() != KEY_LEN
            || decompress(&self.delegatingKey).is_none()
            || decompress(&self.receivingKey).is_none()
        {
            return Outcome::Malformed("keys");
        }
        for (y, p) in self.ys.iter().zip(parsed.points.iter()) {
            match coordinates(p) {
                Some((_, py)) if U256::from_be_bytes(py) == *y => {}
                _ => return Outcome::Malformed("ys"),
            }
        }
        let products = parsed.products();
        let given = [
            &self.ez, &self.e1h, &self.vz, &self.v1h, &self.uz, &self.u1h,
        ];
        if products.iter().zip(given).any(|(p, g)| point(p) != *g) {
            return Outcome::Malformed("products");
        }
        match recover_kfrag_signer(
            &self.cfrag,
            &self.delegatingKey,
            &self.receivingKey,
            self.kfragSignatureV,
        ) {
            Ok(Some(signer)) if signer == kfrag_signer => {}
            _ => return Outcome::KfragSignature,
        }
        match recover_answer_signer(
            chain_id,
            self.policyId.0,
            &self.capsule,
            &self.cfrag,
            &self.workerSignature,
        ) {
            Ok(signer) if signer == worker => {}
            _ => return Outcome::UnknownWorker,
        }
        if parsed.equations().iter().all(|ok| *ok) {
            Outcome::Correct
        } else {
            Outcome::Slash
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::answer::sign_answer;
    use crate::umbral::ethereum_address;
    use alloy::signers::local::PrivateKeySigner;
    use alloy::sol_types::{SolCall, SolStruct, SolValue};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use umbral_pre::{
        encrypt_with_rng, generate_kfrags_with_rng, reencrypt_with_rng, CurvePoint,
        ReencryptionEvidence, SecretKey, Signer,
    };

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
                    sign_answer(&worker, 31337, policy_id, &capsule_simple, &cfrag_simple).unwrap();
                let evidence = Evidence::for_wrong_cfrag(
                    &capsule,
                    &cfrag,
                    &dk,
                    &rk,
                    ethereum_address(&vk),
                    policy_id,
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
                    evidence.outcome(31337, ethereum_address(&vk), worker.address()),
                    Outcome::Correct
                );
                assert_eq!(
                    evidence.outcome(31337, ethereum_address(&vk), Address::ZERO),
                    Outcome::UnknownWorker
                );
                assert_eq!(
                    evidence.outcome(31337, Address::ZERO, worker.address()),
                    Outcome::KfragSignature
                );
            }
        }
    }

    #[test]
    fn abi_encoding_is_the_calldata_argument() {
        let evidence = Evidence {
            policyId: FixedBytes([9u8; 16]),
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
            "evaluateCFrag((bytes16,bytes,bytes,bytes,bytes,uint256[8],(uint256,uint256),(uint256,uint256),\
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
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let alice = SecretKey::random_with_rng(&mut rng);
        let signer = Signer::new(SecretKey::random_with_rng(&mut rng));
        let bob = SecretKey::random_with_rng(&mut rng);
        let (capsule, _) = encrypt_with_rng(&mut rng, &alice.public_key(), b"x").unwrap();
        let kfrags = generate_kfrags_with_rng(
            &mut rng,
            &alice,
            &bob.public_key(),
            &signer,
            1,
            1,
            true,
            true,
        );
        let cfrag = reencrypt_with_rng(&mut rng, &capsule, kfrags[0].clone()).unverify();
        let (capsule_simple, cfrag_simple) = (capsule.to_bytes_simple(), cfrag.to_bytes_simple());
        let build = |capsule: &[u8], cfrag: &[u8], sig: &[u8]| {
            Evidence::from_parts(
                capsule,
                cfrag,
                &alice.public_key(),
                &bob.public_key(),
                ethereum_address(&signer.verifying_key()),
                [0u8; 16],
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
        let mut bad = cfrag_simple.to_vec();
        bad[layout::Z].fill(0xff);
        assert!(matches!(
            build(&capsule_simple, &bad, &[27u8; 65]),
            Err(EvidenceError::Scalar)
        ));
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
}
