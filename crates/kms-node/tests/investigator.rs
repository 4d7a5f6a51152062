//! Nodes as investigators, against the real contracts on anvil with real daemons: evidence
//! relayed by a Bob is judged before any gas is spent and filed exactly once (posted twice to one
//! node, or to two nodes), and a node's own audits catch a peer answering wrong cfrags and get it
//! slashed, never report an honest peer, and spend no more than their budget.
//! Needs `forge build` artifacts and `npm ci` (anvil and forge).

#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Duration};

use alloy::{
    primitives::{Address, Bytes, B256, U256},
    providers::{DynProvider, Provider},
    rpc::types::Filter,
    signers::local::PrivateKeySigner,
    sol_types::SolEvent,
};
use anyhow::{ensure, Context, Result};
use kms_client::{grant::GrantRequest, retrieve::RetrieveOptions, Client, HttpConfig, PolicyFile};
use kms_contracts::{
    test_utils::{eventually, TestChain},
    Adjudicator, PolicyManager,
};
use kms_crypto::{
    fault::{Fault, FAULT_FILE_VERSION},
    sign_answer,
    wire::{EvidenceStatus, NetworkView},
    AnswerContext,
};
use kms_node::{
    audit::AuditConfig, test_utils::local_settings, Behaviour, DutyConfig, RunningNode, Settings,
    Store,
};
use umbral_pre::{encrypt, generate_kfrags, reencrypt, Capsule, SecretKey, Signer};

const SECONDS_PER_PERIOD: u64 = 600;
/// How long a test waits for the nodes to do something.
const WAIT: Duration = Duration::from_secs(60);

/// Anvil's dev accounts, by role.
const ALICE: usize = 3;
/// Named as beneficiary by the Bob who relays evidence.
const BENEFICIARY: usize = 4;
/// (staker, worker) of the nodes: the investigator, the faulty one, an honest one.
const INVESTIGATOR: (usize, usize) = (1, 2);
const FAULTY: (usize, usize) = (5, 6);
const HONEST: (usize, usize) = (7, 8);

struct Node {
    staker: Address,
    worker: Address,
    running: RunningNode,
    _dir: tempfile::TempDir,
}

impl Node {
    fn url(&self) -> String {
        format!("http://{}", self.running.local_addr())
    }

    fn store(&self) -> &Store {
        self.running.store()
    }
}

fn settings(
    chain: &TestChain,
    dir: &Path,
    (staker, worker): (usize, usize),
    behaviour: Behaviour,
    audit: AuditConfig,
) -> Result<Settings> {
    let settings = local_settings(chain, staker, worker, dir.join("node.redb"))?;
    Ok(Settings {
        duties: DutyConfig {
            audit,
            // The investigator's fees are left alone: the budget test reads what it paid.
            withdraw_fees_threshold: None,
            ..settings.duties.clone()
        },
        behaviour,
        ..settings
    })
}

fn no_audits() -> AuditConfig {
    AuditConfig {
        budget_per_period: U256::ZERO,
        ..AuditConfig::default()
    }
}

async fn start_node(
    chain: &TestChain,
    accounts: (usize, usize),
    behaviour: Behaviour,
    audit: AuditConfig,
) -> Result<Node> {
    chain.stake_minimum(accounts.0, accounts.1).await?;
    let dir = tempfile::tempdir()?;
    let running = kms_node::start(settings(chain, dir.path(), accounts, behaviour, audit)?).await?;
    Ok(Node {
        staker: chain.address(accounts.0)?,
        worker: chain.address(accounts.1)?,
        running,
        _dir: dir,
    })
}

/// A chain with the three nodes, each committed to the next period (so it can take policies),
/// and at least half a period left before the next boundary.
async fn network(investigator_audit: AuditConfig) -> Result<(TestChain, Vec<Node>)> {
    // The nodes' logs go to the test's captured output, shown when a test fails: an audit round
    // that does not run says why (the auditor warns on every failed tick).
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("kms_node=info,kms_client=info")
        .try_init();
    let chain = TestChain::start(SECONDS_PER_PERIOD).await?;
    let into = chain.latest_timestamp().await? % SECONDS_PER_PERIOD;
    if into > SECONDS_PER_PERIOD / 2 {
        chain.travel(SECONDS_PER_PERIOD - into + 1).await?;
    }
    // The peers first: the investigator plans its audit as it starts.
    let faulty = start_node(&chain, FAULTY, Behaviour::WrongCFrags, no_audits()).await?;
    let honest = start_node(&chain, HONEST, Behaviour::Honest, no_audits()).await?;
    wait_committed(&chain, &[faulty.staker, honest.staker]).await?;
    let investigator =
        start_node(&chain, INVESTIGATOR, Behaviour::Honest, investigator_audit).await?;
    wait_committed(&chain, &[investigator.staker]).await?;
    Ok((chain, vec![investigator, faulty, honest]))
}

async fn wait_committed(chain: &TestChain, stakers: &[Address]) -> Result<()> {
    let escrow = chain.deployment().staking_escrow(chain.read_provider());
    for &staker in stakers {
        let escrow = &escrow;
        eventually("the node commits", WAIT, || async move {
            let info = escrow.getStakerInfo(staker).call().await?;
            let current = chain.current_period().await?;
            Ok(info.lastCommittedPeriod > U256::from(current))
        })
        .await?;
    }
    Ok(())
}

fn http() -> HttpConfig {
    HttpConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        attempts: 2,
        backoff: Duration::from_millis(50),
        // The test's nodes serve plain HTTP.
        allow_plain_http: true,
    }
}

/// Alice's policy for Bob, 1-of-3 on the three nodes; Alice's keys and Bob's.
struct Granted {
    policy: PolicyFile,
    delegating: SecretKey,
    signer: SecretKey,
    bob: SecretKey,
}

async fn grant(chain: &TestChain) -> Result<Granted> {
    let d = chain.deployment().clone();
    let alice = Client::connect(chain.provider(ALICE)?, d.clone(), http()).await?;
    let (delegating, signer, bob) = (
        SecretKey::random(),
        SecretKey::random(),
        SecretKey::random(),
    );
    let fee_rate = U256::from(
        d.policy_manager(chain.read_provider())
            .defaultFeeRate()
            .call()
            .await?,
    );
    let request = GrantRequest {
        label: "evidence".into(),
        owner: chain.address(ALICE)?,
        creator: chain.address(ALICE)?,
        delegating_key: delegating.public_key(),
        verifying_key: signer.public_key(),
        receiving_key: bob.public_key(),
        senders: Vec::new(),
        threshold: 1,
        shares: 3,
        end_timestamp: chain.latest_timestamp().await? + 2 * SECONDS_PER_PERIOD,
        fee_rate,
        seed: 1,
        salt: None,
    };
    let plan = alice.plan_grant(&request).await?;
    let outcome = alice.execute_grant(&plan, &delegating, &signer).await?;
    ensure!(outcome.uploaded() == 3, "{:?}", outcome.uploads);
    Ok(Granted {
        policy: outcome.policy,
        delegating,
        signer,
        bob,
    })
}

/// Bob retrieves a fresh capsule from every node; returns the faulty node's fault.
async fn bob_finds_a_fault(chain: &TestChain, granted: &Granted) -> Result<(Capsule, Fault)> {
    let bob = Client::connect(chain.read_provider(), chain.deployment().clone(), http()).await?;
    let (capsule, _) = encrypt(&granted.policy.delegating_key, b"a secret").unwrap();
    let retrieval = bob
        .retrieve(
            &granted.policy,
            &granted.bob,
            std::slice::from_ref(&capsule),
            &RetrieveOptions {
                audit_all: true,
                ..Default::default()
            },
        )
        .await?;
    ensure!(retrieval.faults.len() == 1, "{:?}", retrieval.faults);
    Ok((capsule, retrieval.faults[0].clone()))
}

/// `fault` with its answer replaced: `cfrag` signed by `signer` in the name of `staker`.
fn answered_by(
    fault: &Fault,
    cfrag: &[u8],
    staker: Address,
    signer: &PrivateKeySigner,
) -> Result<Fault> {
    let context = AnswerContext {
        chain_id: fault.chain_id,
        adjudicator: fault.adjudicator,
        staker,
        period: fault.period,
        policy_id: fault.policy_id.0,
    };
    let signature = sign_answer(signer, &context, &fault.capsule, cfrag)?;
    Ok(Fault {
        cfrag: Bytes::copy_from_slice(cfrag),
        staker,
        worker: signer.address(),
        worker_signature: Bytes::from(signature.as_bytes().to_vec()),
        ..fault.clone()
    })
}

async fn post(
    http: &reqwest::Client,
    node: &Node,
    fault: &Fault,
    beneficiary: Option<Address>,
) -> Result<(u16, serde_json::Value)> {
    let mut url = format!("{}/v1/evidence", node.url());
    if let Some(beneficiary) = beneficiary {
        url = format!("{url}?beneficiary={beneficiary}");
    }
    let response = http.post(url).json(fault).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

async fn evidence_status(http: &reqwest::Client, node: &Node, id: B256) -> Result<EvidenceStatus> {
    let response = http
        .get(format!("{}/v1/evidence/{id}", node.url()))
        .send()
        .await?;
    ensure!(response.status().is_success(), "{}", response.status());
    Ok(response.json().await?)
}

/// Every `CFragEvaluated` event, as (evidence hash, staker, investigator, penalty, reward).
async fn evaluations(chain: &TestChain) -> Result<Vec<(B256, Address, Address, U256, U256)>> {
    let d = chain.deployment();
    let filter = Filter::new()
        .address(d.adjudicator)
        .event_signature(Adjudicator::CFragEvaluated::SIGNATURE_HASH)
        .from_block(d.start_block);
    let mut out = Vec::new();
    for log in chain.read_provider().get_logs(&filter).await? {
        let event = log.log_decode::<Adjudicator::CFragEvaluated>()?.inner.data;
        out.push((
            event.evidenceHash,
            event.staker,
            event.investigator,
            event.penalty,
            event.reward,
        ));
    }
    Ok(out)
}

async fn nonce(reader: &DynProvider, account: Address) -> Result<u64> {
    Ok(reader.get_transaction_count(account).await?)
}

#[tokio::test]
async fn relayed_evidence_is_judged_before_any_gas_and_filed_once() -> Result<()> {
    let (chain, nodes) = network(no_audits()).await?;
    let (relay, faulty, honest) = (&nodes[0], &nodes[1], &nodes[2]);
    let reader = chain.read_provider();
    let granted = grant(&chain).await?;
    let (capsule, fault) = bob_finds_a_fault(&chain, &granted).await?;
    ensure!(fault.staker == faulty.staker && fault.version == FAULT_FILE_VERSION);
    let http = reqwest::Client::new();

    // Bad evidence: the contract's reason, and no transaction from either relaying worker.
    let nonces = (
        nonce(&reader, relay.worker).await?,
        nonce(&reader, honest.worker).await?,
    );
    let mut tampered = fault.clone();
    let mut signature = tampered.worker_signature.to_vec();
    signature[40] ^= 1;
    tampered.worker_signature = signature.into();
    let (status, body) = post(&http, relay, &tampered, None).await?;
    ensure!(status == 422, "tampered: {status} {body}");
    ensure!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Adjudicator would refuse"),
        "{body}"
    );

    let stranger = PrivateKeySigner::random();
    let unknown = answered_by(&fault, &fault.cfrag, faulty.staker, &stranger)?;
    let (status, body) = post(&http, relay, &unknown, None).await?;
    ensure!(status == 422, "unknown worker: {status} {body}");
    ensure!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("was not the worker"),
        "{body}"
    );

    // An honest answer: a correct cfrag of this policy, signed by the honest node's worker.
    let kfrags = generate_kfrags(
        &granted.delegating,
        &granted.policy.receiving_key,
        &Signer::new(granted.signer.clone()),
        1,
        1,
        true,
        true,
    );
    let correct = reencrypt(&capsule, kfrags[0].clone()).to_bytes_simple();
    let honest_answer = answered_by(&fault, &correct, honest.staker, &chain.signer(HONEST.1)?)?;
    let (status, body) = post(&http, relay, &honest_answer, None).await?;
    ensure!(status == 422, "honest cfrag: {status} {body}");
    ensure!(
        body["error"].as_str().unwrap().contains("correct"),
        "{body}"
    );

    // A node never files against its own staker; a body that is no fault file is a 400.
    let (status, body) = post(&http, faulty, &fault, None).await?;
    ensure!(status == 422, "own fault: {status} {body}");
    let response = http
        .post(format!("{}/v1/evidence", relay.url()))
        .body("{\"version\": 2}")
        .send()
        .await?;
    ensure!(response.status().as_u16() == 400, "{}", response.status());
    ensure!(
        (
            nonce(&reader, relay.worker).await?,
            nonce(&reader, honest.worker).await?
        ) == nonces,
        "a refused evidence cost gas"
    );

    // The real fault, posted twice to one node and once to another: filed once.
    let beneficiary = chain.address(BENEFICIARY)?;
    let token = chain.deployment().token(&reader);
    let beneficiary_before = token.balanceOf(beneficiary).call().await?;
    let honest_staker_before = token.balanceOf(honest.staker).call().await?;
    let (status, first) = post(&http, relay, &fault, Some(beneficiary)).await?;
    ensure!(status == 202, "{status} {first}");
    let (status, again) = post(&http, relay, &fault, Some(beneficiary)).await?;
    ensure!(status == 200, "{status} {again}");
    ensure!(first["id"] == again["id"] && first["id"] == serde_json::json!(fault.evidence_hash()));
    let (status, other) = post(&http, honest, &fault, None).await?;
    ensure!(status == 202, "{status} {other}");
    let id = fault.evidence_hash();
    let states = |http: &reqwest::Client| {
        let http = http.clone();
        let (relay, honest) = (relay, honest);
        async move {
            Ok::<_, anyhow::Error>((
                evidence_status(&http, relay, id).await?,
                evidence_status(&http, honest, id).await?,
            ))
        }
    };
    eventually("both filings end", WAIT, || async {
        let (a, b) = states(&http).await?;
        Ok(![&a, &b]
            .iter()
            .any(|s| s.state == "pending" || s.state == "committed"))
    })
    .await?;
    let (a, b) = states(&http).await?;
    let mut finals = [a.state.as_str(), b.state.as_str()];
    finals.sort_unstable();
    ensure!(finals == ["evaluatedElsewhere", "slashed"], "{a:?} {b:?}");
    let events = evaluations(&chain).await?;
    ensure!(events.len() == 1, "{events:?}");
    let (hash, staker, paid, penalty, reward) = events[0];
    ensure!(hash == id && staker == faulty.staker && !penalty.is_zero());
    let winner = if a.state == "slashed" { &a } else { &b };
    ensure!(winner.reward == Some(reward) && winner.penalty == Some(penalty));
    ensure!(
        paid == winner.beneficiary,
        "paid {paid}, beneficiary {}",
        winner.beneficiary
    );
    // Exactly the contract's reward went to the beneficiary, whoever's reveal won.
    if paid == beneficiary {
        ensure!(token.balanceOf(beneficiary).call().await? == beneficiary_before + reward);
    } else {
        ensure!(paid == honest.staker);
        ensure!(token.balanceOf(honest.staker).call().await? == honest_staker_before + reward);
    }
    let adjudicator = Adjudicator::new(chain.deployment().adjudicator, &reader);
    ensure!(adjudicator.violations(faulty.staker).call().await? == U256::from(1));

    // Replayed: a node that had not seen it refuses it with the contract's reason, for no gas;
    // the nodes that filed it answer where it stands.
    let late = start_node(&chain, (9, 9), Behaviour::Honest, no_audits()).await?;
    let late_nonce = nonce(&reader, late.worker).await?;
    let (status, body) = post(&http, &late, &fault, None).await?;
    ensure!(status == 409, "{status} {body}");
    ensure!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("already evaluated"),
        "{body}"
    );
    ensure!(nonce(&reader, late.worker).await? == late_nonce);
    let (status, body) = post(&http, honest, &fault, None).await?;
    ensure!(status == 200, "known to this node: {status} {body}");
    Ok(())
}

/// The fees the investigator's worker paid for its audit policies: `(period, value)` per policy.
async fn audit_fees(chain: &TestChain, worker: Address) -> Result<Vec<(u64, U256)>> {
    let d = chain.deployment();
    let reader = chain.read_provider();
    let filter = Filter::new()
        .address(d.policy_manager)
        .event_signature(PolicyManager::PolicyCreated::SIGNATURE_HASH)
        .from_block(d.start_block);
    let mut out = Vec::new();
    for log in reader.get_logs(&filter).await? {
        let tx_hash = log.transaction_hash.context("log without transaction")?;
        let tx = reader
            .get_transaction_by_hash(tx_hash)
            .await?
            .context("no transaction")?;
        use alloy::consensus::Transaction as _;
        if tx.to() != Some(d.policy_manager) || tx.inner.signer() != worker {
            continue;
        }
        let block = reader
            .get_block_by_number(log.block_number.context("no block")?.into())
            .await?
            .context("no block")?;
        out.push((block.header.timestamp / SECONDS_PER_PERIOD, tx.value()));
    }
    Ok(out)
}

#[tokio::test]
async fn audits_catch_a_wrong_peer_never_an_honest_one_within_budget() -> Result<()> {
    let fee_rate = U256::from(1_000_000_000u64); // the deployment's default rate
                                                 // Two peers at the default rate fit; a third would not.
    let budget = fee_rate * U256::from(2) + fee_rate / U256::from(2);
    let audit = AuditConfig {
        budget_per_period: budget,
        peers: 5,
        rounds_per_period: 3,
        fee_rate: None,
    };
    let (chain, nodes) = network(audit).await?;
    let (investigator, faulty, honest) = (&nodes[0], &nodes[1], &nodes[2]);
    let token = chain.deployment().token(chain.read_provider());
    let staker_before = token.balanceOf(investigator.staker).call().await?;

    const PERIODS: u64 = 5;
    let first_period = chain.current_period().await?;
    for period in first_period..first_period + PERIODS {
        // Chain time runs through the period in steps; every round due is run.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let store = investigator.store().clone();
            let record = tokio::task::spawn_blocking(move || store.audit(period)).await??;
            let now = chain.latest_timestamp().await?;
            if std::time::Instant::now() > deadline {
                let store = investigator.store().clone();
                let duties = tokio::task::spawn_blocking(move || store.duties()).await??;
                anyhow::bail!(
                    "period {period}: the audit did not run its rounds in time: {record:?}; \
                     duties {duties:?}"
                );
            }
            if let Some(record) = &record {
                ensure!(
                    !matches!(record.state, kms_node::store::AuditState::Abandoned { .. }),
                    "period {period}: the audit was abandoned: {record:?}"
                );
                let due = record.rounds.iter().filter(|&&at| at <= now).count();
                if record.rounds_done == record.rounds.len() && due == record.rounds.len() {
                    break;
                }
                if record.rounds_done < due {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
            ensure!(
                now < (period + 1) * SECONDS_PER_PERIOD,
                "period {period} ended with its audit {record:?}"
            );
            // Never past the period's end: the node would move on to the next period's audit,
            // leaving the rounds still due in this one (rounds missed are not made up). Nor past
            // the next round: landing just before the end would leave the node a second of chain
            // time for that round, and anvil's clock runs on with the wall clock, so a block
            // mined while the round runs (its evidence's transactions) could already be in the
            // next period on a loaded machine. A round is planned at least a twentieth of a
            // period before the end, which is the slack this leaves it.
            let end = (period + 1) * SECONDS_PER_PERIOD;
            let next_round = record
                .as_ref()
                .and_then(|r| r.rounds.iter().copied().find(|&at| at > now))
                .unwrap_or(end - 1)
                .min(end - 1);
            chain
                .travel((SECONDS_PER_PERIOD / 12).min(next_round - now).max(1))
                .await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if period + 1 < first_period + PERIODS {
            let into = chain.latest_timestamp().await? % SECONDS_PER_PERIOD;
            chain.travel(SECONDS_PER_PERIOD - into + 1).await?;
            wait_committed(&chain, &[faulty.staker, honest.staker]).await?;
        }
    }

    // Every wrong answer became evidence, each filed exactly once and slashed.
    let store = investigator.store().clone();
    // A reveal goes out from a block after its commitment's: the chain moves on.
    let chain_ref = &chain;
    eventually("the evidence is filed", WAIT, || {
        let store = store.clone();
        async move {
            chain_ref.mine(1).await?;
            let all = tokio::task::spawn_blocking(move || store.all_evidence()).await??;
            Ok(!all.is_empty() && all.iter().all(|(_, r)| r.state.is_final()))
        }
    })
    .await?;
    let store = investigator.store().clone();
    let filed = tokio::task::spawn_blocking(move || store.all_evidence()).await??;
    let events = evaluations(&chain).await?;
    ensure!(
        events.len() == filed.len(),
        "{} events, {} filed",
        events.len(),
        filed.len()
    );
    let mut rewards = U256::ZERO;
    for (hash, record) in &filed {
        ensure!(
            record.fault.staker == faulty.staker,
            "an honest peer was reported: {record:?}"
        );
        ensure!(
            matches!(
                record.state,
                kms_node::store::EvidenceState::Evaluated { .. }
            ),
            "{record:?}"
        );
        let matching: Vec<_> = events.iter().filter(|e| e.0 == *hash).collect();
        ensure!(
            matching.len() == 1,
            "evidence {hash} evaluated {} times",
            matching.len()
        );
        ensure!(
            matching[0].2 == investigator.staker,
            "the staker is the investigator"
        );
        rewards += matching[0].4;
    }
    ensure!(events.iter().all(|e| e.1 == faulty.staker));
    let adjudicator = Adjudicator::new(chain.deployment().adjudicator, chain.read_provider());
    ensure!(
        adjudicator.violations(faulty.staker).call().await? == U256::from(filed.len()),
        "violations"
    );
    ensure!(adjudicator
        .violations(honest.staker)
        .call()
        .await?
        .is_zero());
    ensure!(token.balanceOf(investigator.staker).call().await? == staker_before + rewards);

    // The budget, to the wei: one policy a period, two peers at the rate.
    let fees = audit_fees(&chain, investigator.worker).await?;
    ensure!(fees.len() as u64 == PERIODS, "{fees:?}");
    for (period, value) in &fees {
        ensure!(*value <= budget, "period {period}: {value} > {budget}");
        ensure!(
            *value == fee_rate * U256::from(2),
            "period {period}: {value}"
        );
    }

    // The availability record: the honest peer served every round; the faulty one was wrong.
    let view: NetworkView = reqwest::get(format!("{}/v1/network", investigator.url()))
        .await?
        .json()
        .await?;
    let seen = |staker: Address| {
        view.peers
            .iter()
            .find(|p| p.staker == staker)
            .and_then(|p| p.availability.clone())
    };
    let honest_seen = seen(honest.staker).context("honest peer not in the view")?;
    ensure!(
        honest_seen.served > 0 && honest_seen.total() == honest_seen.served,
        "{honest_seen:?}"
    );
    let faulty_seen = seen(faulty.staker).context("faulty peer not in the view")?;
    ensure!(faulty_seen.wrong > 0, "{faulty_seen:?}");
    ensure!(
        seen(investigator.staker).is_none(),
        "the node audited itself"
    );
    let metrics = reqwest::get(format!("{}/metrics", investigator.url()))
        .await?
        .text()
        .await?;
    ensure!(
        metrics.contains("kms_node_audit_answers_total"),
        "{metrics}"
    );
    Ok(())
}
