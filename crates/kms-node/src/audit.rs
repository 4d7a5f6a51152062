//! The audit duty: the node checks its peers as a Bob would, and files evidence itself.
//!
//! Once per period (when `budget_per_period` is above zero) the node plans a small **audit
//! policy**: up to `peers` peers drawn by stake among the stakers that can take a policy (never
//! its own staker), as many as the budget pays for at the fee rate (`fee_rate`, or the
//! PolicyManager's default rate), threshold 1, ending with the period. The node is that
//! policy's Alice (keys derived from a random seed kept in the store) and its Bob. The plan is
//! recorded first; `createPolicy` is then sent from the worker as the exactly-once duty
//! `audit-policy/<period>` (see [`Auditor::create_due`], run by the duties); once it is mined,
//! each peer is handed its kfrag.
//!
//! At `rounds_per_period` times drawn at random within the period (chain time), the node
//! encrypts a random capsule under the policy and asks every peer holding a kfrag to
//! re-encrypt it, checking each answer exactly as a retrieval does (the worker's signature, the
//! cfrag's proof): served, wrong, refused (with its status), timed out or invalid is added to
//! the peer's availability in the store (`GET /v1/network`, `/metrics`), and each provable wrong
//! cfrag becomes evidence the node files itself ([`EvidenceDesk`], paid to its beneficiary).
//! Honest peers earn the audit policy's fees like any other; the budget bounds what the node
//! spends on fees (gas is apart: one `createPolicy` a period).

use std::sync::Arc;

use alloy::{
    primitives::{Address, FixedBytes, B256, U256},
    providers::Provider,
    sol_types::SolCall,
};
use kms_client::{
    grant::{policy_id, policy_salt},
    retrieve::{audit_node, AnswerTerms, AuditAnswer},
    sampling::{candidates, SamplingError},
    Client, NodeClient, PolicyFile,
};
use kms_contracts::{Deployment, PolicyManager};
use kms_crypto::wire::{Availability, KfragUpload};
use prometheus::{IntCounterVec, Opts, Registry};
use rand_core::{OsRng, RngCore};
use tokio::sync::RwLock;
use umbral_pre::{encrypt, generate_kfrags, SecretKey, SecretKeyFactory, Signer};

use crate::{
    evidence::{EvidenceDesk, Refusal},
    store::{AuditRecord, AuditState, DutyRecord, EvidenceSource, Store, StoreError},
    tx::{blocking, TxError, TxSender},
    wakeup::Wakeups,
};

/// What the audit duty does; `budget_per_period` zero turns it off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The most wei of policy fees the node spends on audits per period.
    pub budget_per_period: U256,
    /// The most peers one period's audit policy names.
    pub peers: usize,
    /// Audit rounds per period, at random times.
    pub rounds_per_period: usize,
    /// The fee rate of the audit policies (wei per node and period); `None`: the
    /// PolicyManager's default rate. Peers asking more are not audited.
    pub fee_rate: Option<U256>,
}

/// The default budget: 10 gwei of fees a period (five peers at the default 1 gwei rate, twice).
pub const DEFAULT_AUDIT_BUDGET_WEI: u64 = 10_000_000_000;

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            budget_per_period: U256::from(DEFAULT_AUDIT_BUDGET_WEI),
            peers: 5,
            rounds_per_period: 4,
            fee_rate: None,
        }
    }
}

impl AuditConfig {
    /// Whether the node audits at all.
    pub fn enabled(&self) -> bool {
        !self.budget_per_period.is_zero() && self.peers > 0 && self.rounds_per_period > 0
    }
}

/// The audit's Prometheus counters: `kms_node_audit_answers_total{peer, outcome}`.
#[derive(Debug, Clone)]
pub struct AuditMetrics {
    answers: IntCounterVec,
}

impl AuditMetrics {
    /// Registers the counters in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let answers = IntCounterVec::new(
            Opts::new(
                "audit_answers_total",
                "Audit answers by peer (staker) and outcome",
            ),
            &["peer", "outcome"],
        )?;
        registry.register(Box::new(answers.clone()))?;
        Ok(Self { answers })
    }
}

/// Why an audit step failed; the next wake-up retries.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The chain could not be read.
    #[error("chain: {0}")]
    Chain(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A transaction failed to settle.
    #[error(transparent)]
    Tx(#[from] TxError),
}

fn chain(e: impl std::fmt::Display) -> AuditError {
    AuditError::Chain(e.to_string())
}

fn store_error(e: TxError) -> AuditError {
    match e {
        TxError::Store(e) => AuditError::Store(e),
        other => AuditError::Tx(other),
    }
}

/// The three keys of an audit policy, from its seed.
struct AuditKeys {
    delegating: SecretKey,
    signer: SecretKey,
    receiving: SecretKey,
}

impl AuditKeys {
    fn from_seed(seed: &B256) -> Option<Self> {
        let factory = SecretKeyFactory::from_secure_randomness(seed.as_slice()).ok()?;
        Some(Self {
            delegating: factory.make_key(b"kms-audit/delegating"),
            signer: factory.make_key(b"kms-audit/signer"),
            receiving: factory.make_key(b"kms-audit/receiving"),
        })
    }
}

/// The audit duty of one node (see the module docs).
#[derive(Debug)]
pub struct Auditor<P> {
    client: Client<P>,
    store: Store,
    staker: Address,
    worker: Address,
    config: AuditConfig,
    desk: EvidenceDesk<P>,
    metrics: Option<AuditMetrics>,
    /// The stakers as last read, for `GET /v1/network`.
    network: Arc<RwLock<NetworkSnapshot>>,
}

/// The stakers as the auditor last read them from the chain.
#[derive(Debug, Clone, Default)]
pub struct NetworkSnapshot {
    /// The block read (0: never).
    pub block: u64,
    /// Its period.
    pub period: u64,
    /// The stakers, without availability.
    pub peers: Vec<kms_crypto::wire::PeerView>,
}

impl<P: Provider + Clone> Auditor<P> {
    /// The auditor of `staker`'s node, whose `worker` sends the audit policies.
    pub fn new(
        client: Client<P>,
        store: Store,
        staker: Address,
        worker: Address,
        config: AuditConfig,
        desk: EvidenceDesk<P>,
    ) -> Self {
        Self {
            client,
            store,
            staker,
            worker,
            config,
            desk,
            metrics: None,
            network: Arc::new(RwLock::new(NetworkSnapshot::default())),
        }
    }

    /// Counts audit answers in `metrics`.
    pub fn with_metrics(mut self, metrics: AuditMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The stakers as last read (shared with the API).
    pub fn network(&self) -> Arc<RwLock<NetworkSnapshot>> {
        self.network.clone()
    }

    fn deployment(&self) -> &Deployment {
        self.client.deployment()
    }

    fn period_of(&self, timestamp: u64) -> u64 {
        timestamp / self.deployment().seconds_per_period.max(1)
    }

    /// The audit service: an [`Auditor::tick`] at every wake-up until shut down.
    pub async fn run(self: Arc<Self>, mut wakeups: Wakeups) {
        loop {
            tokio::select! {
                _ = wakeups.shutdown() => break,
                result = self.tick() => {
                    // A warning: a round that keeps failing is an audit that does not happen
                    // (the next wake-up retries it), which the operator should see.
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "audit tick failed; retrying at the next wake-up");
                    }
                }
            }
            if !wakeups.next().await {
                break;
            }
        }
    }

    /// Refreshes the network snapshot once a period, plans this period's audit policy, hands
    /// out its kfrags once created, and runs the rounds that are due.
    pub async fn tick(&self) -> Result<(), AuditError> {
        let latest = self
            .client
            .provider()
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(chain)?
            .ok_or_else(|| chain("no latest block"))?;
        let now = latest.header.timestamp;
        let period = self.period_of(now);
        if self.network.read().await.period != period || self.network.read().await.block == 0 {
            let (block, peers) =
                kms_client::network::read_stakers(self.client.provider(), self.deployment())
                    .await
                    .map_err(chain)?;
            *self.network.write().await = NetworkSnapshot {
                block,
                period,
                peers,
            };
        }
        if !self.config.enabled() {
            return Ok(());
        }
        let store = self.store.clone();
        let record = blocking(move || store.audit(period))
            .await
            .map_err(store_error)?;
        let record = match record {
            Some(record) => record,
            None => {
                let record = self.plan(period, now).await?;
                let store = self.store.clone();
                let saved = record.clone();
                blocking(move || store.set_audit(&saved))
                    .await
                    .map_err(store_error)?;
                record
            }
        };
        if record.state != AuditState::Created {
            return Ok(());
        }
        let due = record.rounds.iter().filter(|&&at| at <= now).count();
        let missing_uploads = record.uploaded.len() < self.policy_of(&record)?.nodes.len();
        // Uploads go out at once, then again at each round for the peers that missed them.
        if missing_uploads && (record.upload_attempts == 0 || due > record.rounds_done) {
            self.upload(&record, now).await?;
        }
        if due > record.rounds_done {
            let store = self.store.clone();
            let current = blocking(move || store.audit(period))
                .await
                .map_err(store_error)?
                .unwrap_or(record);
            self.round(&current, now).await?;
            let mut done = current;
            // Rounds missed while the node was down are not made up: one round now.
            done.rounds_done = due;
            let store = self.store.clone();
            blocking(move || store.set_audit(&done))
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    fn policy_of(&self, record: &AuditRecord) -> Result<PolicyFile, AuditError> {
        PolicyFile::from_json_str(&record.policy)
            .map_err(|e| AuditError::Chain(format!("recorded audit policy unreadable: {e}")))
    }

    /// Plans the audit policy of `period`: a planned record, or an abandoned one saying why
    /// there is nothing to audit this period.
    async fn plan(&self, period: u64, now: u64) -> Result<AuditRecord, AuditError> {
        let d = self.deployment().clone();
        let spp = d.seconds_per_period.max(1);
        let end = (period + 1) * spp;
        let mut key_seed = B256::ZERO;
        OsRng.fill_bytes(key_seed.as_mut_slice());
        let mut salt = B256::ZERO;
        OsRng.fill_bytes(salt.as_mut_slice());
        let abandoned = |reason: String| {
            tracing::info!(period, %reason, "no audit this period");
            AuditRecord {
                period,
                policy: String::new(),
                salt,
                key_seed,
                fee: U256::ZERO,
                rounds: Vec::new(),
                rounds_done: 0,
                uploaded: Vec::new(),
                upload_attempts: 0,
                state: AuditState::Abandoned { reason },
            }
        };
        let fee_rate = match self.config.fee_rate {
            Some(rate) => rate,
            None => U256::from(
                d.policy_manager(self.client.provider())
                    .defaultFeeRate()
                    .call()
                    .await
                    .map_err(chain)?,
            ),
        };
        // One period each: the budget pays for this many peers.
        let affordable = if fee_rate.is_zero() {
            self.config.peers
        } else {
            usize::try_from(self.config.budget_per_period / fee_rate).unwrap_or(usize::MAX)
        };
        let wanted = self.config.peers.min(affordable);
        if wanted == 0 {
            return Ok(abandoned(format!(
                "the budget of {} wei does not pay one peer at {fee_rate} wei",
                self.config.budget_per_period
            )));
        }
        let found = match candidates(self.client.provider(), &d, end, fee_rate).await {
            Ok(found) => found,
            Err(SamplingError::Chain(e)) => return Err(chain(e)),
            Err(e) => return Ok(abandoned(e.to_string())),
        };
        // At most this many: a drawn peer asking more than the fee rate is left out then.
        let peers = found
            .candidates
            .iter()
            .filter(|c| c.node.staker != self.staker)
            .count();
        let mut wanted = wanted.min(peers);
        if wanted == 0 {
            return Ok(abandoned("no peer can take a policy".into()));
        }
        let seed = OsRng.next_u64();
        let nodes = loop {
            match self
                .client
                .sample_reachable(&found, wanted, seed, &[self.staker])
                .await
            {
                Ok((nodes, _)) => break nodes,
                // Some asked too much or did not answer: audit those that qualified.
                Err(SamplingError::NotEnoughNodes { available, .. })
                    if available > 0 && available < wanted =>
                {
                    wanted = available;
                }
                Err(SamplingError::Chain(e)) => return Err(chain(e)),
                Err(e) => return Ok(abandoned(e.to_string())),
            }
        };
        let keys = AuditKeys::from_seed(&key_seed)
            .ok_or_else(|| chain("the audit key seed is too short"))?;
        let label = format!("kms-audit/{period}");
        let (delegating_key, verifying_key, receiving_key) = (
            keys.delegating.public_key(),
            keys.signer.public_key(),
            keys.receiving.public_key(),
        );
        let policy = PolicyFile {
            chain_id: d.chain_id,
            policy_manager: d.policy_manager,
            policy_id: policy_id(
                self.worker,
                &label,
                &receiving_key,
                &delegating_key,
                &salt.0,
            ),
            label,
            owner: self.worker,
            delegating_key,
            verifying_key,
            receiving_key,

            senders: Vec::new(),
            threshold: 1,
            shares: nodes.len(),
            end_timestamp: end,
            fee_rate,
            nodes,
        };
        let fee = fee_rate * U256::from(policy.shares);
        // Rounds at random times in what is left of the period, ending a little early so
        // that the last answer still names this period.
        let last = end.saturating_sub(spp / 20).max(now + 1);
        let mut rounds: Vec<u64> = (0..self.config.rounds_per_period)
            .map(|_| now + OsRng.next_u64() % (last - now))
            .collect();
        rounds.sort_unstable();
        tracing::info!(
            period,
            peers = policy.shares,
            %fee,
            policy = %policy.policy_id_hex(),
            "audit policy planned"
        );
        Ok(AuditRecord {
            period,
            policy: policy.to_json_string(),
            salt,
            key_seed,
            fee,
            rounds,
            rounds_done: 0,
            uploaded: Vec::new(),
            upload_attempts: 0,
            state: AuditState::Planned,
        })
    }

    /// The duty `audit-policy/<period>`: sends `createPolicy` for this period's planned audit
    /// policy, once; marks it created or abandoned. Called by the duties (one transaction at a
    /// time for the worker's nonces).
    pub async fn create_due(
        &self,
        sender: &TxSender<P>,
        now: u64,
    ) -> Result<Option<&'static str>, AuditError> {
        let period = self.period_of(now);
        let store = self.store.clone();
        // This period's, and the last one's if its transaction was left in flight.
        let open: Vec<AuditRecord> = blocking(move || store.audits_from(period.saturating_sub(1)))
            .await
            .map_err(store_error)?
            .into_iter()
            .filter(|r| r.state == AuditState::Planned)
            .collect();
        let mut outcome = None;
        for mut record in open {
            let key = format!("audit-policy/{}", record.period);
            let store = self.store.clone();
            let duty_key = key.clone();
            let recorded = blocking(move || store.duty(&duty_key))
                .await
                .map_err(store_error)?;
            if recorded.is_none() && record.period != period {
                record.state = AuditState::Abandoned {
                    reason: "its period ended before it was sent".into(),
                };
            } else {
                let policy = self.policy_of(&record)?;
                let input = PolicyManager::createPolicyCall {
                    salt: FixedBytes(policy_salt(
                        &policy.label,
                        &policy.receiving_key,
                        &policy.delegating_key,
                        &record.salt.0,
                    )),
                    owner: policy.owner,
                    kfragSigner: policy.kfrag_signer(),
                    endTimestamp: U256::from(policy.end_timestamp),
                    nodes: policy.stakers(),
                }
                .abi_encode();
                let to = self.deployment().policy_manager;
                record.state = match sender.run_paying(&key, to, input.into(), record.fee).await {
                    Ok(DutyRecord::Done { .. }) => AuditState::Created,
                    Ok(DutyRecord::Sent { tx_hash, .. }) => {
                        return Err(TxError::Pending(tx_hash).into())
                    }
                    Ok(DutyRecord::Failed { reason, .. }) | Ok(DutyRecord::Skipped { reason }) => {
                        AuditState::Abandoned { reason }
                    }
                    Err(TxError::Reverted(reason)) => {
                        let store = self.store.clone();
                        let skipped = DutyRecord::Skipped {
                            reason: reason.clone(),
                        };
                        blocking(move || store.set_duty(&key, &skipped))
                            .await
                            .map_err(store_error)?;
                        AuditState::Abandoned { reason }
                    }
                    Err(e) => return Err(e.into()),
                };
            }
            outcome = Some(match record.state {
                AuditState::Created => "done",
                _ => "skipped",
            });
            tracing::info!(period = record.period, state = ?record.state, "audit policy settled");
            let store = self.store.clone();
            blocking(move || store.set_audit(&record))
                .await
                .map_err(store_error)?;
        }
        Ok(outcome)
    }

    /// Hands each peer that lacks it its kfrag; a failure counts against the peer's
    /// availability.
    async fn upload(&self, record: &AuditRecord, now: u64) -> Result<(), AuditError> {
        let policy = self.policy_of(record)?;
        let keys = AuditKeys::from_seed(&record.key_seed)
            .ok_or_else(|| chain("the audit key seed is too short"))?;
        let signer = Signer::new(keys.signer.clone());
        let kfrags = generate_kfrags(
            &keys.delegating,
            &policy.receiving_key,
            &signer,
            1,
            policy.shares,
            true,
            true,
        );
        let nodes = self.client.refresh_nodes(&policy).await.map_err(chain)?;
        let client: &NodeClient = self.client.node_client();
        let mut uploads = Vec::new();
        for (node, kfrag) in nodes.iter().zip(kfrags.iter()) {
            if record.uploaded.contains(&node.staker) {
                continue;
            }
            let upload = KfragUpload::seal(
                kfrag,
                &node.umbral_public_key,
                node.staker,
                policy.policy_id,
                (&policy.delegating_key, &policy.receiving_key),
                &signer,
            )
            .map_err(|e| chain(format!("sealing an audit kfrag: {e}")))?;
            uploads.push(async move {
                let result = client
                    .upload_kfrag(&node.url, policy.policy_id, &upload)
                    .await;
                (node.staker, result)
            });
        }
        let mut uploaded = Vec::new();
        let mut failures = Vec::new();
        for (staker, result) in futures_util::future::join_all(uploads).await {
            match result {
                // 409: it holds a kfrag of this policy already (one made before a restart).
                Ok(_) => uploaded.push(staker),
                Err(kms_client::NodeError::Refused { status: 409, .. }) => uploaded.push(staker),
                Err(error) => {
                    tracing::info!(peer = %staker, %error, "audit kfrag not accepted");
                    failures.push((staker, failure(&error, now)));
                }
            }
        }
        self.count(&failures);
        let period = record.period;
        let store = self.store.clone();
        blocking(move || {
            if !failures.is_empty() {
                store.record_availability(period, &failures)?;
            }
            if let Some(mut current) = store.audit(period)? {
                current.upload_attempts = current.upload_attempts.saturating_add(1);
                current.uploaded.extend(uploaded);
                current.uploaded.sort_unstable();
                current.uploaded.dedup();
                store.set_audit(&current)?;
            }
            Ok(())
        })
        .await
        .map_err(store_error)
    }

    /// One audit round: a random capsule, asked of every peer holding a kfrag.
    async fn round(&self, record: &AuditRecord, now: u64) -> Result<(), AuditError> {
        let policy = self.policy_of(record)?;
        let keys = AuditKeys::from_seed(&record.key_seed)
            .ok_or_else(|| chain("the audit key seed is too short"))?;
        let mut plaintext = [0u8; 32];
        OsRng.fill_bytes(&mut plaintext);
        let (capsule, _) = encrypt(&policy.delegating_key, &plaintext)
            .map_err(|e| chain(format!("encrypting an audit capsule: {e}")))?;
        let nodes: Vec<_> = self
            .client
            .refresh_nodes(&policy)
            .await
            .map_err(chain)?
            .into_iter()
            .filter(|n| record.uploaded.contains(&n.staker))
            .collect();
        if nodes.is_empty() {
            return Ok(());
        }
        let terms = AnswerTerms::read(
            self.client.provider(),
            self.deployment(),
            nodes.iter().map(|n| n.worker),
        )
        .await
        .map_err(chain)?;
        let client = self.client.node_client();
        let answers = futures_util::future::join_all(nodes.iter().map(|node| {
            let (policy, terms, receiving) = (&policy, &terms, &keys.receiving);
            let capsules = std::slice::from_ref(&capsule);
            async move {
                (
                    node.staker,
                    audit_node(client, policy, terms, node, receiving, capsules).await,
                )
            }
        }))
        .await;
        // A peer that refuses with 410 once the audit policy has ended by the chain's clock (the
        // round ran late in the period, and the chain moved on meanwhile) is right to: that is
        // the auditor's lateness, not the peer's failure, and is not held against it.
        let ended = self
            .client
            .provider()
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(chain)?
            .is_some_and(|block| block.header.timestamp >= policy.end_timestamp);
        let mut record_answers = Vec::with_capacity(answers.len());
        for (peer, answer) in answers {
            let mut seen = Availability {
                last_at: now,
                ..Default::default()
            };
            match answer {
                AuditAnswer::Served { .. } => seen.served = 1,
                AuditAnswer::Wrong {
                    reasons, faults, ..
                } => {
                    seen.wrong = 1;
                    seen.last_failure = reasons.first().cloned();
                    tracing::warn!(%peer, reasons = ?reasons, "audit: wrong cfrag");
                    for fault in faults {
                        match self
                            .desk
                            .accept(fault, None, EvidenceSource::Audit, now)
                            .await
                        {
                            Ok((hash, _, _)) => {
                                tracing::warn!(%peer, evidence = %hash, "audit: evidence to file")
                            }
                            // The chain or the store failed: the round is not done, and runs
                            // again (a fresh capsule: the wrong peer answers wrong again) rather
                            // than lose the evidence.
                            Err(refusal @ (Refusal::Unavailable | Refusal::Internal)) => {
                                return Err(chain(format!(
                                    "the evidence against {peer} could not be recorded: {refusal}"
                                )));
                            }
                            Err(refusal) => {
                                tracing::warn!(%peer, %refusal, "audit: the fault cannot be filed")
                            }
                        }
                    }
                }
                AuditAnswer::Refused { status: 410, .. } if ended => {
                    tracing::debug!(%peer, "audit: asked after the audit policy ended");
                    continue;
                }
                AuditAnswer::Refused { status, reason } => {
                    seen.refused = 1;
                    seen.last_status = Some(status);
                    seen.last_failure = Some(reason);
                }
                AuditAnswer::Unreachable(reason) => {
                    seen.timed_out = 1;
                    seen.last_failure = Some(reason);
                }
                AuditAnswer::Invalid(reason) => {
                    seen.invalid = 1;
                    seen.last_failure = Some(reason);
                }
            }
            record_answers.push((peer, seen));
        }
        self.count(&record_answers);
        let period = record.period;
        let store = self.store.clone();
        blocking(move || store.record_availability(period, &record_answers))
            .await
            .map_err(store_error)
    }

    fn count(&self, answers: &[(Address, Availability)]) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        for (peer, seen) in answers {
            let peer = peer.to_string();
            for (outcome, n) in [
                ("served", seen.served),
                ("wrong", seen.wrong),
                ("refused", seen.refused),
                ("timed_out", seen.timed_out),
                ("invalid", seen.invalid),
            ] {
                if n > 0 {
                    metrics
                        .answers
                        .with_label_values(&[peer.as_str(), outcome])
                        .inc_by(n);
                }
            }
        }
    }
}

/// An upload failure as an availability entry.
fn failure(error: &kms_client::NodeError, now: u64) -> Availability {
    let mut seen = Availability {
        last_at: now,
        last_failure: Some(error.to_string()),
        ..Default::default()
    };
    match error {
        kms_client::NodeError::Refused { status, .. } => {
            seen.refused = 1;
            seen.last_status = Some(*status);
        }
        kms_client::NodeError::Unreachable(_) => seen.timed_out = 1,
        _ => seen.invalid = 1,
    }
    seen
}
