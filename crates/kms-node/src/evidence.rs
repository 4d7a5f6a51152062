//! The node as a filer of evidence: it accepts a fault (relayed by anyone through
//! `POST /v1/evidence`, or found by its own audit), judges it as the Adjudicator would at the
//! latest block before any gas is spent, and files it on chain in two exactly-once duties:
//!
//! | step   | duty key                  | transaction |
//! |--------|---------------------------|-------------|
//! | commit | `evidence-commit/<hash>`  | `Adjudicator.commitEvidence(evidenceCommitmentFor(hash, worker, beneficiary))` |
//! | reveal | `evidence-reveal/<hash>`  | `Adjudicator.evaluateCFragFor(evidence, beneficiary)`, from a block after the commitment's |
//!
//! The worker sends and pays the gas; the **beneficiary** (the node's staker unless the
//! reporter or the node's configuration names another) is paid the investigator reward. Both
//! transactions go through [`TxSender`] (recorded before broadcast, never signed twice), and the
//! evidence's own state ([`EvidenceState`]) is moved on only from what those records say, so a
//! crash at any point resumes the filing where it was. Evidence is keyed by its hash: the same
//! fault posted twice is one record, and one another investigator got in first ends as
//! `evaluatedElsewhere` (its reveal is simulated before it is signed, and refused).

use alloy::{
    eips::BlockId,
    primitives::{Address, FixedBytes, B256},
    providers::Provider,
    sol_types::SolCall,
};
use kms_contracts::{
    describe_contract_error, errors::describe_adjudicator_error, Adjudicator,
    Adjudicator::AdjudicatorErrors, Deployment,
};
use kms_crypto::{
    evidence::{
        evaluateCFragForCall, evidence_commitment_for, recover_kfrag_signer, ChainFacts, WorkerBond,
    },
    fault::Fault,
    recover_answer_signer, AnswerContext, Evidence, Outcome, Verdict,
};

use crate::{
    store::{EvidenceRecord, EvidenceSource, EvidenceState, Store, StoreError},
    tx::{blocking, TxError, TxSender},
};

/// Why the node will not file a piece of evidence: the request's fault (4xx) or the chain's
/// (503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The body is not a fault file, or asks something impossible (400).
    #[error("{0}")]
    BadRequest(String),
    /// The Adjudicator would refuse it, or the node will not report it (422); the reason names
    /// the contract's error when there is one.
    #[error("{0}")]
    Unprocessable(String),
    /// The Adjudicator has judged this evidence already (409).
    #[error("{0}")]
    AlreadyEvaluated(String),
    /// The chain cannot be asked now (503).
    #[error("the chain cannot be reached now, retry later")]
    Unavailable,
    /// The store failed (500).
    #[error("internal error")]
    Internal,
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "evidence store failed");
        Self::Internal
    }
}

fn unavailable(error: impl std::fmt::Display) -> Refusal {
    tracing::warn!(%error, "chain unavailable while judging evidence");
    Refusal::Unavailable
}

/// A filing step failed this tick; the next tick retries.
#[derive(Debug, thiserror::Error)]
pub enum FilingError {
    /// A read of the chain failed.
    #[error("chain: {0}")]
    Chain(String),
    /// A transaction failed to settle.
    #[error(transparent)]
    Tx(#[from] TxError),
}

/// Judges and files evidence for one node (see the module docs).
#[derive(Debug, Clone)]
pub struct EvidenceDesk<P> {
    provider: P,
    deployment: Deployment,
    store: Store,
    /// The node's staker: never reported by its own node.
    staker: Address,
    /// The node's worker: sends the transactions.
    worker: Address,
    /// Paid the reward when the reporter names nobody.
    default_beneficiary: Address,
}

impl<P: Provider + Clone> EvidenceDesk<P> {
    /// The desk of `staker`'s node, whose `worker` sends the transactions; `default_beneficiary`
    /// is paid when a reporter names nobody (the staker, usually).
    pub fn new(
        provider: P,
        deployment: Deployment,
        store: Store,
        staker: Address,
        worker: Address,
        default_beneficiary: Address,
    ) -> Self {
        Self {
            provider,
            deployment,
            store,
            staker,
            worker,
            default_beneficiary,
        }
    }

    /// Judges `fault` as the Adjudicator would at the latest block, and records it for filing
    /// if it is slashable. Returns its hash, its record (the earlier one if the same evidence
    /// was accepted before) and whether it is new.
    pub async fn accept(
        &self,
        fault: Fault,
        beneficiary: Option<Address>,
        source: EvidenceSource,
        now: u64,
    ) -> Result<(B256, EvidenceRecord, bool), Refusal> {
        let hash = fault.evidence_hash();
        let store = self.store.clone();
        if let Some(existing) = blocking(move || store.evidence(hash))
            .await
            .map_err(|_| Refusal::Internal)?
        {
            return Ok((hash, existing, false));
        }
        let beneficiary = beneficiary.unwrap_or(self.default_beneficiary);
        self.judge(&fault, beneficiary).await?;
        let record = EvidenceRecord {
            fault,
            beneficiary,
            source,
            received_at: now,
            state: EvidenceState::Pending,
        };
        let store = self.store.clone();
        let (record, new) = blocking(move || store.put_evidence_if_absent(hash, &record))
            .await
            .map_err(|_| Refusal::Internal)?;
        if new {
            tracing::info!(evidence = %hash, staker = %record.fault.staker, ?source, "evidence accepted for filing");
        }
        Ok((hash, record, new))
    }

    /// What the Adjudicator would decide about `fault` reported for `beneficiary` by this
    /// node's worker, at the latest block: `Ok` with the verdict if it would slash, else the
    /// refusal with the contract's reason.
    pub async fn judge(&self, fault: &Fault, beneficiary: Address) -> Result<Verdict, Refusal> {
        let d = &self.deployment;
        if fault.chain_id != d.chain_id {
            return Err(Refusal::Unprocessable(format!(
                "the fault is on chain {}, this node serves chain {}",
                fault.chain_id, d.chain_id
            )));
        }
        if fault.adjudicator != d.adjudicator {
            return Err(Refusal::Unprocessable(format!(
                "the answer names Adjudicator {}, this node reports to {}: the signature would \
                 not recover on this one",
                fault.adjudicator, d.adjudicator
            )));
        }
        if beneficiary.is_zero() {
            return Err(Refusal::BadRequest(
                "the beneficiary must not be the zero address".into(),
            ));
        }
        if fault.staker == self.staker {
            return Err(Refusal::Unprocessable(format!(
                "the fault is this node's own (staker {}): another node must file it",
                self.staker
            )));
        }
        let evidence = fault
            .evidence()
            .map_err(|e| Refusal::Unprocessable(e.to_string()))?;
        let hash = fault.evidence_hash();

        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(unavailable)?
            .ok_or(Refusal::Unavailable)?;
        let at = BlockId::number(block.header.number);
        let adjudicator = Adjudicator::new(d.adjudicator, &self.provider);
        let escrow = d.staking_escrow(&self.provider);
        let manager = d.policy_manager(&self.provider);
        if adjudicator
            .evaluated(hash)
            .block(at)
            .call()
            .await
            .map_err(unavailable)?
        {
            return Err(Refusal::AlreadyEvaluated(describe_adjudicator_error(
                &AdjudicatorErrors::Adjudicator_AlreadyEvaluated(
                    Adjudicator::Adjudicator_AlreadyEvaluated { evidenceHash: hash },
                ),
            )));
        }
        let evidence_window: u64 = adjudicator
            .evidenceWindow()
            .block(at)
            .call()
            .await
            .map_err(unavailable)?
            .saturating_to();
        let kfrag_signer = manager
            .kfragSignerOf(fault.policy_id)
            .block(at)
            .call()
            .await
            .map_err(unavailable)?;
        let current_period = block.header.timestamp / d.seconds_per_period.max(1);
        let context = AnswerContext {
            chain_id: d.chain_id,
            adjudicator: d.adjudicator,
            staker: fault.staker,
            period: fault.period,
            policy_id: fault.policy_id.0,
        };
        let signer = recover_answer_signer(
            &context,
            &fault.capsule,
            &fault.cfrag,
            &fault.worker_signature,
        )
        .ok();
        let bond = match signer {
            Some(signer) => {
                let bond = escrow
                    .workerBond(signer)
                    .block(at)
                    .call()
                    .await
                    .map_err(unavailable)?;
                WorkerBond {
                    staker: bond.staker,
                    first_period: bond.firstPeriod.saturating_to(),
                    last_period: bond.lastPeriod.saturating_to(),
                }
            }
            None => WorkerBond::default(),
        };
        let facts = ChainFacts {
            chain_id: d.chain_id,
            adjudicator: d.adjudicator,
            current_period,
            evidence_window,
            kfrag_signer,
            worker: signer.unwrap_or_default(),
            bond,
        };
        let verdict =
            match evidence.outcome(&facts) {
                Outcome::Slash(verdict) => verdict,
                Outcome::Correct => return Err(Refusal::Unprocessable(
                    "the cfrag is correct (the Adjudicator would record verdict Correct and slash \
                     nothing): there is nothing to report"
                        .into(),
                )),
                refused => {
                    return Err(Refusal::Unprocessable(format!(
                        "the Adjudicator would refuse this evidence: {}",
                        describe_adjudicator_error(&contract_error(refused, &evidence, &facts))
                    )))
                }
            };
        // The culprit rule, for the sender (this node's worker) and the one paid.
        let current_worker = escrow
            .workerOf(fault.staker)
            .block(at)
            .call()
            .await
            .map_err(unavailable)?;
        for account in [beneficiary, self.worker] {
            if account == fault.staker || Some(account) == signer || account == current_worker {
                return Err(Refusal::Unprocessable(describe_adjudicator_error(
                    &AdjudicatorErrors::Adjudicator_InvestigatorIsCulprit(
                        Adjudicator::Adjudicator_InvestigatorIsCulprit {
                            investigator: account,
                        },
                    ),
                )));
            }
        }
        Ok(verdict)
    }

    /// Moves every unfinished evidence one step on (see the module docs); `head` is the latest
    /// block. Returns how many moved, and the first error (the others are still tried).
    pub async fn file(&self, sender: &TxSender<P>, head: u64) -> Result<u64, FilingError> {
        let store = self.store.clone();
        let open: Vec<_> = blocking(move || store.all_evidence())
            .await?
            .into_iter()
            .filter(|(_, record)| !record.state.is_final())
            .collect();
        let mut moved = 0;
        let mut first_error = None;
        for (hash, record) in open {
            match self.step(sender, hash, &record, head).await {
                Ok(Some(state)) => {
                    tracing::info!(evidence = %hash, ?state, "evidence filing moved on");
                    let store = self.store.clone();
                    blocking(move || store.set_evidence_state(hash, &state)).await?;
                    moved += 1;
                }
                Ok(None) => {}
                Err(FilingError::Tx(TxError::Pending(tx))) => {
                    tracing::debug!(evidence = %hash, %tx, "evidence transaction pending");
                }
                Err(e) => {
                    tracing::warn!(evidence = %hash, error = %e, "evidence filing failed this tick");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(moved), Err)
    }

    /// One step of one evidence's filing: its new state, or `None` if it waits.
    async fn step(
        &self,
        sender: &TxSender<P>,
        hash: B256,
        record: &EvidenceRecord,
        head: u64,
    ) -> Result<Option<EvidenceState>, FilingError> {
        let adjudicator = self.deployment.adjudicator;
        match &record.state {
            EvidenceState::Pending => {
                let commit_key = format!("evidence-commit/{hash}");
                let store = self.store.clone();
                let key = commit_key.clone();
                let commit_recorded = blocking(move || store.duty(&key)).await?.is_some();
                if !commit_recorded && self.evaluated(hash).await? {
                    return Ok(Some(EvidenceState::EvaluatedElsewhere));
                }
                let commitment = evidence_commitment_for(hash, self.worker, record.beneficiary);
                let input = Adjudicator::commitEvidenceCall { commitment }.abi_encode();
                Ok(Some(
                    match sender.run(&commit_key, adjudicator, input.into()).await {
                        Ok(crate::DutyRecord::Done { block, .. }) => {
                            EvidenceState::Committed { block }
                        }
                        Ok(crate::DutyRecord::Sent { tx_hash, .. }) => {
                            return Err(TxError::Pending(tx_hash).into())
                        }
                        Ok(crate::DutyRecord::Failed { reason, .. })
                        | Ok(crate::DutyRecord::Skipped { reason }) => EvidenceState::Refused {
                            reason: format!("the commitment failed: {reason}"),
                        },
                        Err(TxError::Reverted(reason)) => EvidenceState::Refused {
                            reason: format!("the commitment would revert: {reason}"),
                        },
                        Err(e) => return Err(e.into()),
                    },
                ))
            }
            EvidenceState::Committed { block } => {
                // The reveal is refused in the commitment's block: wait for a later one.
                if head <= *block {
                    return Ok(None);
                }
                let evidence = record
                    .fault
                    .evidence()
                    .map_err(|e| FilingError::Chain(format!("recorded evidence unusable: {e}")))?;
                let input = evaluateCFragForCall {
                    evidence,
                    beneficiary: record.beneficiary,
                }
                .abi_encode();
                let reveal_key = format!("evidence-reveal/{hash}");
                Ok(Some(
                    match sender.run(&reveal_key, adjudicator, input.into()).await {
                        Ok(crate::DutyRecord::Done { tx_hash, .. }) => {
                            self.evaluation(tx_hash).await?
                        }
                        Ok(crate::DutyRecord::Sent { tx_hash, .. }) => {
                            return Err(TxError::Pending(tx_hash).into())
                        }
                        Ok(crate::DutyRecord::Failed { reason, .. })
                        | Ok(crate::DutyRecord::Skipped { reason }) => {
                            self.refused(hash, reason).await?
                        }
                        Err(TxError::Reverted(reason)) => {
                            // Record the refusal under the duty's key too: it is never sent.
                            let store = self.store.clone();
                            let skipped = crate::DutyRecord::Skipped {
                                reason: reason.clone(),
                            };
                            blocking(move || store.set_duty(&reveal_key, &skipped)).await?;
                            self.refused(hash, reason).await?
                        }
                        Err(e) => return Err(e.into()),
                    },
                ))
            }
            _ => Ok(None),
        }
    }

    /// A reveal that will not go out: another investigator's was evaluated first, or the
    /// Adjudicator refuses it for `reason`.
    async fn refused(&self, hash: B256, reason: String) -> Result<EvidenceState, FilingError> {
        Ok(if self.evaluated(hash).await? {
            EvidenceState::EvaluatedElsewhere
        } else {
            EvidenceState::Refused { reason }
        })
    }

    async fn evaluated(&self, hash: B256) -> Result<bool, FilingError> {
        Adjudicator::new(self.deployment.adjudicator, &self.provider)
            .evaluated(hash)
            .block(BlockId::latest())
            .call()
            .await
            .map_err(|e| FilingError::Chain(describe_contract_error(&e)))
    }

    /// The `CFragEvaluated` event of the reveal `tx_hash`.
    async fn evaluation(&self, tx_hash: B256) -> Result<EvidenceState, FilingError> {
        let receipt = self
            .provider
            .get_transaction_receipt(tx_hash)
            .await
            .map_err(|e| FilingError::Chain(e.to_string()))?
            .ok_or_else(|| FilingError::Chain(format!("no receipt for reveal {tx_hash}")))?;
        let event = receipt
            .decoded_log::<Adjudicator::CFragEvaluated>()
            .ok_or_else(|| {
                FilingError::Chain(format!("reveal {tx_hash} emitted no CFragEvaluated"))
            })?;
        let verdict = Verdict::from_u8(event.verdict).map_or_else(
            || format!("unknown ({})", event.verdict),
            |v| v.name().to_owned(),
        );
        Ok(EvidenceState::Evaluated {
            tx_hash,
            verdict,
            penalty: event.penalty,
            reward: event.reward,
        })
    }
}

/// The Adjudicator's custom error for an outcome of the model that reverts.
fn contract_error(outcome: Outcome, evidence: &Evidence, facts: &ChainFacts) -> AdjudicatorErrors {
    use Adjudicator as A;
    use AdjudicatorErrors as E;
    let period = evidence.period;
    let current = alloy::primitives::U256::from(facts.current_period);
    match outcome {
        Outcome::PolicyNotFound => E::Adjudicator_PolicyNotFound(A::Adjudicator_PolicyNotFound {
            policyId: FixedBytes(evidence.policyId.0),
        }),
        Outcome::KfragSignature => {
            let recovered = recover_kfrag_signer(
                &evidence.cfrag,
                &evidence.delegatingKey,
                &evidence.receivingKey,
                evidence.kfragSignatureV,
            )
            .ok()
            .flatten()
            .unwrap_or_default();
            E::Adjudicator_KfragSignatureMismatch(A::Adjudicator_KfragSignatureMismatch {
                recovered,
                expected: facts.kfrag_signer,
            })
        }
        Outcome::InvalidWorkerSignature => {
            E::Adjudicator_InvalidWorkerSignature(A::Adjudicator_InvalidWorkerSignature {})
        }
        Outcome::PeriodInFuture => E::Adjudicator_PeriodInFuture(A::Adjudicator_PeriodInFuture {
            period,
            currentPeriod: current,
        }),
        Outcome::Expired => E::Adjudicator_EvidenceExpired(A::Adjudicator_EvidenceExpired {
            period,
            currentPeriod: current,
            window: alloy::primitives::U256::from(facts.evidence_window),
        }),
        Outcome::NotBondedInPeriod => {
            E::Adjudicator_WorkerNotBondedInPeriod(A::Adjudicator_WorkerNotBondedInPeriod {
                worker: facts.worker,
                staker: evidence.staker,
                period,
            })
        }
        Outcome::Malformed(what) => {
            E::Adjudicator_MalformedEvidence(A::Adjudicator_MalformedEvidence {
                what: what.to_owned(),
            })
        }
        // Not refusals; never asked.
        Outcome::Correct | Outcome::Slash(_) => {
            E::Adjudicator_InvalidParameter(A::Adjudicator_InvalidParameter {})
        }
    }
}
