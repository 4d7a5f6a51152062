//! Bob's side: asking the policy's nodes for capsule fragments, verifying every one, keeping
//! the provable faults, and reporting them to the Adjudicator.
//!
//! Every node is asked at once; as soon as each capsule has `threshold` verified cfrags the
//! other requests are dropped (cancelled), unless [`RetrieveOptions::audit_all`] asks to hear
//! every node. A cfrag counts only if the answer is signed by the node's worker and the cfrag
//! verifies against the capsule and the policy's three keys
//! (`kms_crypto::wire::DecodedCFrag::verify_and_recover`). A signed cfrag that fails
//! verification is a [`Fault`] when the Adjudicator's checks (modelled by `Evidence::outcome`)
//! would slash for it.

use std::collections::HashMap;

use alloy::{
    primitives::{Address, FixedBytes, B256, U256},
    providers::Provider,
    sol_types::SolValue,
};
use futures_util::{stream::FuturesUnordered, StreamExt};
use kms_contracts::{bindings::IAdjudicator as Bound, Adjudicator};
use kms_crypto::{
    evidence::{ChainFacts, WorkerBond},
    wire::{CFragAnswerError, ReencryptRequest, SignedCFrag, WrongCFrag},
    AnswerContext, Evidence, Outcome, Verdict,
};
use umbral_pre::{Capsule, DefaultSerialize, PublicKey, SecretKey, VerifiedCapsuleFrag};

use crate::{
    chain::{adjudicator_revert, transact, ChainError},
    client::Client,
    fault::{Fault, FaultError, ReportOutcome, FAULT_FILE_VERSION},
    http::{NodeClient, NodeError},
    policy::{check_url, PolicyFile, PolicyNode},
};

/// The most capsules a node takes in one request when it does not say otherwise (the nodes'
/// default limit; each node advertises its own in `GET /v1/node`, and retrievals follow it).
pub const MAX_CAPSULES_PER_REQUEST: usize =
    kms_crypto::wire::DEFAULT_MAX_CAPSULES_PER_REQUEST as usize;

/// How to retrieve.
#[derive(Debug, Clone, Default)]
pub struct RetrieveOptions {
    /// Ask every node to the end instead of stopping at `threshold` cfrags per capsule: slower,
    /// but every node's answer is checked (to audit the nodes).
    pub audit_all: bool,
    /// Where and when answers must be given to count (see [`AnswerTerms`]).
    pub terms: AnswerTerms,
}

/// What Bob requires of every signed answer, so that a wrong one stays provable: it names the
/// Adjudicator Bob would report to, and a period that has started, is at most one period old by
/// the chain's clock, and in which the signing worker was already bonded to the node's staker. A
/// node that names a later period (which its staker could escape by unbonding first), a period
/// before its worker's bond (which the Adjudicator would not hold against the stake), or an older
/// one (closer to the end of its evidence window) is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerTerms {
    /// The Adjudicator of the deployment.
    pub adjudicator: Address,
    /// The chain's current period when the retrieval started.
    pub current_period: u64,
    /// For each node's worker, the staker it is bonded to and the period its bond started
    /// (`StakingEscrow.workerBond`); an answer by a worker not listed here is refused.
    pub bonds: HashMap<Address, (Address, u64)>,
}

impl AnswerTerms {
    /// The terms now: `deployment`'s Adjudicator, the period of the chain's latest block, and the
    /// bonds in force of `workers`, all read at that block.
    pub async fn read<P: Provider>(
        provider: &P,
        deployment: &kms_contracts::Deployment,
        workers: impl IntoIterator<Item = Address>,
    ) -> Result<Self, ChainError> {
        let block = provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(|e| ChainError::rpc("reading the latest block", e))?
            .ok_or_else(|| ChainError::Mismatch("the node has no latest block".into()))?;
        let at = alloy::eips::BlockId::number(block.header.number);
        let escrow = &deployment.staking_escrow(provider);
        let read = workers.into_iter().map(|worker| async move {
            let bond = escrow
                .workerBond(worker)
                .block(at)
                .call()
                .await
                .map_err(|e| ChainError::rpc("reading a worker's bond", e))?;
            Ok::<_, ChainError>((worker, bond))
        });
        let mut bonds = HashMap::new();
        for (worker, bond) in futures_util::future::try_join_all(read).await? {
            // A closed bond cannot answer for anything new: leave the worker out.
            if bond.lastPeriod == U256::from(u32::MAX) && !bond.staker.is_zero() {
                bonds.insert(worker, (bond.staker, bond.firstPeriod.saturating_to()));
            }
        }
        Ok(Self {
            adjudicator: deployment.adjudicator,
            current_period: block.header.timestamp / deployment.seconds_per_period.max(1),
            bonds,
        })
    }

    /// Why an answer of `worker` for `staker` naming `period` would not be held against the
    /// stake, if it would not.
    fn refusal(&self, worker: Address, staker: Address, period: u64) -> Option<String> {
        let current = self.current_period;
        if period > current || period.saturating_add(1) < current {
            return Some(format!(
                "the answer names period {period}, the chain is in period {current}: only the \
                 current or the previous period can be held against the node"
            ));
        }
        match self.bonds.get(&worker) {
            Some(&(bonded_to, since)) if bonded_to == staker && since <= period => None,
            Some(&(bonded_to, since)) if bonded_to == staker => Some(format!(
                "the answer names period {period}, before its worker {worker} was bonded (period \
                 {since}): the Adjudicator would not hold it against the stake"
            )),
            _ => Some(format!(
                "the worker {worker} is not bonded to the node's staker {staker} on chain"
            )),
        }
    }
}

/// What happened with one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOutcome {
    /// It answered: `valid` cfrags verified, `wrong` did not.
    Answered {
        /// Verified cfrags.
        valid: usize,
        /// Cfrags that failed a check (see the faults and failures).
        wrong: usize,
    },
    /// It could not serve the request.
    Failed(String),
    /// Its answer was not needed: enough cfrags came from the others first.
    NotNeeded,
}

/// One node's part in a retrieval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// The node's staker.
    pub staker: Address,
    /// Where it was asked.
    pub url: String,
    /// What happened.
    pub outcome: NodeOutcome,
}

/// A node that did not contribute, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFailure {
    /// The node's staker.
    pub staker: Address,
    /// Where it was asked.
    pub url: String,
    /// Why it did not contribute.
    pub reason: String,
}

impl std::fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.staker, self.url, self.reason)
    }
}

fn list(failures: &[NodeFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a retrieval failed.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    /// No capsule was given.
    #[error("no capsules to retrieve")]
    NoCapsules,
    /// The receiving key is not the policy's.
    #[error("this receiving key is not the policy's receiving key {expected}: use the key the policy was granted to")]
    WrongReceivingKey {
        /// The policy's receiving key (hex).
        expected: String,
    },
    /// A capsule could not be serialized.
    #[error("capsule {index} cannot be serialized: {reason}")]
    Capsule {
        /// Its index.
        index: usize,
        /// Why.
        reason: String,
    },
    /// Fewer nodes than the threshold gave verified cfrags.
    #[error(
        "got {got} verified cfrags of the {needed} needed (for the worst capsule). Nodes: {}. \
         {} The policy may be revoked or expired, or nodes offline: try again later or ask the policy's owner",
        list(.failures),
        if .faults.is_empty() { String::new() } else { format!("{} provable fault(s) can be reported.", .faults.len()) }
    )]
    NotEnoughCFrags {
        /// The fewest verified cfrags any capsule got.
        got: usize,
        /// The policy's threshold.
        needed: usize,
        /// Why each node that fell short did.
        failures: Vec<NodeFailure>,
        /// Provable faults seen on the way (report them all the same).
        faults: Vec<Fault>,
    },
    /// The chain could not be read (refreshing the nodes' records).
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// A successful retrieval.
#[derive(Debug, Clone)]
pub struct Retrieval {
    /// For each capsule, in the request's order, its verified cfrags: at least the threshold
    /// (more with [`RetrieveOptions::audit_all`]).
    pub cfrags: Vec<Vec<VerifiedCapsuleFrag>>,
    /// Provable faults: report them with [`Client::report`].
    pub faults: Vec<Fault>,
    /// Each node's part, in the policy's node order.
    pub nodes: Vec<NodeReport>,
}

/// One capsule fragment of a node's answer, checked.
// `Valid` is the common case and is moved into the result as is: boxing it would only add an
// allocation per cfrag.
#[allow(clippy::large_enum_variant)]
enum Checked {
    Valid(VerifiedCapsuleFrag),
    Wrong {
        reason: String,
        fault: Option<Fault>,
    },
}

/// The policy's facts every check needs.
struct Context<'a> {
    policy: &'a PolicyFile,
    kfrag_signer: Address,
    terms: AnswerTerms,
}

/// Checks one signed cfrag of `node` for `capsule`.
fn check_answer(
    ctx: &Context<'_>,
    node: &PolicyNode,
    capsule: &Capsule,
    answer: &SignedCFrag,
) -> Checked {
    let wrong = |reason: String| Checked::Wrong {
        reason,
        fault: None,
    };
    let policy = ctx.policy;
    let decoded = match answer.decode() {
        Ok(decoded) => decoded,
        Err(e) => return wrong(e.to_string()),
    };
    if let Some(reason) = ctx.terms.refusal(node.worker, node.staker, answer.period) {
        return wrong(reason);
    }
    let current = ctx.terms.current_period;
    let answer_context = AnswerContext {
        chain_id: policy.chain_id,
        adjudicator: ctx.terms.adjudicator,
        staker: node.staker,
        period: answer.period,
        policy_id: policy.policy_id,
    };
    let WrongCFrag {
        cfrag,
        error,
        signature,
    } = match decoded.verify_and_recover(
        &answer_context,
        node.worker,
        capsule,
        &policy.verifying_key,
        &policy.delegating_key,
        &policy.receiving_key,
    ) {
        Ok(verified) => return Checked::Valid(verified),
        Err(CFragAnswerError::SignedButWrong(signed)) => *signed,
        Err(e) => return wrong(e.to_string()),
    };
    let capsule_simple = capsule.to_bytes_simple();
    let cfrag_simple = cfrag.to_bytes_simple();
    // Signed by the worker and wrong: provable if the Adjudicator would slash for it.
    let evidence = Evidence::for_wrong_cfrag(
        capsule,
        &cfrag,
        &policy.delegating_key,
        &policy.receiving_key,
        ctx.kfrag_signer,
        &answer_context,
        &signature,
    );
    let facts = ChainFacts {
        chain_id: policy.chain_id,
        adjudicator: ctx.terms.adjudicator,
        current_period: current,
        evidence_window: u64::MAX, // Bob reports at once: the window is the chain's to enforce
        kfrag_signer: ctx.kfrag_signer,
        worker: node.worker,
        bond: WorkerBond::open(node.staker, answer.period),
    };
    let outcome = evidence.as_ref().map(|e| e.outcome(&facts));
    match outcome {
        Ok(Outcome::Slash(verdict)) => Checked::Wrong {
            reason: format!("the cfrag fails verification ({error}): provable, verdict {}", verdict.name()),
            fault: Some(Fault {
                version: FAULT_FILE_VERSION,
                chain_id: policy.chain_id,
                policy_id: FixedBytes(policy.policy_id),
                adjudicator: ctx.terms.adjudicator,
                period: answer.period,
                staker: node.staker,
                worker: node.worker,
                url: node.url.clone(),
                capsule: capsule_simple.to_vec().into(),
                cfrag: cfrag_simple.to_vec().into(),
                delegating_key: policy.delegating_key.to_compressed_bytes().to_vec().into(),
                receiving_key: policy.receiving_key.to_compressed_bytes().to_vec().into(),
                kfrag_signer: ctx.kfrag_signer,
                worker_signature: signature.into(),
                expected_verdict: verdict.name().to_owned(),
                reason: error.to_string(),
            }),
        },
        Ok(other) => wrong(format!(
            "the cfrag fails verification ({error}) but the Adjudicator would not slash for it ({})",
            other.as_str()
        )),
        Err(e) => wrong(format!(
            "the cfrag fails verification ({error}) and cannot be evidence: {e}"
        )),
    }
}

/// Why a node gave no answer to check.
#[derive(Debug, thiserror::Error)]
enum AskError {
    /// The request failed.
    #[error(transparent)]
    Node(NodeError),
    /// It answered another number of cfrags than capsules asked.
    #[error("{0}")]
    Count(String),
}

/// Asks one node for every capsule, in batches the node accepts, and checks each answer.
///
/// The batches are as large as the node advertises (`GET /v1/node`'s `maxCapsulesPerRequest`,
/// asked once per [`NodeClient`] and node). A retrieval that fits in one request of the default
/// size does not wait for that answer: it is sent at once, and a node with a lower limit answers
/// 413, after which its limit is asked and the rest is sent in batches of it.
async fn ask_node(
    client: &NodeClient,
    ctx: &Context<'_>,
    node: &PolicyNode,
    receiving_sk: &SecretKey,
    capsules: &[Capsule],
    capsule_bytes: &[Vec<u8>],
) -> Result<Vec<Checked>, AskError> {
    let policy_id = ctx.policy.policy_id;
    let mut checked = Vec::with_capacity(capsules.len());
    let mut limit = match client.known_capsule_limit(&node.url) {
        Some(limit) => limit,
        None if capsules.len() <= MAX_CAPSULES_PER_REQUEST => MAX_CAPSULES_PER_REQUEST,
        None => client.capsule_limit(&node.url).await,
    };
    let mut asked_after_refusal = false;
    let mut start = 0;
    while start < capsules.len() {
        let end = capsules.len().min(start.saturating_add(limit));
        let (batch, bytes) = (&capsules[start..end], &capsule_bytes[start..end]);
        let answer = client
            .reencrypt(&node.url, policy_id, |timestamp| {
                ReencryptRequest::sign(receiving_sk, policy_id, node.staker, timestamp, bytes)
            })
            .await;
        let response = match answer {
            Ok(response) => response,
            // Too large for this node: its limit may be lower than assumed (once per batch run;
            // a 413 for the body's size is reported as is).
            Err(error @ NodeError::Refused { status: 413, .. }) if !asked_after_refusal => {
                asked_after_refusal = true;
                match client.refresh_capsule_limit(&node.url).await {
                    Some(advertised) if advertised < batch.len() => {
                        limit = advertised;
                        continue;
                    }
                    _ => return Err(AskError::Node(error)),
                }
            }
            Err(error) => return Err(AskError::Node(error)),
        };
        if response.cfrags.len() != batch.len() {
            return Err(AskError::Count(format!(
                "answered {} cfrags for {} capsules",
                response.cfrags.len(),
                batch.len()
            )));
        }
        checked.extend(
            batch
                .iter()
                .zip(&response.cfrags)
                .map(|(capsule, answer)| check_answer(ctx, node, capsule, answer)),
        );
        start = end;
    }
    Ok(checked)
}

/// Retrieves verified cfrags of `capsules` from `nodes` (the policy's, possibly refreshed from
/// the chain: see [`Client::retrieve`]). `receiving_sk` is Bob's secret key.
pub async fn retrieve_from(
    client: &NodeClient,
    policy: &PolicyFile,
    nodes: &[PolicyNode],
    receiving_sk: &SecretKey,
    capsules: &[Capsule],
    options: &RetrieveOptions,
) -> Result<Retrieval, RetrieveError> {
    if capsules.is_empty() {
        return Err(RetrieveError::NoCapsules);
    }
    if receiving_sk.public_key() != policy.receiving_key {
        return Err(RetrieveError::WrongReceivingKey {
            expected: kms_crypto::wire::encode_public_key(&policy.receiving_key),
        });
    }
    let capsule_bytes = capsules
        .iter()
        .enumerate()
        .map(|(index, c)| {
            c.to_bytes()
                .map(|b| b.into_vec())
                .map_err(|e| RetrieveError::Capsule {
                    index,
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ctx = Context {
        policy,
        kfrag_signer: policy.kfrag_signer(),
        terms: options.terms.clone(),
    };
    let threshold = policy.threshold;
    let enough = |cfrags: &[Vec<VerifiedCapsuleFrag>]| cfrags.iter().all(|c| c.len() >= threshold);

    let mut pending: FuturesUnordered<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let (ctx, capsule_bytes) = (&ctx, &capsule_bytes);
            async move {
                let result =
                    ask_node(client, ctx, node, receiving_sk, capsules, capsule_bytes).await;
                (i, result)
            }
        })
        .collect();
    let mut cfrags: Vec<Vec<VerifiedCapsuleFrag>> = vec![Vec::new(); capsules.len()];
    let mut faults = Vec::new();
    let mut outcomes = vec![NodeOutcome::NotNeeded; nodes.len()];
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); nodes.len()];
    while let Some((i, result)) = pending.next().await {
        match result {
            Ok(checked) => {
                let (mut valid, mut wrong) = (0, 0);
                for (index, check) in checked.into_iter().enumerate() {
                    match check {
                        Checked::Valid(cfrag) => {
                            valid += 1;
                            cfrags[index].push(cfrag);
                        }
                        Checked::Wrong { reason, fault } => {
                            wrong += 1;
                            reasons[i].push(format!("capsule {index}: {reason}"));
                            faults.extend(fault);
                        }
                    }
                }
                outcomes[i] = NodeOutcome::Answered { valid, wrong };
            }
            Err(error) => {
                let reason = error.to_string();
                reasons[i].push(reason.clone());
                outcomes[i] = NodeOutcome::Failed(reason);
            }
        }
        if !options.audit_all && enough(&cfrags) {
            // Dropping the rest cancels their requests.
            break;
        }
    }
    drop(pending);

    let reports: Vec<NodeReport> = nodes
        .iter()
        .zip(outcomes)
        .map(|(node, outcome)| NodeReport {
            staker: node.staker,
            url: node.url.clone(),
            outcome,
        })
        .collect();
    if !enough(&cfrags) {
        let failures = nodes
            .iter()
            .zip(reasons)
            .filter(|(_, reasons)| !reasons.is_empty())
            .map(|(node, reasons)| NodeFailure {
                staker: node.staker,
                url: node.url.clone(),
                reason: reasons.join(", "),
            })
            .collect();
        return Err(RetrieveError::NotEnoughCFrags {
            got: cfrags.iter().map(Vec::len).min().unwrap_or(0),
            needed: threshold,
            failures,
            faults,
        });
    }
    Ok(Retrieval {
        cfrags,
        faults,
        nodes: reports,
    })
}

/// One node's answer to an audit (see [`audit_node`]).
#[derive(Debug, Clone)]
pub enum AuditAnswer {
    /// Every cfrag was signed by the node's worker and verified.
    Served {
        /// How many.
        cfrags: usize,
    },
    /// At least one cfrag failed a check; each provable one is a fault to report.
    Wrong {
        /// Cfrags that failed.
        wrong: usize,
        /// Why each failed.
        reasons: Vec<String>,
        /// The provable ones.
        faults: Vec<Fault>,
    },
    /// The node answered with an HTTP error status.
    Refused {
        /// The status.
        status: u16,
        /// The node's reason.
        reason: String,
    },
    /// The node could not be reached or did not answer in time.
    Unreachable(String),
    /// The node's answer is not what the API specifies.
    Invalid(String),
}

/// Asks `node` to re-encrypt every capsule under `policy` as its Bob (`receiving_sk`) and checks
/// every cfrag as a retrieval does (worker signature, verification, provable faults), without
/// stopping at the threshold: what an auditor needs to know about one node.
pub async fn audit_node(
    client: &NodeClient,
    policy: &PolicyFile,
    terms: &AnswerTerms,
    node: &PolicyNode,
    receiving_sk: &SecretKey,
    capsules: &[Capsule],
) -> AuditAnswer {
    let capsule_bytes = match capsules
        .iter()
        .map(|c| c.to_bytes().map(|b| b.into_vec()))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(bytes) => bytes,
        Err(e) => return AuditAnswer::Invalid(format!("a capsule cannot be serialized: {e}")),
    };
    let ctx = Context {
        policy,
        kfrag_signer: policy.kfrag_signer(),
        terms: terms.clone(),
    };
    match ask_node(client, &ctx, node, receiving_sk, capsules, &capsule_bytes).await {
        Ok(checked) => {
            let (mut wrong, mut reasons, mut faults) = (0, Vec::new(), Vec::new());
            for check in &checked {
                if let Checked::Wrong { reason, fault } = check {
                    wrong += 1;
                    reasons.push(reason.clone());
                    faults.extend(fault.clone());
                }
            }
            if wrong == 0 {
                AuditAnswer::Served {
                    cfrags: checked.len(),
                }
            } else {
                AuditAnswer::Wrong {
                    wrong,
                    reasons,
                    faults,
                }
            }
        }
        Err(AskError::Node(NodeError::Refused { status, reason, .. })) => {
            AuditAnswer::Refused { status, reason }
        }
        Err(AskError::Node(NodeError::Unreachable(reason))) => AuditAnswer::Unreachable(reason),
        Err(e) => AuditAnswer::Invalid(e.to_string()),
    }
}

impl<P: Provider> Client<P> {
    /// The policy's nodes with their worker, URL and Umbral key as the chain has them now (a
    /// node may have moved or bonded another worker since the grant); the policy file's values
    /// stand in for what the chain lacks.
    pub async fn refresh_nodes(&self, policy: &PolicyFile) -> Result<Vec<PolicyNode>, ChainError> {
        self.check_policy_home(policy.chain_id, policy.policy_manager)?;
        let escrow = self.deployment.staking_escrow(&self.provider);
        let records = futures_util::future::try_join_all(policy.nodes.iter().map(|node| {
            let escrow = &escrow;
            async move {
                escrow
                    .nodeRecordOf(node.staker)
                    .call()
                    .await
                    .map_err(|e| ChainError::rpc("reading the nodes' records", e))
            }
        }))
        .await?;
        Ok(policy
            .nodes
            .iter()
            .zip(records)
            .map(|(node, record)| PolicyNode {
                staker: node.staker,
                worker: if record.worker.is_zero() {
                    node.worker
                } else {
                    record.worker
                },
                url: check_url(&record.url).unwrap_or_else(|_| node.url.clone()),
                umbral_public_key: PublicKey::try_from_compressed_bytes(&record.umbralPublicKey)
                    .unwrap_or(node.umbral_public_key),
            })
            .collect())
    }

    /// Retrieves verified cfrags of `capsules` for Bob, with the nodes' records refreshed
    /// from the chain (see [`retrieve_from`]).
    pub async fn retrieve(
        &self,
        policy: &PolicyFile,
        receiving_sk: &SecretKey,
        capsules: &[Capsule],
        options: &RetrieveOptions,
    ) -> Result<Retrieval, RetrieveError> {
        let nodes = self.refresh_nodes(policy).await?;
        let options = RetrieveOptions {
            terms: self.answer_terms(nodes.iter().map(|n| n.worker)).await?,
            ..*options
        };
        retrieve_from(
            &self.nodes,
            policy,
            &nodes,
            receiving_sk,
            capsules,
            &options,
        )
        .await
    }

    /// The terms the answers of `workers` must meet now (see [`AnswerTerms::read`]).
    pub async fn answer_terms(
        &self,
        workers: impl IntoIterator<Item = Address>,
    ) -> Result<AnswerTerms, ChainError> {
        AnswerTerms::read(&self.provider, &self.deployment, workers).await
    }

    /// Reports a fault in two transactions from the provider's account `investigator` (which
    /// receives the reward if the node is slashed): `commitEvidence`, then `evaluateCFrag`
    /// (simulated first) once the commitment is mined.
    pub async fn report(
        &self,
        fault: &Fault,
        investigator: Address,
    ) -> Result<ReportOutcome, ReportError> {
        if fault.chain_id != self.deployment.chain_id {
            return Err(ChainError::Mismatch(format!(
                "the fault is on chain {}, this client is connected to chain {}",
                fault.chain_id, self.deployment.chain_id
            ))
            .into());
        }
        if !self.deployment.has_adjudicator() {
            return Err(ChainError::Mismatch(
                "the deployments file names no Adjudicator: use an up-to-date one".into(),
            )
            .into());
        }
        let evidence = fault.evidence()?;
        // The bindings' struct is another Rust type for the same ABI tuple.
        let bound = Bound::Evidence::abi_decode(&evidence.abi_encode()).map_err(|e| {
            ChainError::Mismatch(format!(
                "the evidence does not fit the deployed Adjudicator's ABI: {e}"
            ))
        })?;
        let adjudicator = self.deployment.adjudicator(&self.provider);
        // Commit first, reveal from a later block: only the committer is paid, so a copy of the
        // reveal seen in the mempool earns nobody else the reward.
        let evidence_hash = alloy::primitives::keccak256(
            [evidence.capsule.as_ref(), evidence.cfrag.as_ref()].concat(),
        );
        let evaluated = adjudicator
            .evaluated(evidence_hash)
            .call()
            .await
            .map_err(|e| ChainError::rpc("asking whether the evidence was evaluated", e))?;
        if evaluated {
            return Err(ReportError::AlreadyEvaluated(evidence_hash));
        }
        let commitment = alloy::primitives::keccak256((evidence_hash, investigator).abi_encode());
        transact(
            "committing to the evidence",
            adjudicator.commitEvidence(commitment),
            adjudicator_revert,
            self.receipt_timeout,
        )
        .await?;
        let what = "reporting the fault";
        // Simulated on the pending block: the latest is the commitment's, where the reveal is
        // refused; the transaction itself lands in a later block.
        let receipt = transact(
            what,
            adjudicator
                .evaluateCFrag(bound)
                .block(alloy::eips::BlockId::pending()),
            adjudicator_revert,
            self.receipt_timeout,
        )
        .await?;
        let tx_hash = receipt.transaction_hash;
        let event: Adjudicator::CFragEvaluated = crate::chain::event_of(what, &receipt)?;
        let verdict = Verdict::from_u8(event.verdict).ok_or_else(|| {
            ChainError::Mismatch(format!(
                "the Adjudicator returned verdict {}, unknown to this kms",
                event.verdict
            ))
        })?;
        Ok(ReportOutcome {
            tx_hash,
            verdict,
            staker: event.staker,
            penalty: event.penalty,
            reward: event.reward,
        })
    }
}

/// Why a report failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The fault file does not make evidence.
    #[error(transparent)]
    Fault(#[from] FaultError),
    /// The chain refused it or could not be reached.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The Adjudicator has judged this capsule and cfrag already: nothing was sent.
    #[error("this cfrag was already evaluated (evidence hash {0}): nothing more to report")]
    AlreadyEvaluated(B256),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every answer Bob accepts can be held against the node's stake: its period is the chain's
    /// current or previous one, and its worker was bonded to the staker by then.
    #[test]
    fn answers_are_accepted_only_when_provable() {
        let (worker, staker) = (Address::repeat_byte(0x11), Address::repeat_byte(0x22));
        let terms = AnswerTerms {
            adjudicator: Address::repeat_byte(0xad),
            current_period: 100,
            bonds: HashMap::from([(worker, (staker, 99))]),
        };
        assert_eq!(terms.refusal(worker, staker, 100), None);
        assert_eq!(terms.refusal(worker, staker, 99), None);
        // Later than the chain: its staker could unbond before it starts.
        assert!(terms.refusal(worker, staker, 101).is_some());
        assert!(terms.refusal(worker, staker, u64::MAX).is_some());
        // Too old.
        assert!(terms.refusal(worker, staker, 98).is_some());
        assert!(terms.refusal(worker, staker, 0).is_some());
        // Before the worker's bond: the Adjudicator would refuse the evidence.
        let rotated = AnswerTerms {
            bonds: HashMap::from([(worker, (staker, 100))]),
            ..terms.clone()
        };
        let reason = rotated.refusal(worker, staker, 99).unwrap_or_default();
        assert!(reason.contains("before its worker"), "{reason}");
        // Bonded to another staker, or unknown.
        assert!(terms
            .refusal(worker, Address::repeat_byte(0x33), 100)
            .is_some());
        assert!(terms
            .refusal(Address::repeat_byte(0x44), staker, 100)
            .is_some());
    }
}
