//! The Adjudicator on a real chain (anvil, contracts deployed by `script/Deploy.s.sol`) against
//! umbral-pre's real cfrags and `Evidence::outcome`, the Rust model of its decision: every
//! submission is predicted by the model first, and the contract must agree (the verdict of its
//! `CFragEvaluated` event, or the custom error it reverts with), with the slash accounted exactly.
//!
//! The scenarios are random: the seed comes from the OS on each run and is printed
//! (`KMS_TEST_SEED=<seed>`, shown with the output of a failing test); setting `KMS_TEST_SEED`
//! replays a run. Needs `forge build` artifacts and `npm ci` (anvil and forge), like
//! `kms-contracts`' own tests.

use alloy::primitives::{keccak256, Address, U256};
use alloy::providers::{ext::AnvilApi, DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;
use anyhow::{anyhow, bail, ensure, Context, Result};
use k256::elliptic_curve::sec1::ToEncodedPoint;
use k256::{NonZeroScalar, ProjectivePoint};
use kms_contracts::bindings::IAdjudicator as Bound;
use kms_contracts::test_utils::accounts::{ALICE, DEPLOYER, INVESTIGATOR, STAKER, WORKER};
use kms_contracts::test_utils::TestChain;
use kms_contracts::Adjudicator::{self, AdjudicatorErrors};
use kms_contracts::Deployment;
use kms_crypto::evidence::{ChainFacts, Evidence, Outcome, Verdict, WorkerBond};
use kms_crypto::fixtures::{high_x_point, synthetic_cfrag, Cheat};
use kms_crypto::umbral::layout;
use kms_crypto::{ethereum_address, policy_id_of, sign_answer, AnswerContext};
use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};
use umbral_pre::{
    encrypt_with_rng, generate_kfrags_with_rng, reencrypt_with_rng, PublicKey, SecretKey, Signer,
};

/// Long periods, so that a test run stays within few periods.
const SECONDS_PER_PERIOD: u64 = 3600;
/// Random scenarios per run.
const SCENARIOS: usize = 8;

/// The secp256k1 group order.
const N: U256 = U256::from_be_bytes(alloy::primitives::hex!(
    "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
));

/// The run's seed: `KMS_TEST_SEED` (decimal or 0x-hex) if set, else fresh from the OS. Printed
/// (the test harness shows it with a failing test's output).
fn seed(test: &str) -> Result<u64> {
    let seed = match std::env::var("KMS_TEST_SEED") {
        Ok(text) => {
            let text = text.trim();
            match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            }
            .with_context(|| format!("KMS_TEST_SEED={text:?} is not a u64"))?
        }
        Err(_) => OsRng.next_u64(),
    };
    eprintln!("{test}: KMS_TEST_SEED={seed}");
    Ok(seed)
}

/// What the contract did with a submission.
#[derive(Debug, PartialEq, Eq)]
enum Observed {
    /// Evaluated: `CFragEvaluated` with this verdict, penalty and reward.
    Evaluated {
        verdict: u8,
        penalty: U256,
        reward: U256,
    },
    /// Reverted with this custom error.
    Reverted(AdjudicatorErrors),
}

/// Whether the model's outcome is what the contract did.
fn agrees(model: &Outcome, observed: &Observed) -> bool {
    match (model, observed) {
        (Outcome::Correct | Outcome::Slash(_), Observed::Evaluated { verdict, .. }) => {
            model.verdict().map(|v| v as u8) == Some(*verdict)
        }
        (
            Outcome::Malformed(what),
            Observed::Reverted(AdjudicatorErrors::Adjudicator_MalformedEvidence(e)),
        ) => e.what == *what,
        (
            Outcome::PolicyNotFound,
            Observed::Reverted(AdjudicatorErrors::Adjudicator_PolicyNotFound(_)),
        )
        | (
            Outcome::KfragSignature,
            Observed::Reverted(AdjudicatorErrors::Adjudicator_KfragSignatureMismatch(_)),
        )
        | (
            Outcome::InvalidWorkerSignature,
            Observed::Reverted(AdjudicatorErrors::Adjudicator_InvalidWorkerSignature(_)),
        )
        | (
            Outcome::NotBondedInPeriod,
            Observed::Reverted(AdjudicatorErrors::Adjudicator_WorkerNotBondedInPeriod(_)),
        )
        | (
            Outcome::PeriodInFuture,
            Observed::Reverted(AdjudicatorErrors::Adjudicator_PeriodInFuture(_)),
        )
        | (
            Outcome::Expired,
            Observed::Reverted(AdjudicatorErrors::Adjudicator_EvidenceExpired(_)),
        ) => true,
        _ => false,
    }
}

/// Alice's keys for one policy.
struct Policy {
    id: [u8; 16],
    alice: SecretKey,
    signer: Signer,
    bob: SecretKey,
    /// The policy's `kfragSigner`.
    kfrag_signer: Address,
}

impl Policy {
    fn delegating_pk(&self) -> PublicKey {
        self.alice.public_key()
    }
    fn receiving_pk(&self) -> PublicKey {
        self.bob.public_key()
    }
}

/// A chain with a staked node, and the accounts of the test.
struct Setup {
    chain: TestChain,
    d: Deployment,
    chain_id: u64,
    staker: Address,
    worker: PrivateKeySigner,
    /// The period the worker was bonded in: the answers name it.
    bonded_period: u64,
    alice: DynProvider,
    investigator: Address,
    as_investigator: DynProvider,
    fee_rate: U256,
}

impl Setup {
    /// Deploys, stakes the minimum for 30+ periods and bonds the worker.
    async fn start() -> Result<Self> {
        let chain = TestChain::start(SECONDS_PER_PERIOD).await?;
        let d = chain.deployment().clone();
        let staker = chain.address(STAKER)?;
        let worker = chain.signer(WORKER)?;
        let amount = d.min_stake;
        let periods = U256::from(d.min_lock_periods.max(30));

        chain
            .stake_and_propose(DEPLOYER, STAKER, WORKER, amount, periods)
            .await?;
        chain.accept_bond(STAKER, WORKER).await?;
        let escrow = d.staking_escrow(chain.read_provider());
        ensure!(escrow.stakerOf(worker.address()).call().await? == staker);
        let bonded_period = u64::try_from(
            escrow
                .workerBond(worker.address())
                .call()
                .await?
                .firstPeriod,
        )?;

        let read = chain.read_provider();
        let fee_rate = U256::from(d.policy_manager(&read).defaultFeeRate().call().await?);
        ensure!(
            fee_rate == U256::from(1_000_000_000u64),
            "default fee rate {fee_rate}"
        );
        let chain_id = read.get_chain_id().await?;
        Ok(Self {
            alice: chain.provider(ALICE)?,
            investigator: chain.address(INVESTIGATOR)?,
            as_investigator: chain.provider(INVESTIGATOR)?,
            chain,
            d,
            chain_id,
            staker,
            worker,
            bonded_period,
            fee_rate,
        })
    }

    /// Fresh keys for Alice, her kfrag signer and Bob, and a policy on the PolicyManager with the
    /// staker as its only node, ending 1 to 4 periods ahead.
    async fn create_policy(&self, rng: &mut ChaCha20Rng) -> Result<Policy> {
        let alice = SecretKey::random_with_rng(rng);
        let signer = Signer::new(SecretKey::random_with_rng(rng));
        let bob = SecretKey::random_with_rng(rng);
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let owner = self.chain.address(ALICE)?;
        let id = policy_id_of(owner, salt);
        let kfrag_signer = ethereum_address(&signer.verifying_key());

        // The payment depends on the period the transaction lands in: pin its timestamp so that
        // a period boundary cannot fall between this computation and the block.
        let timestamp = self.chain.latest_timestamp().await? + 1;
        self.alice.anvil_set_next_block_timestamp(timestamp).await?;
        let current = timestamp / SECONDS_PER_PERIOD;
        let end = timestamp + (1 + rng.next_u64() % 4) * SECONDS_PER_PERIOD;
        let periods = (end - 1) / SECONDS_PER_PERIOD - current + 1;
        let receipt = self
            .d
            .policy_manager(&self.alice)
            .createPolicy(
                salt.into(),
                owner,
                kfrag_signer,
                U256::from(end),
                vec![self.staker],
            )
            .value(self.fee_rate * U256::from(periods))
            .send()
            .await?
            .get_receipt()
            .await?;
        ensure!(receipt.status(), "createPolicy reverted: {receipt:?}");
        let read = self.d.policy_manager(self.chain.read_provider());
        ensure!(read.kfragSignerOf(id.into()).call().await? == kfrag_signer);
        Ok(Policy {
            id,
            alice,
            signer,
            bob,
            kfrag_signer,
        })
    }

    /// The context the node answers `policy_id` in: this chain and Adjudicator, its staker, and
    /// the period the worker was bonded in (the chain's clock moves only by whole hours here, and
    /// every answer of the test is judged within the evidence window).
    fn context(&self, policy_id: [u8; 16]) -> AnswerContext {
        AnswerContext {
            chain_id: self.chain_id,
            adjudicator: self.d.adjudicator,
            staker: self.staker,
            period: self.bonded_period,
            policy_id,
        }
    }

    /// The worker's signature of an answer.
    fn sign(&self, policy: &Policy, capsule: &[u8], cfrag: &[u8]) -> Result<Vec<u8>> {
        Ok(
            sign_answer(&self.worker, &self.context(policy.id), capsule, cfrag)?
                .as_bytes()
                .to_vec(),
        )
    }

    /// The worker's signature of the answer in `evidence` (after a change of its policy id).
    fn sign_for(&self, evidence: &Evidence) -> Result<Vec<u8>> {
        Ok(sign_answer(
            &self.worker,
            &self.context(evidence.policyId.0),
            &evidence.capsule,
            &evidence.cfrag,
        )?
        .as_bytes()
        .to_vec())
    }

    /// The evidence for an answer the worker signed.
    fn evidence(&self, policy: &Policy, capsule: &[u8], cfrag: &[u8]) -> Result<Evidence> {
        let signature = self.sign(policy, capsule, cfrag)?;
        Ok(Evidence::from_parts(
            capsule,
            cfrag,
            &policy.delegating_pk(),
            &policy.receiving_pk(),
            policy.kfrag_signer,
            &self.context(policy.id),
            &signature,
        )?)
    }

    /// What the model predicts, with the chain's own `kfragSignerOf`, worker bond, period and
    /// evidence window as its facts.
    async fn model(&self, evidence: &Evidence) -> Result<Outcome> {
        let read = self.chain.read_provider();
        let kfrag_signer = self
            .d
            .policy_manager(&read)
            .kfragSignerOf(evidence.policyId)
            .call()
            .await?;
        let escrow = self.d.staking_escrow(&read);
        let bond = escrow.workerBond(self.worker.address()).call().await?;
        let facts = ChainFacts {
            chain_id: self.chain_id,
            adjudicator: self.d.adjudicator,
            // Every answer here is judged within the window, so a period boundary falling before
            // the reveal's block changes no outcome.
            current_period: self.chain_period().await?,
            evidence_window: u64::try_from(escrow.evidenceWindow().call().await?)?,
            kfrag_signer,
            worker: self.worker.address(),
            bond: WorkerBond {
                staker: bond.staker,
                first_period: u64::try_from(bond.firstPeriod)?,
                last_period: u64::try_from(bond.lastPeriod)?,
            },
        };
        Ok(evidence.outcome(&facts))
    }

    /// The period of the latest block.
    async fn chain_period(&self) -> Result<u64> {
        Ok(self.chain.current_period().await?)
    }

    async fn stake(&self) -> Result<U256> {
        let read = self.chain.read_provider();
        Ok(self
            .d
            .staking_escrow(&read)
            .stakeOf(self.staker)
            .call()
            .await?)
    }

    async fn investigator_balance(&self) -> Result<U256> {
        let read = self.chain.read_provider();
        Ok(self
            .d
            .token(&read)
            .balanceOf(self.investigator)
            .call()
            .await?)
    }

    /// Submits `evidence` as the investigator and reports what the contract did, checking the
    /// event and, for a slash, that the stake dropped by `penaltyFor` and the investigator got
    /// the reward.
    async fn submit(&self, evidence: &Evidence) -> Result<Observed> {
        let read = self.chain.read_provider();
        let adjudicator = self.d.adjudicator(&self.as_investigator);
        let (penalty, reward) = {
            let quote = self
                .d
                .adjudicator(&read)
                .penaltyFor(self.staker)
                .call()
                .await?;
            (quote.penalty, quote.reward)
        };
        let stake = self.stake().await?;
        let balance = self.investigator_balance().await?;

        // Commit, then reveal from a later block (anvil mines one per transaction).
        let evidence_hash = keccak256([&evidence.capsule[..], &evidence.cfrag[..]].concat());
        let commitment = keccak256((evidence_hash, self.investigator).abi_encode());
        let receipt = adjudicator
            .commitEvidence(commitment)
            .send()
            .await?
            .get_receipt()
            .await?;
        ensure!(receipt.status(), "commitEvidence failed: {receipt:?}");
        // The bindings' struct is another Rust type for the same ABI tuple.
        let bound = Bound::Evidence::abi_decode(&evidence.abi_encode())?;
        let call = adjudicator.evaluateCFrag(bound);
        // An eth_call runs on the latest block, the commitment's: mine past it first.
        self.chain.mine(1).await?;
        // eth_call first: a transaction that fails at gas estimation would still take a nonce
        // from the provider's nonce cache, and the next one would wait for it forever.
        if let Err(err) = call.call().await {
            let decoded = err
                .as_decoded_interface_error::<AdjudicatorErrors>()
                .ok_or_else(|| anyhow!("not an Adjudicator error: {err:?}"))?;
            return Ok(Observed::Reverted(decoded));
        }
        let receipt = call
            .send()
            .await?
            .with_timeout(Some(std::time::Duration::from_secs(30)))
            .get_receipt()
            .await?;
        ensure!(
            receipt.status(),
            "evaluateCFrag failed on chain: {receipt:?}"
        );
        let event = receipt
            .decoded_log::<Adjudicator::CFragEvaluated>()
            .context("no CFragEvaluated event")?;
        ensure!(event.address == self.d.adjudicator);
        let hash = keccak256([&evidence.capsule[..], &evidence.cfrag[..]].concat());
        ensure!(event.evidenceHash == hash, "evidence hash");
        ensure!(event.staker == self.staker, "staker");
        ensure!(event.investigator == self.investigator, "investigator");
        ensure!(event.policyId == evidence.policyId, "policy id");
        ensure!(event.worker == self.worker.address(), "worker");
        let verdict: u8 = event.verdict;
        let (stake_after, balance_after) =
            (self.stake().await?, self.investigator_balance().await?);
        if verdict == Verdict::Correct as u8 {
            ensure!(
                event.penalty.is_zero() && event.reward.is_zero(),
                "{event:?}"
            );
            ensure!(stake_after == stake, "a correct cfrag moved the stake");
            ensure!(
                balance_after == balance,
                "a correct cfrag paid the investigator"
            );
        } else {
            ensure!(!penalty.is_zero(), "penaltyFor quoted nothing");
            ensure!(
                (event.penalty, event.reward) == (penalty, reward),
                "event {:?} vs penaltyFor {:?}",
                (event.penalty, event.reward),
                (penalty, reward)
            );
            ensure!(
                stake_after == stake - penalty,
                "stake {stake} -> {stake_after}, penalty {penalty}"
            );
            ensure!(
                balance_after == balance + reward,
                "investigator {balance} -> {balance_after}, reward {reward}"
            );
        }
        Ok(Observed::Evaluated {
            verdict,
            penalty: event.penalty,
            reward: event.reward,
        })
    }

    /// The model's prediction, then the submission: they must agree.
    async fn check(&self, label: &str, evidence: &Evidence) -> Result<(Outcome, Observed)> {
        let model = self.model(evidence).await?;
        let observed = self.submit(evidence).await?;
        ensure!(
            agrees(&model, &observed),
            "{label}: the model says {model:?}, the contract did {observed:?}"
        );
        Ok((model, observed))
    }
}

fn random_point(rng: &mut ChaCha20Rng, not: &[u8]) -> [u8; 33] {
    loop {
        let point = (ProjectivePoint::GENERATOR * *NonZeroScalar::random(&mut *rng))
            .to_affine()
            .to_encoded_point(true);
        if point.as_bytes() != not {
            let mut bytes = [0u8; 33];
            bytes.copy_from_slice(point.as_bytes());
            return bytes;
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

fn with_field(bytes: &[u8], range: core::ops::Range<usize>, value: &[u8]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    bytes[range].copy_from_slice(value);
    bytes
}

/// An honest answer: Enrico encrypts a random message to Alice, Alice makes 2-of-3 kfrags for
/// Bob, one of them re-encrypts. Returns `(capsule_simple, cfrag_simple)`.
fn honest_answer(rng: &mut ChaCha20Rng, policy: &Policy) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut message = vec![0u8; 1 + (rng.next_u32() % 64) as usize];
    rng.fill_bytes(&mut message);
    let (capsule, _ciphertext) = encrypt_with_rng(&mut *rng, &policy.delegating_pk(), &message)
        .map_err(|err| anyhow!("encrypt: {err}"))?;
    let kfrags = generate_kfrags_with_rng(
        &mut *rng,
        &policy.alice,
        &policy.receiving_pk(),
        &policy.signer,
        2,
        3,
        true,
        true,
    );
    let kfrag = kfrags[(rng.next_u32() % 3) as usize].clone();
    let cfrag = reencrypt_with_rng(&mut *rng, &capsule, kfrag).unverify();
    Ok((
        capsule.to_bytes_simple().to_vec(),
        cfrag.to_bytes_simple().to_vec(),
    ))
}

#[tokio::test]
async fn random_scenarios_agree_with_the_model() -> Result<()> {
    let seed = seed("random_scenarios_agree_with_the_model")?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let setup = Setup::start().await?;
    let fields = ["e1", "v1", "e2", "v2", "u2", "z"];

    for scenario in 0..SCENARIOS {
        let ctx = |what: &str| format!("seed {seed}, scenario {scenario}: {what}");
        let policy = setup.create_policy(&mut rng).await?;
        let (capsule, cfrag) = honest_answer(&mut rng, &policy)?;
        let valid = setup.evidence(&policy, &capsule, &cfrag)?;

        // Rejected: the valid evidence with the kfrag signature's recovery bit flipped. Submitted
        // first: once the valid evidence is evaluated, any evidence with the same capsule and
        // cfrag reverts `AlreadyEvaluated` before the kfrag signature is looked at.
        let mut flipped = valid.clone();
        flipped.kfragSignatureV = !flipped.kfragSignatureV;
        let (model, observed) = setup.check(&ctx("flipped v"), &flipped).await?;
        ensure!(model == Outcome::KfragSignature, "{}", ctx("flipped v"));
        match observed {
            Observed::Reverted(AdjudicatorErrors::Adjudicator_KfragSignatureMismatch(e)) => {
                ensure!(e.expected == policy.kfrag_signer, "{e:?}");
                ensure!(e.recovered != policy.kfrag_signer, "{e:?}");
            }
            other => bail!("{}: {other:?}", ctx("flipped v")),
        }

        // The honest answer: verdict Correct, nothing moves.
        let (model, observed) = setup.check(&ctx("valid"), &valid).await?;
        ensure!(model == Outcome::Correct, "{}: {model:?}", ctx("valid"));
        ensure!(
            matches!(observed, Observed::Evaluated { verdict: 0, .. }),
            "{}: {observed:?}",
            ctx("valid")
        );

        // Evaluated once.
        let observed = setup.submit(&valid).await?;
        ensure!(
            matches!(
                observed,
                Observed::Reverted(AdjudicatorErrors::Adjudicator_AlreadyEvaluated(_))
            ),
            "{}: {observed:?}",
            ctx("resubmitted")
        );

        // A proof field of the node's own computation, replaced and re-signed: slashed.
        let field = fields[(rng.next_u32() as usize) % fields.len()];
        let tampered = match field {
            "z" => with_field(
                &cfrag,
                layout::Z,
                &random_scalar(&mut rng, &cfrag[layout::Z]),
            ),
            point => {
                let range = match point {
                    "e1" => layout::E1,
                    "v1" => layout::V1,
                    "e2" => layout::E2,
                    "v2" => layout::V2,
                    _ => layout::U2,
                };
                let replacement = random_point(&mut rng, &cfrag[range.clone()]);
                with_field(&cfrag, range, &replacement)
            }
        };
        let evidence = setup.evidence(&policy, &capsule, &tampered)?;
        let label = ctx(&format!("tampered {field}"));
        let (model, observed) = setup.check(&label, &evidence).await?;
        ensure!(matches!(model, Outcome::Slash(_)), "{label}: {model:?}");
        match observed {
            Observed::Evaluated {
                verdict, reward, ..
            } => {
                ensure!(verdict != Verdict::Correct as u8, "{label}");
                ensure!(!reward.is_zero(), "{label}: no reward");
            }
            other => bail!("{label}: {other:?}"),
        }
        eprintln!("seed {seed}, scenario {scenario}: tampered {field}: {model:?}");
    }
    Ok(())
}

/// The checks a random tampering does not reach: each of the contract's verdicts and custom
/// errors, from the same chain, model first.
#[tokio::test]
async fn every_verdict_and_error_agrees_with_the_model() -> Result<()> {
    let seed = seed("every_verdict_and_error_agrees_with_the_model")?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let setup = Setup::start().await?;
    let policy = setup.create_policy(&mut rng).await?;
    let (capsule, cfrag) = honest_answer(&mut rng, &policy)?;
    let valid = setup.evidence(&policy, &capsule, &cfrag)?;
    let mut cases: Vec<(String, Evidence, Outcome)> = Vec::new();
    let mut case = |label: &str, evidence: Evidence, expected: Outcome| {
        cases.push((label.to_owned(), evidence, expected));
    };

    // Rejections first (they leave the capsule and cfrag unevaluated).
    let mut e = valid.clone();
    e.policyId = [0xee; 16].into();
    e.workerSignature = setup.sign_for(&e)?.into();
    case("unknown policy", e, Outcome::PolicyNotFound);
    let mut e = valid.clone();
    e.delegatingKey = [&[0x04u8][..], &valid.delegatingKey[1..]].concat().into();
    case("delegating key not a point", e, Outcome::KfragSignature);
    let mut e = valid.clone();
    e.receivingKey = valid.receivingKey[..32].to_vec().into();
    case("short receiving key", e, Outcome::Malformed("key length"));
    let mut e = valid.clone();
    let s = N - U256::from_be_slice(&valid.workerSignature[32..64]);
    let mut high_s = valid.workerSignature.to_vec();
    high_s[32..64].copy_from_slice(&s.to_be_bytes::<32>());
    high_s[64] ^= 27 ^ 28;
    e.workerSignature = high_s.into();
    case(
        "high-s worker signature",
        e,
        Outcome::InvalidWorkerSignature,
    );
    let mut e = valid.clone();
    e.workerSignature = valid.workerSignature[..64].to_vec().into();
    case(
        "64-byte worker signature",
        e,
        Outcome::InvalidWorkerSignature,
    );
    let mut e = valid.clone();
    let outsider = setup.chain.signer(INVESTIGATOR)?;
    e.workerSignature = sign_answer(&outsider, &setup.context(policy.id), &capsule, &cfrag)?
        .as_bytes()
        .to_vec()
        .into();
    case("signed by an outsider", e, Outcome::NotBondedInPeriod);
    // The answer names another staker, or a period the worker was not yet bonded in, or one
    // that has not started: the signature covers them, so the worker re-signs as a liar would.
    let resigned = |context: AnswerContext| -> Result<Evidence> {
        let signature = sign_answer(&setup.worker, &context, &capsule, &cfrag)?;
        Ok(Evidence::from_parts(
            &capsule,
            &cfrag,
            &policy.delegating_pk(),
            &policy.receiving_pk(),
            policy.kfrag_signer,
            &context,
            &signature.as_bytes(),
        )?)
    };
    let base = setup.context(policy.id);
    let other_staker = AnswerContext {
        staker: setup.investigator,
        ..base
    };
    case(
        "names another staker",
        resigned(other_staker)?,
        Outcome::NotBondedInPeriod,
    );
    let before_bond = AnswerContext {
        period: base.period - 1,
        ..base
    };
    case(
        "names a period before the bond",
        resigned(before_bond)?,
        Outcome::NotBondedInPeriod,
    );
    let future = AnswerContext {
        period: setup.chain_period().await? + 1,
        ..base
    };
    case(
        "names a future period",
        resigned(future)?,
        Outcome::PeriodInFuture,
    );
    let mut e = valid.clone();
    e.ys[3] = U256::from_be_bytes(alloy::primitives::hex!(
        "fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f"
    )) - e.ys[3];
    case("wrong parity of V1", e, Outcome::Malformed("point"));
    let mut e = valid.clone();
    e.u1h.y += U256::from(1);
    case("product off the curve", e, Outcome::Malformed("product"));
    let high_capsule = with_field(&capsule, layout::E, &high_x_point(0, false));
    let e = setup.evidence(&policy, &high_capsule, &cfrag)?;
    case("capsule E with x >= n", e, Outcome::Malformed("product"));

    // Evaluated: each verdict.
    for (label, z) in [("z = 0", U256::ZERO), ("z = n", N)] {
        let bad = with_field(&cfrag, layout::Z, &z.to_be_bytes::<32>());
        let e = setup.evidence(&policy, &capsule, &bad)?;
        case(label, e, Outcome::Slash(Verdict::InvalidZ));
    }
    for (label, range, odd) in [
        ("E1 with x >= n", layout::E1, true),
        ("V1 with x >= n", layout::V1, false),
    ] {
        let bad = with_field(&cfrag, range, &high_x_point(0, odd));
        let e = setup.evidence(&policy, &capsule, &bad)?;
        case(label, e, Outcome::Slash(Verdict::UncheckablePoint));
    }
    for cheat in Cheat::ALL {
        let forged = synthetic_cfrag(
            &mut rng,
            &capsule,
            &policy.delegating_pk(),
            &policy.receiving_pk(),
            &policy.signer,
            cheat,
        )?;
        let e = setup.evidence(&policy, &capsule, &forged)?;
        case(
            &format!("synthetic {cheat:?}"),
            e,
            Outcome::from(cheat.verdict()),
        );
    }
    case("valid", valid.clone(), Outcome::Correct);

    let mut seen = std::collections::BTreeSet::new();
    for (label, evidence, expected) in &cases {
        let (model, observed) = setup.check(label, evidence).await?;
        ensure!(
            model == *expected,
            "seed {seed}, {label}: the model says {model:?}"
        );
        if let Some(verdict) = model.verdict() {
            seen.insert(verdict as u8);
        }
        eprintln!("seed {seed}, {label}: {model:?} / {observed:?}");
    }
    ensure!(seen.len() == Verdict::ALL.len(), "verdicts seen: {seen:?}");

    // A wrong answer reported after its evidence window: refused, by the model and the chain.
    let two = with_field(&cfrag, layout::Z, &U256::from(2).to_be_bytes::<32>());
    let late = setup.evidence(&policy, &capsule, &two)?;
    let window = setup
        .d
        .staking_escrow(setup.chain.read_provider())
        .evidenceWindow()
        .call()
        .await?;
    let jump = (u64::try_from(window)? + 1) * SECONDS_PER_PERIOD;
    setup.chain.travel(jump).await?;
    let (model, _) = setup.check("after the evidence window", &late).await?;
    ensure!(
        model == Outcome::Expired,
        "seed {seed}: the model says {model:?}"
    );
    Ok(())
}
