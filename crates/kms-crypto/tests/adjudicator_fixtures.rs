//! The committed Adjudicator fixtures are what the generator produces, and every case is what it
//! claims to be, checked against umbral-pre itself and plain k256 arithmetic.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::OnceLock;

use alloy::primitives::U256;
use alloy::sol_types::SolValue;
use k256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use k256::elliptic_curve::PrimeField;
use k256::{AffinePoint, EncodedPoint, FieldBytes, ProjectivePoint, Scalar};
use kms_crypto::evidence::{
    challenge, recover_kfrag_signer, ChainFacts, Evidence, Outcome, Point, Verdict, WorkerBond,
};
use kms_crypto::fixtures::{
    adjudicator, generate, Fixtures, Scenario, CHAIN_ID, EVIDENCE_WINDOW, FIXTURE_PATH, PERIOD,
    REGENERATE,
};
use kms_crypto::umbral::{cfrag_from_bytes_simple, layout, U_COMPRESSED};
use kms_crypto::{policy_id_of, recover_answer_signer, AnswerContext};
use umbral_pre::{CapsuleFragVerificationError, ReencryptionEvidence};

/// The fixtures generated once for all the tests (generation takes seconds in debug builds).
fn fixtures() -> &'static (Fixtures, String) {
    static FIXTURES: OnceLock<(Fixtures, String)> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let fixtures = generate().unwrap();
        let json = fixtures.to_json().unwrap();
        (fixtures, json)
    })
}

fn fixtures_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(FIXTURE_PATH)
}

fn point(bytes: &[u8]) -> ProjectivePoint {
    let encoded = EncodedPoint::from_bytes(bytes).unwrap();
    Option::<AffinePoint>::from(AffinePoint::from_encoded_point(&encoded))
        .unwrap()
        .into()
}

fn scalar(bytes: &[u8]) -> Scalar {
    let bytes: [u8; 32] = bytes.try_into().unwrap();
    Option::from(Scalar::from_repr(FieldBytes::from(bytes))).unwrap()
}

fn affine(p: &ProjectivePoint) -> Point {
    let encoded = p.to_affine().to_encoded_point(false);
    Point {
        x: U256::from_be_slice(encoded.x().unwrap()),
        y: U256::from_be_slice(encoded.y().unwrap()),
    }
}

fn same(p: &umbral_pre::CurvePoint, q: &Point) -> bool {
    let (x, y) = p.coordinates().unwrap();
    U256::from_be_slice(&x) == q.x && U256::from_be_slice(&y) == q.y
}

/// The three re-encryption equations, computed here with k256 alone.
fn equations(capsule: &[u8], cfrag: &[u8]) -> [bool; 3] {
    let (e, v, u) = (
        point(&capsule[layout::E]),
        point(&capsule[layout::V]),
        point(&U_COMPRESSED),
    );
    let (e1, v1, e2, v2) = (
        point(&cfrag[layout::E1]),
        point(&cfrag[layout::V1]),
        point(&cfrag[layout::E2]),
        point(&cfrag[layout::V2]),
    );
    let (u1, u2) = (point(&cfrag[layout::U1]), point(&cfrag[layout::U2]));
    let z = scalar(&cfrag[layout::Z]);
    let h = scalar(&challenge(capsule, cfrag).unwrap().to_be_bytes::<32>());
    [
        e * z == e1 * h + e2,
        v * z == v1 * h + v2,
        u * z == u1 * h + u2,
    ]
}

#[test]
fn committed_fixtures_are_up_to_date() {
    let generated = &fixtures().1;
    let path = fixtures_file();
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{}: {err}; regenerate with `{REGENERATE}`", path.display()));
    assert!(
        &committed == generated,
        "{} is not what the generator produces: regenerate it with `{REGENERATE}` (and check the \
         Solidity tests still pass)",
        path.display()
    );
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(&generate().unwrap().to_json().unwrap(), &fixtures().1);
}

#[test]
fn committed_json_matches_the_schema() {
    let fixtures = &fixtures().0;
    let path = fixtures_file();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(json["chainId"], 31337);
    assert_eq!(
        json["adjudicator"].as_str().unwrap(),
        alloy::primitives::hex::encode_prefixed(adjudicator())
    );
    assert_eq!(json["period"].as_u64(), Some(PERIOD));
    let cases = json["cases"].as_array().unwrap();
    assert_eq!(json["count"].as_u64().unwrap() as usize, cases.len());
    assert_eq!(cases.len(), fixtures.cases.len());
    for (entry, case) in cases.iter().zip(&fixtures.cases) {
        let object = entry.as_object().unwrap();
        let keys: Vec<_> = object.keys().map(String::as_str).collect();
        let mut expected = vec![
            "name",
            "scenario",
            "expect",
            "field",
            "policyId",
            "creator",
            "salt",
            "staker",
            "kfragSigner",
            "worker",
            "signer",
            "evidence",
        ];
        expected.sort_unstable();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected);
        assert_eq!(entry["name"], case.name.as_str());
        assert_eq!(entry["expect"], case.expect.as_str());
        assert_eq!(entry["policyId"].as_str().unwrap().len(), 2 + 32);
        let bytes = alloy::primitives::hex::decode(entry["evidence"].as_str().unwrap()).unwrap();
        let decoded = Evidence::abi_decode(&bytes).unwrap();
        assert_eq!(decoded, case.evidence);
        assert_eq!(
            entry["policyId"].as_str().unwrap(),
            alloy::primitives::hex::encode_prefixed(decoded.policyId)
        );
    }
}

/// The context every fixture answer is signed in.
fn context(scenario: &Scenario) -> AnswerContext {
    AnswerContext {
        chain_id: CHAIN_ID,
        adjudicator: adjudicator(),
        staker: scenario.staker,
        period: PERIOD,
        policy_id: scenario.policy_id,
    }
}

#[test]
fn every_case_is_what_it_claims() {
    let fixtures = &fixtures().0;
    assert_eq!(fixtures.chain_id, CHAIN_ID);
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    for case in &fixtures.cases {
        let name = case.name.as_str();
        let scenario = &fixtures.scenarios[case.scenario];
        let evidence = &case.evidence;
        let (capsule, cfrag) = (&evidence.capsule[..], &evidence.cfrag[..]);
        *seen.entry(case.expect.as_str()).or_default() += 1;

        assert_eq!(capsule, &scenario.capsule.to_bytes_simple()[..], "{name}");
        assert_eq!(evidence.policyId.0, scenario.policy_id, "{name}");
        assert_eq!(case.kfrag_signer, scenario.kfrag_signer, "{name}");
        assert_eq!(case.worker, scenario.worker, "{name}");
        assert_eq!(
            &evidence.delegatingKey[..],
            &scenario.delegating_pk.to_compressed_bytes()[..]
        );
        assert_eq!(
            &evidence.receivingKey[..],
            &scenario.receiving_pk.to_compressed_bytes()[..]
        );

        // The answer signature recovers the declared signer: the worker unless it should not.
        assert_eq!(evidence.staker, scenario.staker, "{name}");
        assert_eq!(evidence.period, U256::from(PERIOD), "{name}");
        assert_eq!(
            policy_id_of(scenario.creator, scenario.salt),
            scenario.policy_id,
            "{name}"
        );
        let signer = recover_answer_signer(
            &context(scenario),
            capsule,
            cfrag,
            &evidence.workerSignature,
        )
        .unwrap();
        assert_eq!(signer, case.signer, "{name}");
        assert_eq!(
            signer == case.worker,
            case.expect != Outcome::NotBondedInPeriod,
            "{name}"
        );

        // ys and products are the ones of the bytes as they are.
        let points = [
            &capsule[layout::E],
            &capsule[layout::V],
            &cfrag[layout::E1],
            &cfrag[layout::V1],
            &cfrag[layout::E2],
            &cfrag[layout::V2],
            &cfrag[layout::U1],
            &cfrag[layout::U2],
        ];
        for (bytes, y) in points.iter().zip(evidence.ys.iter()) {
            assert_eq!(affine(&point(bytes)).y, *y, "{name}");
        }
        let z = scalar(&cfrag[layout::Z]);
        let h = scalar(&challenge(capsule, cfrag).unwrap().to_be_bytes::<32>());
        assert_eq!(
            evidence.ez,
            affine(&(point(&capsule[layout::E]) * z)),
            "{name}"
        );
        assert_eq!(
            evidence.e1h,
            affine(&(point(&cfrag[layout::E1]) * h)),
            "{name}"
        );
        assert_eq!(
            evidence.vz,
            affine(&(point(&capsule[layout::V]) * z)),
            "{name}"
        );
        assert_eq!(
            evidence.v1h,
            affine(&(point(&cfrag[layout::V1]) * h)),
            "{name}"
        );
        assert_eq!(evidence.uz, affine(&(point(&U_COMPRESSED) * z)), "{name}");
        assert_eq!(
            evidence.u1h,
            affine(&(point(&cfrag[layout::U1]) * h)),
            "{name}"
        );

        let kfrag_signer_ok = recover_kfrag_signer(
            cfrag,
            &evidence.delegatingKey,
            &evidence.receivingKey,
            evidence.kfragSignatureV,
        )
        .unwrap()
            == Some(case.kfrag_signer);
        let verified = cfrag_from_bytes_simple(cfrag).unwrap().verify(
            &scenario.capsule,
            &scenario.verifying_pk,
            &scenario.delegating_pk,
            &scenario.receiving_pk,
        );
        let equations = equations(capsule, cfrag);

        match case.expect {
            Outcome::Correct => {
                let vcfrag = verified.unwrap_or_else(|err| panic!("{name}: {err:?}"));
                let reference = ReencryptionEvidence::new(
                    &scenario.capsule,
                    &vcfrag,
                    &scenario.verifying_pk,
                    &scenario.delegating_pk,
                    &scenario.receiving_pk,
                )
                .unwrap();
                assert!(same(&reference.ez, &evidence.ez), "{name}");
                assert!(same(&reference.e1h, &evidence.e1h), "{name}");
                assert!(same(&reference.vz, &evidence.vz), "{name}");
                assert!(same(&reference.v1h, &evidence.v1h), "{name}");
                assert!(same(&reference.uz, &evidence.uz), "{name}");
                assert!(same(&reference.u1h, &evidence.u1h), "{name}");
                assert_eq!(
                    reference.kfrag_signature_v, evidence.kfragSignatureV,
                    "{name}"
                );
                assert_eq!(equations, [true; 3], "{name}");
                assert!(kfrag_signer_ok, "{name}");
                assert_eq!(vcfrag.unverify(), scenario.cfrag, "{name}");
            }
            Outcome::Slash(verdict) => {
                // The kfrag signature still holds, so umbral blames the re-encryption itself.
                assert!(kfrag_signer_ok, "{name}");
                assert_eq!(
                    verified.err().map(|(err, _)| err),
                    Some(CapsuleFragVerificationError::IncorrectReencryption),
                    "{name}"
                );
                // The verdict names the first equation that fails with k256's group law.
                let first = equations.iter().position(|ok| !ok);
                let expected = [Verdict::WrongE, Verdict::WrongV, Verdict::WrongU];
                assert_eq!(
                    first.map(|i| expected[i]),
                    Some(verdict),
                    "{name}: {equations:?}"
                );
            }
            Outcome::KfragSignature => {
                assert!(!kfrag_signer_ok, "{name}");
                if case.field == "kfragSignatureV" {
                    // The cfrag is the valid one, only the recovery bit is wrong.
                    assert!(verified.is_ok(), "{name}");
                } else {
                    assert_eq!(
                        verified.err().map(|(err, _)| err),
                        Some(CapsuleFragVerificationError::IncorrectKeyFragSignature),
                        "{name}"
                    );
                }
            }
            Outcome::NotBondedInPeriod => {
                assert!(kfrag_signer_ok, "{name}");
                assert_ne!(case.signer, case.worker, "{name}");
            }
            Outcome::Malformed(_)
            | Outcome::PolicyNotFound
            | Outcome::InvalidWorkerSignature
            | Outcome::PeriodInFuture
            | Outcome::Expired => {
                panic!("{name}: no such case is generated")
            }
        }
        let facts = ChainFacts {
            chain_id: CHAIN_ID,
            adjudicator: adjudicator(),
            current_period: PERIOD,
            evidence_window: EVIDENCE_WINDOW,
            kfrag_signer: case.kfrag_signer,
            worker: case.worker,
            bond: WorkerBond::open(scenario.staker, PERIOD),
        };
        assert_eq!(evidence.outcome(&facts), case.expect, "{name}");
    }
    let per_scenario = fixtures.cases.len() / fixtures.scenarios.len();
    assert_eq!(fixtures.scenarios.len(), 8);
    assert_eq!(seen.get("correct"), Some(&8));
    assert_eq!(seen.get("slash"), Some(&(6 * 8)));
    assert_eq!(seen.get("kfrag-signature"), Some(&(5 * 8)));
    assert_eq!(seen.get("not-bonded"), Some(&(2 * 8)));
    assert_eq!(per_scenario, 14);
}
