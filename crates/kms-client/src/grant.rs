//! Alice's side: granting a policy in two steps (a [`GrantPlan`] to confirm, then its
//! execution), revoking it, and collecting refunds.
//!
//! [`Client::plan_grant`] samples the nodes (see [`crate::sampling`]), asks each one over HTTP
//! who it is (and replaces those that do not answer as their on-chain record says), and computes
//! the fee exactly as `PolicyManager.createPolicy` will. [`Client::execute_grant`] makes the
//! kfrags, creates the policy on chain (simulated first), then hands each node its kfrag,
//! encrypted to the node's Umbral key from its on-chain record.

use std::future::Future;

use alloy::{
    primitives::{keccak256, Address, FixedBytes, B256, U256},
    providers::Provider,
};
use futures_util::future::join_all;
use kms_contracts::PolicyManager;
use kms_crypto::wire::{encode_public_key, KfragUpload};
use rand_core::{OsRng, RngCore};
use umbral_pre::{generate_kfrags, PublicKey, SecretKey, Signer};

use crate::{
    chain::{event_of, policy_manager_revert, transact, ChainError},
    client::Client,
    http::NodeError,
    policy::{PolicyFile, PolicyNode, MAX_NODES},
    sampling::{
        candidates, read_min_fee_rates, sample_nodes, Candidates, Excluded, NodeChecks,
        SamplingError,
    },
};

/// The domain tag of the policy id derivation.
pub const POLICY_ID_TAG: &[u8; 16] = b"KMS_POLICY_ID_V1";

/// What Alice asks for.
#[derive(Debug, Clone)]
pub struct GrantRequest {
    /// The label the delegating key was derived for (recorded in the policy file and hashed
    /// into the policy id).
    pub label: String,
    /// The policy's owner: receives refunds and may revoke.
    pub owner: Address,
    /// The provider's account, which sends `createPolicy` and pays: the on-chain policy id is
    /// derived from it and the salt (`PolicyManager.policyIdOf`), so nobody can take it first.
    pub creator: Address,
    /// The policy's public key: Alice's delegating public key for the label.
    pub delegating_key: PublicKey,
    /// The kfrag signer's public key (its Ethereum address becomes the policy's `kfragSigner`).
    pub verifying_key: PublicKey,
    /// Bob's public key.
    pub receiving_key: PublicKey,
    /// The sender keys authorized to encrypt to the policy, recorded in the policy file
    /// ([`PolicyFile::senders`]); nothing of them goes on chain.
    pub senders: Vec<PublicKey>,
    /// Capsule fragments Bob will need (`m`).
    pub threshold: usize,
    /// Nodes, one kfrag each (`n`, at most 32).
    pub shares: usize,
    /// When the policy ends (Unix seconds).
    pub end_timestamp: u64,
    /// Wei per node per period.
    pub fee_rate: U256,
    /// Seed of the node sampling: the same seed on the same chain state picks the same nodes.
    pub seed: u64,
    /// Salt of the policy id; `None` draws a random one (see [`policy_id`]).
    pub salt: Option<[u8; 32]>,
}

/// What a grant will do, for Alice to confirm before anything is sent.
#[derive(Debug, Clone)]
pub struct GrantPlan {
    /// The policy file the grant will return (the nodes sampled and checked).
    pub policy: PolicyFile,
    /// The salt of the policy id.
    pub salt: [u8; 32],
    /// The period the fee was computed at (the chain's latest block).
    pub current_period: u64,
    /// The policy's last period: that of `end_timestamp - 1`.
    pub last_period: u64,
    /// Periods paid: `last_period - current_period + 1`.
    pub periods: u64,
    /// `fee_rate * shares * periods` wei: what `createPolicy` will be sent. If a period ends
    /// before execution, the execution pays for one period less.
    pub total_fee: U256,
    /// Active stakers left out, and why: those without a usable node record, and those drawn
    /// and left out (asking more than the fee rate, not answering as their record says). Stakers
    /// never drawn are not checked, and not listed.
    pub excluded: Vec<Excluded>,
}

/// One node's kfrag upload.
#[derive(Debug, Clone)]
pub struct UploadReport {
    /// The node.
    pub node: PolicyNode,
    /// `Ok(true)`: stored; `Ok(false)`: the node already held this kfrag; `Err`: why not.
    pub result: Result<bool, String>,
    /// The upload (the kfrag encrypted to the node's key: only the node can read it), kept so
    /// that a failed one can be sent again with [`Client::upload_kfrag`]. A node accepts no
    /// other kfrag for the policy, and no other kfrag of this policy will ever be made.
    pub upload: KfragUpload,
}

/// What a grant did.
#[derive(Debug, Clone)]
pub struct GrantOutcome {
    /// The policy file to hand to Bob (and keep for revocation and refunds).
    pub policy: PolicyFile,
    /// The `createPolicy` transaction.
    pub tx_hash: B256,
    /// Wei paid.
    pub paid: U256,
    /// Each node's upload, in the policy's node order.
    pub uploads: Vec<UploadReport>,
}

impl GrantOutcome {
    /// How many nodes hold their kfrag.
    pub fn uploaded(&self) -> usize {
        self.uploads.iter().filter(|u| u.result.is_ok()).count()
    }

    /// Whether at least `threshold` nodes hold their kfrag, so that Bob can decrypt.
    pub fn is_usable(&self) -> bool {
        self.uploaded() >= self.policy.threshold
    }
}

/// What a revocation or refund paid back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refunded {
    /// The transaction.
    pub tx_hash: B256,
    /// The block it was mined in.
    pub block: u64,
    /// Wei sent to the policy's owner.
    pub amount: U256,
}

impl Refunded {
    pub(crate) fn of(receipt: &alloy::rpc::types::TransactionReceipt, amount: U256) -> Self {
        Self {
            tx_hash: receipt.transaction_hash,
            block: receipt.block_number.unwrap_or_default(),
            amount,
        }
    }
}

/// What [`Client::extend`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extended {
    /// The transaction.
    pub tx_hash: B256,
    /// The block it was mined in.
    pub block: u64,
    /// Wei paid: the fee rate x the nodes still serving x the periods added.
    pub paid: U256,
    /// The new end (Unix seconds).
    pub end_timestamp: u64,
    /// The policy's new last period.
    pub last_period: u64,
}

/// How far a node has read the chain ([`Client::wait_for_nodes_at`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHead {
    /// The node's staker.
    pub staker: Address,
    /// Its URL.
    pub url: String,
    /// The last block it has read (`None`: none yet), or why it did not answer.
    pub head: Result<Option<u64>, String>,
}

/// Why a grant failed.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The request is not acceptable; the message says which part.
    #[error("invalid grant: {0}")]
    Invalid(String),
    /// Not enough nodes, or the chain could not be read.
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    /// A transaction or read failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A secret key is not the one the plan was made with.
    #[error(
        "the {0} secret key is not the one the plan was made with: plan again with its public key"
    )]
    KeyMismatch(&'static str),
    /// Umbral failed to serialize or encrypt a kfrag.
    #[error("could not prepare the kfrag for node {node}: {reason}")]
    Kfrag {
        /// The node's staker.
        node: Address,
        /// Why.
        reason: String,
    },
}

/// The policy id: `PolicyManager.policyIdOf(creator, policy_salt(label, keys, salt))`, the first
/// 16 bytes of `keccak256(creator || policy_salt)`.
pub fn policy_id(
    creator: Address,
    label: &str,
    receiving_key: &PublicKey,
    delegating_key: &PublicKey,
    salt: &[u8; 32],
) -> [u8; 16] {
    kms_crypto::policy_id_of(
        creator,
        policy_salt(label, receiving_key, delegating_key, salt),
    )
}

/// The 16-byte salt `createPolicy` takes: the first 16 bytes of `keccak256("KMS_POLICY_ID_V1" ||
/// u32_be(len(label)) || label || receiving key (33, compressed) || delegating key (33,
/// compressed) || salt (32))`.
///
/// The salt makes two grants of the same label to the same Bob two policies (after a
/// revocation, say); the label and keys in the hash let Alice recompute an id from her records.
pub fn policy_salt(
    label: &str,
    receiving_key: &PublicKey,
    delegating_key: &PublicKey,
    salt: &[u8; 32],
) -> [u8; 16] {
    let label = label.as_bytes();
    let mut preimage = Vec::with_capacity(16 + 4 + label.len() + 33 + 33 + 32);
    preimage.extend_from_slice(POLICY_ID_TAG);
    // Labels are short; a length past u32 is refused by `validate` before it gets here.
    preimage.extend_from_slice(&u32::try_from(label.len()).unwrap_or(u32::MAX).to_be_bytes());
    preimage.extend_from_slice(label);
    preimage.extend_from_slice(&receiving_key.to_compressed_bytes());
    preimage.extend_from_slice(&delegating_key.to_compressed_bytes());
    preimage.extend_from_slice(salt);
    let hash = keccak256(&preimage);
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash[..16]);
    id
}

/// The periods a policy ending at `end_timestamp` pays for if created at `now` (Unix seconds),
/// as `createPolicy` counts them: `(current, last, last - current + 1)` with
/// `current = now / seconds_per_period` and `last = (end - 1) / seconds_per_period`. `None` if
/// the policy would already have ended.
pub fn policy_periods(
    now: u64,
    end_timestamp: u64,
    seconds_per_period: u64,
) -> Option<(u64, u64, u64)> {
    if end_timestamp <= now || seconds_per_period == 0 {
        return None;
    }
    let current = now / seconds_per_period;
    let last = (end_timestamp - 1) / seconds_per_period;
    Some((current, last, last - current + 1))
}

/// `fee_rate * nodes * periods`, the `msg.value` of `createPolicy`; `None` on overflow.
pub fn policy_fee(fee_rate: U256, nodes: usize, periods: u64) -> Option<U256> {
    fee_rate
        .checked_mul(U256::from(nodes))?
        .checked_mul(U256::from(periods))
}

fn validate(request: &GrantRequest) -> Result<(), GrantError> {
    let invalid = |m: String| Err(GrantError::Invalid(m));
    if request.shares == 0 || request.shares > MAX_NODES {
        return invalid(format!(
            "shares is {}, must be 1 to {MAX_NODES}",
            request.shares
        ));
    }
    if request.threshold == 0 || request.threshold > request.shares {
        return invalid(format!(
            "threshold is {}, must be 1 to shares ({})",
            request.threshold, request.shares
        ));
    }
    if request.fee_rate.is_zero() {
        return invalid("the fee rate must be above zero".into());
    }
    if request.fee_rate >= U256::from(1u8) << 80 {
        return invalid(format!(
            "the fee rate {} wei does not fit in the contract's 80 bits",
            request.fee_rate
        ));
    }
    if request.end_timestamp > u64::from(u32::MAX) {
        return invalid(format!(
            "the end time {} is past the contract's limit (year 2106)",
            request.end_timestamp
        ));
    }
    if request.creator.is_zero() {
        return invalid("the creator (the paying account) must not be the zero address".into());
    }
    if request.owner.is_zero() {
        return invalid("the owner must not be the zero address".into());
    }
    if request.label.len() > 4096 {
        return invalid("the label is longer than 4096 bytes".into());
    }
    Ok(())
}

/// Why a node's answer to `GET /v1/node` does not match its record; `None` if it does.
fn identity_mismatch(
    node: &PolicyNode,
    info: &kms_crypto::wire::NodeInfo,
    chain_id: u64,
) -> Option<String> {
    if info.staker != node.staker {
        return Some(format!(
            "serves staker {}, not {} as its record says",
            info.staker, node.staker
        ));
    }
    if info.worker != node.worker {
        return Some(format!(
            "signs with worker {}, the chain has {} bonded",
            info.worker, node.worker
        ));
    }
    if info.chain_id != chain_id {
        return Some(format!("serves chain {}, not {chain_id}", info.chain_id));
    }
    let announced = kms_crypto::wire::decode_public_key("umbralPublicKey", &info.umbral_public_key);
    if announced.ok().as_ref() != Some(&node.umbral_public_key) {
        return Some(format!(
            "announces Umbral key {}, its on-chain record has {}",
            info.umbral_public_key,
            encode_public_key(&node.umbral_public_key)
        ));
    }
    None
}

/// The draw's checks, on the chain and over HTTP.
impl<P: Provider> NodeChecks for Client<P> {
    fn min_fee_rates(
        &self,
        stakers: &[Address],
        block: u64,
    ) -> impl Future<Output = Result<Vec<U256>, ChainError>> + Send {
        read_min_fee_rates(&self.provider, &self.deployment, stakers, block)
    }

    fn probe(&self, node: &PolicyNode) -> impl Future<Output = Result<(), String>> + Send {
        self.probe_identity(node)
    }
}

impl<P: Provider> Client<P> {
    /// Asks the node at `node.url` who it is and compares with `node` (from the chain).
    async fn probe_identity(&self, node: &PolicyNode) -> Result<(), String> {
        let info = self
            .nodes
            .node_info(&node.url)
            .await
            .map_err(|e| format!("GET /v1/node: {e}"))?;
        match identity_mismatch(node, &info, self.deployment.chain_id) {
            Some(reason) => Err(format!("the node at {} {reason}", node.url)),
            None => Ok(()),
        }
    }

    /// Draws `wanted` nodes from `found` by stake (the same `seed` on the same chain state
    /// draws the same ones), leaving out the stakers in `exclude`: checks each drawn node's fee
    /// minimum at the candidates' block and asks it over HTTP who it is; one that asks more than
    /// `found.fee_rate` or does not answer as its on-chain record says is left out (with the
    /// reason) and the next one drawn, until `wanted` qualify or the candidates run out. The
    /// nodes come back ordered by staker, as a policy lists them.
    ///
    /// The draw orders every candidate; the nodes are the first `wanted` in that order that
    /// qualify. Each round draws what is missing and reads those fee minimums at once (and,
    /// after one asked too much, more ahead: that never changes the result). Stakers never drawn
    /// are not checked, so the excluded list names those without a usable record and those drawn
    /// and left out; when the draw runs out ([`SamplingError::NotEnoughNodes`]), every candidate
    /// has been checked.
    pub async fn sample_reachable(
        &self,
        found: &Candidates,
        wanted: usize,
        seed: u64,
        exclude: &[Address],
    ) -> Result<(Vec<PolicyNode>, Vec<Excluded>), SamplingError> {
        sample_nodes(self, found, wanted, seed, exclude).await
    }

    /// Step one of a grant: samples and checks the nodes and computes the fee. Sends nothing.
    pub async fn plan_grant(&self, request: &GrantRequest) -> Result<GrantPlan, GrantError> {
        validate(request)?;
        let found = candidates(
            &self.provider,
            &self.deployment,
            request.end_timestamp,
            request.fee_rate,
        )
        .await?;
        let wanted = request.shares;
        let (chosen, excluded) = self
            .sample_reachable(&found, wanted, request.seed, &[])
            .await?;

        let spp = self.deployment.seconds_per_period;
        let (current_period, last_period, periods) =
            policy_periods(found.timestamp, request.end_timestamp, spp).ok_or_else(|| {
                GrantError::Invalid("the policy would end before it starts".into())
            })?;
        let total_fee = policy_fee(request.fee_rate, wanted, periods)
            .ok_or_else(|| GrantError::Invalid("the total fee overflows 256 bits".into()))?;
        let salt = request.salt.unwrap_or_else(|| {
            let mut salt = [0u8; 32];
            OsRng.fill_bytes(&mut salt);
            salt
        });
        let policy = PolicyFile {
            chain_id: self.deployment.chain_id,
            policy_manager: self.deployment.policy_manager,
            policy_id: policy_id(
                request.creator,
                &request.label,
                &request.receiving_key,
                &request.delegating_key,
                &salt,
            ),
            label: request.label.clone(),
            owner: request.owner,
            delegating_key: request.delegating_key,
            verifying_key: request.verifying_key,
            receiving_key: request.receiving_key,
            senders: request.senders.clone(),
            threshold: request.threshold,
            shares: wanted,
            end_timestamp: request.end_timestamp,
            fee_rate: request.fee_rate,
            nodes: chosen,
        };
        Ok(GrantPlan {
            policy,
            salt,
            current_period,
            last_period,
            periods,
            total_fee,
            excluded,
        })
    }

    /// Step two: makes the kfrags, creates the policy on chain paying the fee from the
    /// provider's account, and uploads each node's kfrag (concurrently, with retries).
    ///
    /// `delegating_sk` and `signer_sk` must be the secret keys of the plan's delegating and
    /// verifying keys. The fee is recomputed at the latest block: if a period ended since the
    /// plan, one period less is paid. A failed upload does not fail the grant (the policy exists
    /// and is paid for): see [`GrantOutcome::is_usable`] and [`UploadReport::upload`].
    pub async fn execute_grant(
        &self,
        plan: &GrantPlan,
        delegating_sk: &SecretKey,
        signer_sk: &SecretKey,
    ) -> Result<GrantOutcome, GrantError> {
        let policy = &plan.policy;
        if delegating_sk.public_key() != policy.delegating_key {
            return Err(GrantError::KeyMismatch("delegating"));
        }
        if signer_sk.public_key() != policy.verifying_key {
            return Err(GrantError::KeyMismatch("kfrag signer"));
        }
        self.check_policy_home(policy.chain_id, policy.policy_manager)?;

        let what = "creating the policy";
        let latest = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| ChainError::rpc(what, e))?
            .ok_or_else(|| ChainError::rpc(what, "no latest block"))?;
        let (_, _, periods) = policy_periods(
            latest.header.timestamp,
            policy.end_timestamp,
            self.deployment.seconds_per_period,
        )
        .ok_or_else(|| GrantError::Invalid("the policy's end time has passed".into()))?;
        let value = policy_fee(policy.fee_rate, policy.shares, periods)
            .ok_or_else(|| GrantError::Invalid("the total fee overflows 256 bits".into()))?;

        // The kfrags are made and encrypted before anything is paid: a failure here costs
        // nothing.
        let kfrag_signer = Signer::new(signer_sk.clone());
        let kfrags = generate_kfrags(
            delegating_sk,
            &policy.receiving_key,
            &kfrag_signer,
            policy.threshold,
            policy.shares,
            true,
            true,
        );
        let mut uploads = Vec::with_capacity(policy.shares);
        for (node, kfrag) in policy.nodes.iter().zip(kfrags.iter()) {
            let upload = KfragUpload::seal(
                kfrag,
                &node.umbral_public_key,
                node.staker,
                policy.policy_id,
                (&policy.delegating_key, &policy.receiving_key),
                &kfrag_signer,
            )
            .map_err(|e| GrantError::Kfrag {
                node: node.staker,
                reason: e.to_string(),
            })?;
            uploads.push(upload);
        }

        let manager = self.deployment.policy_manager(&self.provider);
        let call = manager
            .createPolicy(
                FixedBytes(policy_salt(
                    &policy.label,
                    &policy.receiving_key,
                    &policy.delegating_key,
                    &plan.salt,
                )),
                policy.owner,
                policy.kfrag_signer(),
                U256::from(policy.end_timestamp),
                policy.stakers(),
            )
            .value(value);
        let receipt = transact(what, call, policy_manager_revert, self.receipt_timeout).await?;
        let tx_hash = receipt.transaction_hash;
        let created: PolicyManager::PolicyCreated = event_of(what, &receipt)?;
        if created.policyId.0 != policy.policy_id {
            // The id is the sender's: a request whose creator is not the provider's account.
            return Err(ChainError::Mismatch(format!(
                "the chain created policy {} but the plan expected {}: the grant's creator must be \
                 the account that sends the transaction",
                created.policyId,
                FixedBytes(policy.policy_id)
            ))
            .into());
        }

        let results = join_all(
            policy
                .nodes
                .iter()
                .zip(&uploads)
                .map(|(node, upload)| self.upload_kfrag(policy.policy_id, node, upload)),
        )
        .await;
        let uploads = policy
            .nodes
            .iter()
            .zip(uploads)
            .zip(results)
            .map(|((node, upload), result)| UploadReport {
                node: node.clone(),
                result,
                upload,
            })
            .collect();
        Ok(GrantOutcome {
            policy: policy.clone(),
            tx_hash,
            paid: value,
            uploads,
        })
    }

    /// Hands `node` its kfrag for `policy_id`, after checking with `GET /v1/node` that the
    /// node at the URL is the one the kfrag was encrypted for. Returns whether the node stored
    /// it now (`false`: it already held it).
    pub async fn upload_kfrag(
        &self,
        policy_id: [u8; 16],
        node: &PolicyNode,
        upload: &KfragUpload,
    ) -> Result<bool, String> {
        self.probe_identity(node).await?;
        self.nodes
            .upload_kfrag(&node.url, policy_id, upload)
            .await
            .map_err(|e: NodeError| format!("POST kfrag: {e}"))
    }

    /// Revokes the policy (the provider's account must be its owner) and returns the refund of
    /// everything the nodes have not earned. Each node refuses it from its first read of the
    /// revocation's block ([`Client::wait_for_nodes_at`] tells when).
    pub async fn revoke(&self, policy: &PolicyFile) -> Result<Refunded, ChainError> {
        self.check_policy_home(policy.chain_id, policy.policy_manager)?;
        let manager = self.deployment.policy_manager(&self.provider);
        let call = manager.revokePolicy(FixedBytes(policy.policy_id), policy.stakers());
        let what = "revoking the policy";
        let receipt = transact(what, call, policy_manager_revert, self.receipt_timeout).await?;
        let event: PolicyManager::PolicyRevoked = event_of(what, &receipt)?;
        Ok(Refunded::of(&receipt, event.refund))
    }

    /// Extends the policy to `end_timestamp` (the provider's account must be its owner), paying
    /// exactly the periods added for every node whose arrangement is not revoked
    /// (`extendPolicy`). Each such node must still qualify as at creation through the new last
    /// period; the contract's reason otherwise. The nodes serve it to the new end once they have
    /// read the extension's block `confirmations` deep.
    pub async fn extend(
        &self,
        policy: &PolicyFile,
        end_timestamp: u64,
    ) -> Result<Extended, ChainError> {
        self.check_policy_home(policy.chain_id, policy.policy_manager)?;
        let what = "extending the policy";
        let manager = self.deployment.policy_manager(&self.provider);
        let id = FixedBytes(policy.policy_id);
        let view = manager
            .getPolicy(id)
            .call()
            .await
            .map_err(|e| crate::chain::call_error(what, &e, policy_manager_revert))?;
        let seconds_per_period = self.deployment.seconds_per_period.max(1);
        let new_last = U256::from(end_timestamp.saturating_sub(1) / seconds_per_period);
        if end_timestamp == 0 || new_last <= view.lastPeriod {
            return Err(ChainError::Reverted {
                what: what.into(),
                reason: format!(
                    "the new end {end_timestamp} falls in period {new_last}, not after the \
                     policy's last period {} (it ends at {})",
                    view.lastPeriod, view.endTimestamp
                ),
            });
        }
        let mut live = 0u64;
        for node in &policy.nodes {
            let revoked = manager
                .arrangementRevoked(id, node.staker)
                .call()
                .await
                .map_err(|e| crate::chain::call_error(what, &e, policy_manager_revert))?;
            live += u64::from(!revoked);
        }
        let paid = view.feeRate * U256::from(live) * (new_last - view.lastPeriod);
        let call = manager
            .extendPolicy(id, U256::from(end_timestamp), policy.stakers())
            .value(paid);
        let receipt = transact(what, call, policy_manager_revert, self.receipt_timeout).await?;
        let event: PolicyManager::PolicyExtended = event_of(what, &receipt)?;
        Ok(Extended {
            tx_hash: receipt.transaction_hash,
            block: receipt.block_number.unwrap_or_default(),
            paid: event.value,
            end_timestamp: u64::try_from(event.endTimestamp).unwrap_or(u64::MAX),
            last_period: u64::try_from(event.lastPeriod).unwrap_or(u64::MAX),
        })
    }

    /// Revokes one node's part of the policy (`revokeArrangement`; the provider's account must be
    /// the owner) and returns the refund of what that node has not earned. That node refuses the
    /// policy from its first read of the revocation's block ([`Client::wait_for_node_at`]); the
    /// others keep serving it. A node not in the policy is refused before anything is sent.
    pub async fn revoke_node(
        &self,
        policy: &PolicyFile,
        node: Address,
    ) -> Result<Refunded, ChainError> {
        self.check_policy_home(policy.chain_id, policy.policy_manager)?;
        if !policy.nodes.iter().any(|n| n.staker == node) {
            // What the contract would answer (`PolicyManager_NodeNotInPolicy`), without a call.
            return Err(ChainError::Reverted {
                what: "revoking the node's arrangement".into(),
                reason: format!(
                    "{node} is not one of the policy's nodes ({})",
                    policy.staker_list()
                ),
            });
        }
        let manager = self.deployment.policy_manager(&self.provider);
        let call = manager.revokeArrangement(FixedBytes(policy.policy_id), node, policy.stakers());
        let what = "revoking the node's arrangement";
        let receipt = transact(what, call, policy_manager_revert, self.receipt_timeout).await?;
        let event: PolicyManager::ArrangementRevoked = event_of(what, &receipt)?;
        Ok(Refunded::of(&receipt, event.refund))
    }

    /// Waits, up to `timeout`, until every node of `policy` says (`GET /v1/status`) that it has
    /// read block `block` or a later one, e.g. the block of its revocation: a node refuses a
    /// revoked policy from its first read of that block, with no chain call per request. Returns
    /// each node's last answer, in the policy's order.
    pub async fn wait_for_nodes_at(
        &self,
        policy: &PolicyFile,
        block: u64,
        timeout: std::time::Duration,
    ) -> Vec<NodeHead> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut heads = Vec::with_capacity(policy.nodes.len());
        for node in &policy.nodes {
            heads.push(self.node_head_at(node, block, deadline).await);
        }
        heads
    }

    /// [`Client::wait_for_nodes_at`] for one node of the policy (after
    /// [`Client::revoke_node`]).
    pub async fn wait_for_node_at(
        &self,
        node: &PolicyNode,
        block: u64,
        timeout: std::time::Duration,
    ) -> NodeHead {
        self.node_head_at(node, block, tokio::time::Instant::now() + timeout)
            .await
    }

    async fn node_head_at(
        &self,
        node: &PolicyNode,
        block: u64,
        deadline: tokio::time::Instant,
    ) -> NodeHead {
        let head = loop {
            let head = match self.nodes.status(&node.url).await {
                Ok(status) => Ok(status.head_block),
                Err(e) => Err(e.to_string()),
            };
            let read = matches!(head, Ok(Some(h)) if h >= block);
            if read || tokio::time::Instant::now() >= deadline {
                break head;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        NodeHead {
            staker: node.staker,
            url: node.url.clone(),
            head,
        }
    }

    /// Refunds the owner the settled periods that nodes did not commit to (anyone may send it;
    /// the ETH goes to the owner).
    pub async fn refund(&self, policy: &PolicyFile) -> Result<Refunded, ChainError> {
        self.check_policy_home(policy.chain_id, policy.policy_manager)?;
        let manager = self.deployment.policy_manager(&self.provider);
        let call = manager.refund(FixedBytes(policy.policy_id), policy.stakers());
        let what = "refunding the policy";
        let receipt = transact(what, call, policy_manager_revert, self.receipt_timeout).await?;
        let event: PolicyManager::RefundPaid = event_of(what, &receipt)?;
        Ok(Refunded::of(&receipt, event.amount))
    }

    /// The policy as the contract sees it now (owner, end, revocation, ...).
    pub async fn policy_status(
        &self,
        policy: &PolicyFile,
    ) -> Result<PolicyManager::PolicyView, ChainError> {
        self.check_policy_home(policy.chain_id, policy.policy_manager)?;
        let manager = self.deployment.policy_manager(&self.provider);
        manager
            .getPolicy(FixedBytes(policy.policy_id))
            .call()
            .await
            .map_err(|e| crate::chain::call_error("reading the policy", &e, policy_manager_revert))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn policy_id_is_the_documented_hash() {
        let rk = SecretKey::random().public_key();
        let dk = SecretKey::random().public_key();
        let salt = [7u8; 32];
        let mut preimage = b"KMS_POLICY_ID_V1".to_vec();
        preimage.extend_from_slice(&[0, 0, 0, 5]);
        preimage.extend_from_slice(b"label");
        preimage.extend_from_slice(&rk.to_compressed_bytes());
        preimage.extend_from_slice(&dk.to_compressed_bytes());
        preimage.extend_from_slice(&salt);
        let policy_salt_bytes = policy_salt("label", &rk, &dk, &salt);
        assert_eq!(policy_salt_bytes[..], keccak256(&preimage)[..16]);
        // The on-chain id: PolicyManager.policyIdOf(creator, salt).
        let creator = Address::repeat_byte(0xc1);
        let id = policy_id(creator, "label", &rk, &dk, &salt);
        let mut packed = creator.to_vec();
        packed.extend_from_slice(&policy_salt_bytes);
        assert_eq!(id[..], keccak256(&packed)[..16]);
        assert_ne!(
            id,
            policy_id(Address::repeat_byte(2), "label", &rk, &dk, &salt)
        );
        assert_ne!(id, policy_id(creator, "label", &rk, &dk, &[8u8; 32]));
        assert_ne!(id, policy_id(creator, "label", &dk, &rk, &salt));
        // The length prefix keeps "ab" + key apart from "a" + "b"-prefixed bytes.
        assert_ne!(
            policy_salt("ab", &rk, &dk, &salt),
            policy_salt("a", &rk, &dk, &salt)
        );
    }

    #[test]
    fn periods_and_fee_as_the_contract_counts_them() {
        // 60-second periods; now in period 10, end at the very start of period 12: the last
        // paid period is 11.
        assert_eq!(policy_periods(630, 720, 60), Some((10, 11, 2)));
        // An end one second into period 12 pays period 12 too.
        assert_eq!(policy_periods(630, 721, 60), Some((10, 12, 3)));
        // Ending within the current period: one period.
        assert_eq!(policy_periods(630, 631, 60), Some((10, 10, 1)));
        assert_eq!(policy_periods(630, 630, 60), None);
        assert_eq!(
            policy_fee(U256::from(1_000_000_000u64), 3, 2),
            Some(U256::from(6_000_000_000u64))
        );
        assert_eq!(policy_fee(U256::MAX, 2, 1), None);
    }

    #[test]
    fn requests_are_validated() {
        let key = SecretKey::random().public_key();
        let good = GrantRequest {
            label: "l".into(),
            owner: Address::repeat_byte(1),
            creator: Address::repeat_byte(1),
            delegating_key: key,
            verifying_key: key,
            receiving_key: key,
            senders: Vec::new(),
            threshold: 2,
            shares: 3,
            end_timestamp: 2_000_000_000,
            fee_rate: U256::from(1u8),
            seed: 0,
            salt: None,
        };
        validate(&good).unwrap();
        for bad in [
            GrantRequest {
                threshold: 0,
                ..good.clone()
            },
            GrantRequest {
                threshold: 4,
                ..good.clone()
            },
            GrantRequest {
                shares: 33,
                threshold: 1,
                ..good.clone()
            },
            GrantRequest {
                fee_rate: U256::ZERO,
                ..good.clone()
            },
            GrantRequest {
                fee_rate: U256::from(1u8) << 80,
                ..good.clone()
            },
            GrantRequest {
                end_timestamp: u64::from(u32::MAX) + 1,
                ..good.clone()
            },
            GrantRequest {
                owner: Address::ZERO,
                ..good.clone()
            },
        ] {
            assert!(
                matches!(validate(&bad), Err(GrantError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
