//! The policy, the capsules and the fake chain the bench node serves.

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::{
    primitives::{Address, Signature, B256},
    signers::local::PrivateKeySigner,
};
use anyhow::{anyhow, Context, Result};
use kms_crypto::{
    answer::{sign_answer, AnswerContext, AnswerError},
    keys::MasterSecret,
    test_utils::PolicyKeys,
    wire::{KfragUpload, ReencryptRequest},
};
use umbral_pre::{
    encrypt, Capsule, DefaultSerialize, SecretKey, VerifiedCapsuleFrag, VerifiedKeyFrag,
};

pub(crate) const CHAIN_ID: u64 = 31337;
/// The Adjudicator the bench node's answers name (no chain here: any address).
pub(crate) const ADJUDICATOR: Address = Address::repeat_byte(0xad);
pub(crate) const SECONDS_PER_PERIOD: u64 = 86_400;

/// The context of the bench node's answers in `period`.
pub(crate) fn answer_context(fx: &Fixture, period: u64) -> AnswerContext {
    AnswerContext {
        chain_id: CHAIN_ID,
        adjudicator: ADJUDICATOR,
        staker: fx.staker,
        period,
        policy_id: POLICY_ID,
    }
}

pub(crate) fn current_period() -> u64 {
    unix_now() / SECONDS_PER_PERIOD
}
pub(crate) const POLICY_ID: [u8; 16] = [0x42; 16];
/// Distinct capsules the requests draw from; with the timestamp they make every request unique.
pub(crate) const CAPSULE_POOL: usize = 2048;

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The bench node's worker, Umbral key and staker: fixed, so that a node started as another
/// process (`--pinned`, `--scale`) is the one the fixture's requests and answers name.
pub(crate) fn node_keys() -> (PrivateKeySigner, SecretKey, Address) {
    let worker = match PrivateKeySigner::from_bytes(&B256::repeat_byte(0x77)) {
        Ok(worker) => worker,
        Err(_) => unreachable!("0x77..77 is a valid secp256k1 secret key"),
    };
    let umbral = MasterSecret::from_seed([0x55; 32]).node_key();
    (worker, umbral, Address::repeat_byte(0x5a))
}

/// Alice, Bob, the kfrag signer, one policy's kfrag and the capsules Bob asks about.
pub(crate) struct Fixture {
    pub(crate) keys: PolicyKeys,
    pub(crate) kfrag: VerifiedKeyFrag,
    /// The node's worker (answer signatures) and Umbral key.
    pub(crate) worker: PrivateKeySigner,
    pub(crate) node_umbral: SecretKey,
    pub(crate) staker: Address,
    pub(crate) capsules: Vec<Capsule>,
    /// Each capsule's default serialization (what requests carry).
    pub(crate) capsule_bytes: Vec<Vec<u8>>,
}

impl Fixture {
    pub(crate) fn new() -> Result<Self> {
        let keys = PolicyKeys::random();
        let kfrag = keys
            .kfrags(1, 1)
            .pop()
            .ok_or_else(|| anyhow!("generate_kfrags returned no kfrag"))?;
        let mut capsules = Vec::with_capacity(CAPSULE_POOL);
        let mut capsule_bytes = Vec::with_capacity(CAPSULE_POOL);
        for i in 0..CAPSULE_POOL {
            let (capsule, _) = encrypt(
                &keys.delegating.public_key(),
                format!("message {i}").as_bytes(),
            )
            .map_err(|e| anyhow!("encrypt: {e}"))?;
            capsule_bytes.push(capsule.to_bytes().context("capsule to_bytes")?.into_vec());
            capsules.push(capsule);
        }
        let (worker, node_umbral, staker) = node_keys();
        Ok(Self {
            keys,
            kfrag,
            worker,
            node_umbral,
            staker,
            capsules,
            capsule_bytes,
        })
    }

    /// Bob's signed request for the first capsule, now.
    pub(crate) fn first_request(&self) -> ReencryptRequest {
        ReencryptRequest::sign(
            &self.keys.bob,
            POLICY_ID,
            self.staker,
            unix_now(),
            &self.capsule_bytes[..1],
        )
    }

    /// The worker's signature of `cfrag` for `capsule` in the current period (what the node
    /// sends with each cfrag).
    pub(crate) fn sign_answer(
        &self,
        capsule: &Capsule,
        cfrag: &VerifiedCapsuleFrag,
    ) -> Result<Signature, AnswerError> {
        sign_answer(
            &self.worker,
            &answer_context(self, current_period()),
            &capsule.to_bytes_simple(),
            &cfrag.to_bytes_simple(),
        )
    }

    pub(crate) fn upload(&self) -> Result<KfragUpload> {
        Ok(self.keys.seal(
            &self.kfrag,
            &self.node_umbral.public_key(),
            self.staker,
            POLICY_ID,
        )?)
    }
}
