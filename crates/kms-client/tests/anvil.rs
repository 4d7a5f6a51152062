//! The client against the real contracts on anvil and real in-process nodes (`kms-node`'s
//! router on 127.0.0.1): Alice grants, Enrico encrypts a file, Bob retrieves and decrypts;
//! revocation, a shortage of nodes, and a lying node that Bob's report gets slashed.
//!
//! Needs `forge build` artifacts and `npm ci` (anvil and forge), like the other anvil tests.

#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use alloy::{
    primitives::{Address, U256},
    providers::{ext::AnvilApi, DynProvider, Provider},
    signers::local::PrivateKeySigner,
};
use anyhow::{bail, ensure, Context, Result};
use axum::{
    body::{to_bytes, Body},
    extract::Request,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Json,
};
use kms_client::{
    fault::Fault,
    grant::GrantRequest,
    retrieve::{NodeOutcome, RetrieveOptions},
    revocation::{self, OrderError},
    stream, ChainError, Client, HttpConfig, Inbox, MessageError, MessageSender, PolicyFile,
    ReportError, RetrieveError, SamplingError, SenderKey, SessionLimits, TrustedSenders,
};
use kms_contracts::{test_utils::TestChain, Deployment};
use kms_crypto::{
    sign_answer,
    umbral::{cfrag_from_bytes_simple, layout},
    wire::{decode_b64, encode_b64, encode_hex, ReencryptRequest, ReencryptResponse},
    AnswerContext, Verdict,
};
use kms_node::{
    ApiState, ChainDirectory, Follower, FollowerConfig, HeadView, Limits, NodeIdentity, Store,
};
use umbral_pre::{Capsule, CapsuleFrag, DefaultDeserialize, DefaultSerialize, SecretKey};

/// Long periods: a test never crosses more than one period boundary.
const SECONDS_PER_PERIOD: u64 = 3600;

/// Anvil's dev accounts, by role.
const ALICE: usize = 1;
/// (staker, worker) pairs.
const NODES: [(usize, usize); 4] = [(2, 3), (4, 5), (6, 7), (8, 9)];

/// A node served in process.
struct TestNode {
    staker: Address,
    url: String,
    /// What its chain follower read last (the node refuses revoked policies from it).
    head: Arc<HeadView>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a test node's record and behaviour are set up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A real node.
    Honest,
    /// A real node that answers re-encryptions after a delay.
    Slow,
    /// A real node behind a layer that replaces each cfrag's `z` and signs the result with the
    /// worker key: a provably wrong answer.
    Liar,
    /// Staked, but publishes no node record.
    NoRecord,
    /// Publishes a record whose URL nobody listens on.
    DeadUrl,
    /// Asks a minimum fee rate of 10 gwei.
    Expensive,
    /// A real node that takes at most two capsules per request (`[limits] max_capsules`).
    SmallBatches,
}

async fn send<P: Provider, D: alloy::contract::CallDecoder>(
    step: &str,
    call: alloy::contract::CallBuilder<P, D>,
) -> Result<()> {
    let receipt = call
        .send()
        .await
        .with_context(|| step.to_owned())?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "{step} reverted");
    Ok(())
}

/// Stakes `(staker, worker)`, commits to the next period and serves a node as `kind` says.
async fn start_node(chain: &TestChain, accounts: (usize, usize), kind: Kind) -> Result<TestNode> {
    let d = chain.deployment();
    let (staker_index, worker_index) = accounts;
    chain.stake_minimum(staker_index, worker_index).await?;
    let staker = chain.address(staker_index)?;
    let worker = chain.signer(worker_index)?;
    let umbral = SecretKey::random();
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("node.redb"))?;
    let identity = NodeIdentity {
        staker,
        worker: worker.clone(),
        umbral: umbral.clone(),
        chain_id: d.chain_id,
        adjudicator: d.adjudicator,
        policy_manager: d.policy_manager,
        seconds_per_period: d.seconds_per_period,
    };
    let directory = ChainDirectory::new(chain.read_provider(), d.policy_manager, d.start_block);
    // The daemon's chain follower, as `kms_node::start` runs it: it keeps the head view the API
    // refuses revoked policies on.
    let head = Arc::new(HeadView::new(Duration::from_secs(60)));
    let follower = Follower::new(
        chain.read_provider(),
        store.clone(),
        FollowerConfig {
            staker,
            policy_manager: d.policy_manager,
            start_block: d.start_block,
            confirmations: 0,
            max_range: 1000,
        },
    )
    .with_head_view(head.clone());
    let limits = match kind {
        Kind::SmallBatches => Limits {
            max_capsules: 2,
            ..Limits::default()
        },
        _ => Limits::default(),
    };
    let state =
        ApiState::new(identity, store, Arc::new(directory), limits)?.with_head_view(head.clone());
    let mut app = kms_node::router(Arc::new(state));
    match kind {
        Kind::Slow => app = app.layer(middleware::from_fn(slow_reencryption)),
        Kind::Liar => {
            let (chain_id, adjudicator) = (d.chain_id, d.adjudicator);
            app = app.layer(middleware::from_fn(move |request, next| {
                let context = AnswerContext {
                    chain_id,
                    adjudicator,
                    staker,
                    period: 0,
                    policy_id: [0; 16],
                };
                lie(worker.clone(), context, request, next)
            }));
        }
        _ => {}
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let follow = async move {
            loop {
                if let Err(e) = follower.step().await {
                    eprintln!("follower step: {e}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            _ = axum::serve(listener, app) => {}
            () = follow => {}
        }
    });

    let as_worker = chain.provider(worker_index)?;
    let escrow = d.staking_escrow(&as_worker);
    send("commitToNextPeriod", escrow.commitToNextPeriod()).await?;
    let published = match kind {
        Kind::NoRecord => None,
        Kind::DeadUrl => Some("http://127.0.0.1:9".to_owned()),
        _ => Some(url.clone()),
    };
    if let Some(published) = published {
        let key = umbral.public_key().to_compressed_bytes().to_vec();
        send(
            "publishNodeRecord",
            escrow.publishNodeRecord(published, key.into()),
        )
        .await?;
    }
    if kind == Kind::Expensive {
        let as_staker = chain.provider(staker_index)?;
        let manager = d.policy_manager(&as_staker);
        send(
            "setMinFeeRate",
            manager.setMinFeeRate(U256::from(10_000_000_000u64)),
        )
        .await?;
    }
    Ok(TestNode {
        staker,
        url,
        head,
        task,
        _dir: dir,
    })
}

async fn slow_reencryption(request: Request, next: Next) -> Response {
    if request.uri().path().ends_with("/reencrypt") {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    next.run(request).await
}

/// Lets the node answer, then replaces `z` in every cfrag and signs the forgery with the
/// worker key, as a cheating node would (naming the node's staker and the period it answered in).
async fn lie(
    worker: PrivateKeySigner,
    context: AnswerContext,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if !path.ends_with("/reencrypt") {
        return next.run(request).await;
    }
    let policy_hex = path.split('/').nth(3).unwrap();
    let policy_id: [u8; 16] = alloy::hex::decode(policy_hex).unwrap().try_into().unwrap();
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap();
    let asked: ReencryptRequest = serde_json::from_slice(&body).unwrap();
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if !response.status().is_success() {
        return response;
    }
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let mut answer: ReencryptResponse = serde_json::from_slice(&body).unwrap();
    for (signed, capsule) in answer.cfrags.iter_mut().zip(&asked.capsules) {
        let capsule = Capsule::from_bytes(&decode_b64("capsule", capsule).unwrap()).unwrap();
        let cfrag = CapsuleFrag::from_bytes(&decode_b64("cfrag", &signed.cfrag).unwrap()).unwrap();
        let mut simple = cfrag.to_bytes_simple().to_vec();
        let z = SecretKey::random().to_be_bytes();
        simple[layout::Z].copy_from_slice(z.as_secret());
        let forged = cfrag_from_bytes_simple(&simple).unwrap();
        signed.cfrag = encode_b64(&forged.to_bytes().unwrap());
        let context = AnswerContext {
            period: signed.period,
            policy_id,
            ..context
        };
        let signature =
            sign_answer(&worker, &context, &capsule.to_bytes_simple(), &simple).unwrap();
        signed.signature = encode_hex(&signature.as_bytes());
    }
    Json(answer).into_response()
}

/// A chain with nodes, and Alice's and Bob's keys.
struct Setup {
    chain: TestChain,
    d: Deployment,
    nodes: Vec<TestNode>,
    alice: Client<DynProvider>,
    delegating: SecretKey,
    signer: SecretKey,
    bob: SecretKey,
    fee_rate: U256,
}

impl Setup {
    /// Waits until every node's follower has read the chain's current head.
    async fn wait_for_heads(&self) -> Result<()> {
        let head = self.chain.read_provider().get_block_number().await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self
            .nodes
            .iter()
            .any(|n| n.head.head().is_none_or(|h| h.number < head))
        {
            ensure!(
                std::time::Instant::now() < deadline,
                "the nodes did not read block {head}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn start(kinds: &[Kind]) -> Result<Self> {
        let chain = TestChain::start(SECONDS_PER_PERIOD).await?;
        let d = chain.deployment().clone();
        // The fees and refunds checked below assume no period ends during the test: within a
        // minute of a boundary, wait until it passes. Not by moving the chain's clock: these
        // nodes run no duties, whose ticks feed the chain's time to a node's clock, so they name
        // their answers' period from the local clock, and Bob refuses an answer naming the
        // period before the worker's bond.
        let into = chain.latest_timestamp().await? % SECONDS_PER_PERIOD;
        if into > SECONDS_PER_PERIOD - 60 {
            tokio::time::sleep(std::time::Duration::from_secs(
                SECONDS_PER_PERIOD - into + 1,
            ))
            .await;
        }
        let mut nodes = Vec::new();
        for (accounts, kind) in NODES.iter().zip(kinds) {
            nodes.push(start_node(&chain, *accounts, *kind).await?);
        }
        let alice = Client::connect(chain.provider(ALICE)?, d.clone(), quick_http()).await?;
        let fee_rate = U256::from(
            d.policy_manager(chain.read_provider())
                .defaultFeeRate()
                .call()
                .await?,
        );
        Ok(Self {
            chain,
            d,
            nodes,
            alice,
            delegating: SecretKey::random(),
            signer: SecretKey::random(),
            bob: SecretKey::random(),
            fee_rate,
        })
    }

    async fn now(&self) -> Result<u64> {
        Ok(self.chain.latest_timestamp().await?)
    }

    async fn request(&self, threshold: usize, shares: usize) -> Result<GrantRequest> {
        Ok(GrantRequest {
            label: "media/holiday.mp4".into(),
            owner: self.chain.address(ALICE)?,
            creator: self.chain.address(ALICE)?,
            delegating_key: self.delegating.public_key(),
            verifying_key: self.signer.public_key(),
            receiving_key: self.bob.public_key(),
            senders: vec![enrico().public_key()],
            threshold,
            shares,
            end_timestamp: self.now().await? + 2 * SECONDS_PER_PERIOD,
            fee_rate: self.fee_rate,
            seed: 7,
            salt: None,
        })
    }

    /// Plans and executes a grant; every upload must succeed.
    async fn grant(&self, threshold: usize, shares: usize) -> Result<PolicyFile> {
        let plan = self
            .alice
            .plan_grant(&self.request(threshold, shares).await?)
            .await?;
        let outcome = self
            .alice
            .execute_grant(&plan, &self.delegating, &self.signer)
            .await?;
        for upload in &outcome.uploads {
            ensure!(
                upload.result == Ok(true),
                "{}: {:?}",
                upload.node.url,
                upload.result
            );
        }
        ensure!(outcome.is_usable());
        Ok(outcome.policy)
    }

    /// Bob's client: reads only (retrieval needs no account).
    async fn bob_client(&self) -> Result<Client<DynProvider>> {
        Ok(Client::connect(self.chain.read_provider(), self.d.clone(), quick_http()).await?)
    }

    /// What revoking `nodes`' arrangements in `block` refunds, by the contract's own views at
    /// the block before (anvil mines one transaction per block): each node's periods from the
    /// first not yet refunded through the last, less those it committed to, at the fee rate.
    async fn unearned(&self, policy: &PolicyFile, nodes: &[Address], block: u64) -> Result<U256> {
        let at = alloy::eips::BlockId::number(block - 1);
        let manager = self.d.policy_manager(self.chain.read_provider());
        let view = manager
            .getPolicy(alloy::primitives::FixedBytes(policy.policy_id))
            .block(at)
            .call()
            .await?;
        let from = view.refundedThrough + U256::from(1);
        let mut unearned = U256::ZERO;
        for node in nodes {
            let committed = manager
                .committedCount(*node, from, view.lastPeriod)
                .block(at)
                .call()
                .await?;
            unearned += (view.lastPeriod - from + U256::from(1) - committed) * view.feeRate;
        }
        Ok(unearned)
    }

    /// The wei the sender of `tx` paid for its gas.
    async fn gas_paid(&self, tx: alloy::primitives::B256) -> Result<U256> {
        let receipt = self
            .chain
            .read_provider()
            .get_transaction_receipt(tx)
            .await?
            .context("no receipt")?;
        Ok(U256::from(receipt.gas_used) * U256::from(receipt.effective_gas_price))
    }
}

/// `what` was refused by the contract with a reason containing `expected` (in words, from the
/// simulation).
fn reverted_with<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, ChainError>,
    expected: &str,
) -> Result<()> {
    match result {
        Err(ChainError::Reverted { reason, .. }) => {
            ensure!(reason.contains(expected), "{what}: {reason}");
            Ok(())
        }
        other => bail!("{what}: expected a revert, got {other:?}"),
    }
}

fn quick_http() -> HttpConfig {
    HttpConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        attempts: 2,
        backoff: Duration::from_millis(50),
        // The in-process nodes serve plain HTTP.
        allow_plain_http: true,
    }
}

fn random_payload(len: usize) -> Vec<u8> {
    use rand_core::{RngCore, SeedableRng};
    let mut bytes = vec![0u8; len];
    rand_chacha::ChaCha20Rng::seed_from_u64(len as u64).fill_bytes(&mut bytes);
    bytes
}

/// Enrico's sender key: the policies' authorized sender.
fn enrico() -> kms_client::SenderKey {
    kms_client::SenderKey::new(kms_crypto::keys::MasterSecret::from_seed([7; 32]).sender_key())
}

/// Enrico encrypts `payload` to the policy; returns the encrypted file.
fn encrypt(policy: &PolicyFile, payload: &[u8]) -> Vec<u8> {
    let mut file = Vec::new();
    stream::encrypt_stream(
        &policy.delegating_key,
        &enrico(),
        &mut &payload[..],
        &mut file,
    )
    .unwrap();
    file
}

#[tokio::test]
async fn grant_encrypt_retrieve_decrypt() -> Result<()> {
    let setup = Setup::start(&[Kind::Honest, Kind::Honest, Kind::Honest]).await?;

    // Alice plans: all three nodes, the fee the contract will ask.
    let request = setup.request(2, 3).await?;
    let plan = setup.alice.plan_grant(&request).await?;
    let mut stakers: Vec<Address> = setup.nodes.iter().map(|n| n.staker).collect();
    stakers.sort();
    ensure!(plan.policy.stakers() == stakers, "{:?}", plan.policy.nodes);
    ensure!(plan.periods == plan.last_period - plan.current_period + 1);
    ensure!(plan.total_fee == setup.fee_rate * U256::from(3 * plan.periods));
    for node in &plan.policy.nodes {
        let served = setup
            .nodes
            .iter()
            .find(|n| n.staker == node.staker)
            .unwrap();
        ensure!(node.url == served.url);
    }

    let outcome = setup
        .alice
        .execute_grant(&plan, &setup.delegating, &setup.signer)
        .await?;
    ensure!(outcome.uploaded() == 3, "{:?}", outcome.uploads);
    ensure!(outcome.paid == plan.total_fee);
    let policy = outcome.policy;

    // The policy file goes to Bob through a file.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("policy.json");
    policy.save(&path)?;
    let policy = PolicyFile::load(&path)?;

    // Enrico encrypts 300 KB (five chunks).
    let payload = random_payload(300 * 1000);
    let file = encrypt(&policy, &payload);

    // Bob: the capsule from the header, two verified cfrags, the data key, the payload.
    let bob = setup.bob_client().await?;
    let mut reader = &file[..];
    let header = stream::read_header(&mut reader)?;
    let retrieval = bob
        .retrieve(
            &policy,
            &setup.bob,
            std::slice::from_ref(header.capsule()),
            &RetrieveOptions::default(),
        )
        .await?;
    ensure!(retrieval.cfrags.len() == 1 && retrieval.cfrags[0].len() >= 2);
    ensure!(retrieval.faults.is_empty());
    let answered = retrieval
        .nodes
        .iter()
        .filter(|n| matches!(n.outcome, NodeOutcome::Answered { valid: 1, wrong: 0 }))
        .count();
    ensure!(answered >= 2, "{:?}", retrieval.nodes);
    let key = stream::open_data_key_reencrypted(
        &setup.bob,
        &policy.delegating_key,
        &header,
        retrieval.cfrags[0].clone(),
    )?;
    let mut plaintext = Vec::new();
    stream::decrypt_stream_with_key(
        &key,
        &header,
        &kms_client::TrustedSenders::of_policy(&policy),
        &mut reader,
        &mut plaintext,
    )?;
    ensure!(plaintext == payload, "Bob's plaintext differs");

    // Alice decrypts her own data without the nodes.
    let mut reader = &file[..];
    let header = stream::read_header(&mut reader)?;
    let key = stream::open_data_key_original(&setup.delegating, &header)?;
    let mut plaintext = Vec::new();
    stream::decrypt_stream_with_key(
        &key,
        &header,
        &kms_client::TrustedSenders::of_policy(&policy),
        &mut reader,
        &mut plaintext,
    )?;
    ensure!(plaintext == payload, "Alice's plaintext differs");

    // Auditing: every node answers, with a valid cfrag for each of two capsules.
    let other = encrypt(&policy, b"another file");
    let other_header = stream::read_header(&mut &other[..])?;
    let capsules = [header.capsule().clone(), other_header.capsule().clone()];
    let audit = bob
        .retrieve(
            &policy,
            &setup.bob,
            &capsules,
            &RetrieveOptions {
                audit_all: true,
                ..Default::default()
            },
        )
        .await?;
    ensure!(audit.cfrags.iter().all(|c| c.len() == 3));
    ensure!(audit
        .nodes
        .iter()
        .all(|n| n.outcome == NodeOutcome::Answered { valid: 2, wrong: 0 }));

    // Not Bob: refused before anything is asked.
    let mallory = SecretKey::random();
    let err = bob
        .retrieve(&policy, &mallory, &capsules, &RetrieveOptions::default())
        .await
        .unwrap_err();
    ensure!(
        matches!(err, RetrieveError::WrongReceivingKey { .. }),
        "{err}"
    );

    // The nodes committed to the next period only: the current one is refunded.
    let refund = setup.alice.refund(&policy).await?;
    ensure!(
        refund.amount == setup.fee_rate * U256::from(3u8),
        "refund {}",
        refund.amount
    );
    // Nothing more to refund now: the contract's reason, in words, from the simulation.
    reverted_with(
        "second refund",
        setup.alice.refund(&policy).await,
        "nothing to pay",
    )
}

#[tokio::test]
async fn revoked_policy_is_refused_by_every_node() -> Result<()> {
    let setup = Setup::start(&[Kind::Honest, Kind::Honest, Kind::Honest]).await?;
    let policy = setup.grant(2, 3).await?;
    let file = encrypt(&policy, b"before the revocation");
    let header = stream::read_header(&mut &file[..])?;
    let capsules = [header.capsule().clone()];
    let bob = setup.bob_client().await?;
    bob.retrieve(&policy, &setup.bob, &capsules, &RetrieveOptions::default())
        .await?;

    let revoked = setup.alice.revoke(&policy).await?;
    ensure!(!revoked.amount.is_zero(), "no refund");
    let status = setup.alice.policy_status(&policy).await?;
    ensure!(status.revoked);
    // Refused from the block of the revocation on, once each node has read it (its poll).
    setup.wait_for_heads().await?;

    match bob
        .retrieve(&policy, &setup.bob, &capsules, &RetrieveOptions::default())
        .await
    {
        Err(RetrieveError::NotEnoughCFrags {
            got,
            needed,
            failures,
            faults,
        }) => {
            ensure!(got == 0 && needed == 2);
            ensure!(faults.is_empty());
            ensure!(failures.len() == 3, "{failures:?}");
            for failure in &failures {
                ensure!(
                    failure.reason.contains("HTTP 410") && failure.reason.contains("revoked"),
                    "{failure}"
                );
            }
        }
        other => bail!("expected NotEnoughCFrags, got {other:?}"),
    }

    // Revoking twice: the contract's reason.
    reverted_with(
        "second revocation",
        setup.alice.revoke(&policy).await,
        "already revoked",
    )
}

/// One node's part revoked: the refund is exactly what that node has not earned (the
/// contract's own views before the transaction), it refuses the policy from the revocation's
/// block, and the other two keep serving it.
#[tokio::test]
async fn one_node_revoked_refuses_while_the_others_serve() -> Result<()> {
    let setup = Setup::start(&[Kind::Honest, Kind::Honest, Kind::Honest]).await?;
    let policy = setup.grant(2, 3).await?;
    let file = encrypt(&policy, b"served by two");
    let header = stream::read_header(&mut &file[..])?;
    let capsules = [header.capsule().clone()];
    let revoked_node = policy.nodes[0].staker;

    // Not one of the policy's nodes: refused before anything is sent.
    reverted_with(
        "revoking a stranger",
        setup
            .alice
            .revoke_node(&policy, Address::repeat_byte(7))
            .await,
        "not one of the policy's nodes",
    )?;

    let alice = setup.chain.address(ALICE)?;
    let before = setup.chain.read_provider().get_balance(alice).await?;
    let revoked = setup.alice.revoke_node(&policy, revoked_node).await?;
    let expected = setup
        .unearned(&policy, &[revoked_node], revoked.block)
        .await?;
    ensure!(
        revoked.amount == expected && !expected.is_zero(),
        "refunded {} instead of {expected}",
        revoked.amount
    );
    let gas = setup.gas_paid(revoked.tx_hash).await?;
    let after = setup.chain.read_provider().get_balance(alice).await?;
    ensure!(
        after + gas == before + expected,
        "Alice's balance moved by another amount"
    );

    let head = setup
        .alice
        .wait_for_node_at(&policy.nodes[0], revoked.block, Duration::from_secs(30))
        .await;
    ensure!(
        matches!(head.head, Ok(Some(h)) if h >= revoked.block),
        "{head:?}"
    );
    let bob = setup.bob_client().await?;
    let audit = RetrieveOptions {
        audit_all: true,
        ..RetrieveOptions::default()
    };
    let retrieval = bob.retrieve(&policy, &setup.bob, &capsules, &audit).await?;
    ensure!(retrieval.cfrags[0].len() == 2, "the other two serve");
    for report in &retrieval.nodes {
        match &report.outcome {
            NodeOutcome::Failed(reason) if report.staker == revoked_node => ensure!(
                reason.contains("410") && reason.contains("revoked"),
                "{reason}"
            ),
            NodeOutcome::Answered { valid: 1, wrong: 0 } if report.staker != revoked_node => {}
            other => bail!("{}: {other:?}", report.staker),
        }
    }
    // Twice: the contract's reason.
    reverted_with(
        "second revocation of the node",
        setup.alice.revoke_node(&policy, revoked_node).await,
        "already revoked",
    )
}

/// Alice revokes with no transaction: her signed order reaches the three nodes, and each refuses
/// Bob's next request, with no block mined in between (automine off: nothing can be). A third
/// party then fetches the order from the nodes and carries it out; the owner gets exactly what
/// the nodes had not earned, and pays nothing.
#[tokio::test]
async fn a_signed_order_is_obeyed_at_once_and_settled_by_a_third_party() -> Result<()> {
    let setup = Setup::start(&[Kind::Honest, Kind::Honest, Kind::Honest]).await?;
    let policy = setup.grant(2, 3).await?;
    let file = encrypt(&policy, b"revoked by a signature");
    let header = stream::read_header(&mut &file[..])?;
    let capsules = [header.capsule().clone()];
    let bob = setup.bob_client().await?;
    let audit = RetrieveOptions {
        audit_all: true,
        ..RetrieveOptions::default()
    };
    let served = bob.retrieve(&policy, &setup.bob, &capsules, &audit).await?;
    ensure!(
        served.cfrags[0].len() == 3,
        "all three serve before the order"
    );

    let reader = setup.chain.read_provider();
    let deadline = setup.chain.latest_timestamp().await? + 3600;
    // Only the owner's key signs an order.
    let stranger = PrivateKeySigner::random();
    let err = revocation::sign_order(&policy, &stranger, None, deadline)
        .await
        .unwrap_err();
    ensure!(matches!(err, OrderError::NotOwner { .. }), "{err}");
    let order =
        revocation::sign_order(&policy, &setup.chain.signer(ALICE)?, None, deadline).await?;

    reader.anvil_set_auto_mine(false).await?;
    let block = reader.get_block_number().await?;
    let deliveries = revocation::send_order(setup.alice.node_client(), &policy, &order).await;
    ensure!(deliveries.len() == 3, "{deliveries:?}");
    for delivery in &deliveries {
        ensure!(matches!(delivery.outcome, Ok(true)), "{delivery:?}");
    }
    // The very next request: every node refuses, and says why.
    let refused = bob.retrieve(&policy, &setup.bob, &capsules, &audit).await;
    match refused {
        Err(RetrieveError::NotEnoughCFrags {
            got: 0, failures, ..
        }) => {
            ensure!(failures.len() == 3, "{failures:?}");
            for failure in &failures {
                ensure!(
                    failure.reason.contains("410") && failure.reason.contains("signed order"),
                    "{failure}"
                );
            }
        }
        other => bail!("retrieval after the order: {other:?}"),
    }
    ensure!(
        reader.get_block_number().await? == block,
        "a block was mined while the order took effect"
    );
    reader.anvil_set_auto_mine(true).await?;

    // Anyone (the deployer's account here) settles it, from what the nodes hand out.
    let relay = Client::connect(setup.chain.provider(0)?, setup.d.clone(), quick_http()).await?;
    let orders = relay.fetch_orders(&policy).await;
    ensure!(orders == vec![order], "{orders:?}");
    let alice = setup.chain.address(ALICE)?;
    let relay_account = setup.chain.address(0)?;
    let (alice_before, relay_before) = (
        reader.get_balance(alice).await?,
        reader.get_balance(relay_account).await?,
    );
    let settled = relay.settle_order(&policy, &orders[0]).await?;
    let expected = setup
        .unearned(&policy, &policy.stakers(), settled.block)
        .await?;
    ensure!(
        settled.amount == expected && !expected.is_zero(),
        "refunded {} instead of {expected}",
        settled.amount
    );
    ensure!(
        reader.get_balance(alice).await? == alice_before + expected,
        "the owner's balance moved by another amount"
    );
    ensure!(
        reader.get_balance(relay_account).await? + setup.gas_paid(settled.tx_hash).await?
            == relay_before,
        "the third party got or paid more than its gas"
    );
    // Settled: the nodes follow the revocation and forget the spent order; it cannot pay twice.
    for head in setup
        .alice
        .wait_for_nodes_at(&policy, settled.block, Duration::from_secs(30))
        .await
    {
        ensure!(
            matches!(head.head, Ok(Some(h)) if h >= settled.block),
            "{head:?}"
        );
    }
    ensure!(relay.fetch_orders(&policy).await.is_empty());
    reverted_with(
        "settling the order again",
        relay.settle_order(&policy, &order).await,
        "already revoked",
    )
}

/// Messages in sessions: Bob opens every pending session with one retrieval (one request per
/// node, or per batch of a node's advertised limit), reads the messages; after a revocation he
/// still reads the sessions he opened, and opens no new one.
#[tokio::test]
async fn sessions_open_in_one_retrieval_and_revocation_stops_new_ones() -> Result<()> {
    let setup = Setup::start(&[Kind::Honest, Kind::Honest, Kind::SmallBatches]).await?;
    let policy = setup.grant(2, 3).await?;
    let enrico = SenderKey::random();
    let limits = SessionLimits {
        max_messages: 2,
        ..SessionLimits::default()
    };
    let mut sender = MessageSender::new(policy.delegating_key, enrico.clone(), limits);
    let mut inbox = Inbox::new(TrustedSenders::new([enrico.public_key()]));
    // Five messages: three sessions.
    let mut messages = Vec::new();
    for i in 0..5 {
        let sealed = sender.seal(format!("line {i}").as_bytes())?;
        if let Some(record) = &sealed.session {
            inbox.add_session(record)?;
        }
        messages.push(sealed.message);
    }
    ensure!(inbox.pending().len() == 3);
    let err = inbox.open(&messages[0]).unwrap_err();
    ensure!(matches!(err, MessageError::NotOpen { .. }), "{err}");

    // Every node audited, so that the node taking two capsules per request is asked too: it
    // refuses three, and is asked again in batches of the limit it advertises.
    let bob = setup.bob_client().await?;
    let audit = RetrieveOptions {
        audit_all: true,
        ..Default::default()
    };
    let opened = bob
        .open_sessions(&policy, &setup.bob, &mut inbox, &audit)
        .await?;
    ensure!(
        opened.opened.len() == 3 && opened.failed.is_empty(),
        "{opened:?}"
    );
    ensure!(
        opened
            .nodes
            .iter()
            .all(|n| n.outcome == NodeOutcome::Answered { valid: 3, wrong: 0 }),
        "{:?}",
        opened.nodes
    );
    let small = &setup.nodes[2].url;
    ensure!(bob.node_client().known_capsule_limit(small) == Some(2));
    for (i, message) in messages.iter().enumerate() {
        let read = inbox.open(message)?;
        ensure!(read.plaintext == format!("line {i}").as_bytes());
        ensure!(read.sender == enrico.public_key() && read.skipped == 0);
    }
    // Nothing pending: no request.
    let none = bob
        .open_sessions(&policy, &setup.bob, &mut inbox, &RetrieveOptions::default())
        .await?;
    ensure!(none.opened.is_empty() && none.nodes.is_empty());

    setup.alice.revoke(&policy).await?;
    setup.wait_for_heads().await?;
    // Enrico has not heard of it: the open session goes on, and Bob reads it.
    let late = sender.seal(b"after the revocation, same session")?;
    ensure!(late.session.is_none());
    ensure!(inbox.open(&late.message)?.plaintext == b"after the revocation, same session");
    // A new session (rotated as a chat does on a removal) stays closed to him.
    sender.rotate();
    let new = sender.seal(b"after the rotation")?;
    let id = inbox.add_session(new.session.as_deref().context("a new session")?)?;
    match bob
        .open_sessions(&policy, &setup.bob, &mut inbox, &RetrieveOptions::default())
        .await
    {
        Err(RetrieveError::NotEnoughCFrags {
            got: 0, failures, ..
        }) => {
            ensure!(
                failures.iter().all(|f| f.reason.contains("HTTP 410")),
                "{failures:?}"
            );
        }
        other => bail!("expected NotEnoughCFrags, got {other:?}"),
    }
    ensure!(!inbox.is_open(id));
    let err = inbox.open(&new.message).unwrap_err();
    ensure!(matches!(err, MessageError::NotOpen { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn not_enough_nodes() -> Result<()> {
    let setup =
        Setup::start(&[Kind::Honest, Kind::NoRecord, Kind::Expensive, Kind::DeadUrl]).await?;
    let good = setup.nodes[0].staker;

    match setup.alice.plan_grant(&setup.request(1, 2).await?).await {
        Err(kms_client::GrantError::Sampling(SamplingError::NotEnoughNodes {
            wanted,
            available,
            excluded,
        })) => {
            ensure!(wanted == 2 && available == 1, "{wanted} {available}");
            let reason = |node: &TestNode| {
                excluded
                    .iter()
                    .find(|e| e.staker == node.staker)
                    .map(|e| e.reason.clone())
                    .unwrap_or_default()
            };
            ensure!(reason(&setup.nodes[1]).contains("no node record"));
            ensure!(reason(&setup.nodes[2]).contains("asks at least 10000000000 wei"));
            ensure!(
                reason(&setup.nodes[3]).contains("unreachable"),
                "{excluded:?}"
            );
            ensure!(!excluded.iter().any(|e| e.staker == good));
        }
        other => bail!("expected NotEnoughNodes, got {other:?}"),
    }

    // One share: the expensive and the dead node, if drawn, are left out and the next one
    // drawn, until the good one, whatever the seed. Only the drawn are checked: the plan lists
    // the staker without a record, and of the other two those drawn before the good one.
    let mut listed = std::collections::HashSet::new();
    for seed in 0..8 {
        let mut request = setup.request(1, 1).await?;
        request.seed = seed;
        let plan = setup.alice.plan_grant(&request).await?;
        ensure!(plan.policy.stakers() == vec![good], "seed {seed}");
        ensure!(
            plan.excluded[0].staker == setup.nodes[1].staker,
            "{:?}",
            plan.excluded
        );
        for left_out in &plan.excluded[1..] {
            let expected = if left_out.staker == setup.nodes[2].staker {
                "asks at least 10000000000 wei"
            } else {
                ensure!(left_out.staker == setup.nodes[3].staker, "{left_out:?}");
                "unreachable"
            };
            ensure!(left_out.reason.contains(expected), "{left_out:?}");
            listed.insert(left_out.staker);
        }
    }
    // Over eight seeds, each was drawn before the good one at least once.
    ensure!(listed.len() == 2, "{listed:?}");
    Ok(())
}

#[tokio::test]
async fn a_lying_node_is_caught_reported_and_slashed() -> Result<()> {
    let setup = Setup::start(&[Kind::Liar, Kind::Slow, Kind::Slow]).await?;
    let liar = setup.nodes[0].staker;
    let policy = setup.grant(2, 3).await?;
    let payload = random_payload(70_000);
    let file = encrypt(&policy, &payload);
    let mut reader = &file[..];
    let header = stream::read_header(&mut reader)?;

    // The liar's cfrag fails, the other two suffice. Every node is asked to the end: the liar
    // usually answers first (the others are slow), but on a loaded machine it may not, and a
    // retrieval that stops at the threshold would then never read its answer.
    let bob = setup.bob_client().await?;
    let retrieval = bob
        .retrieve(
            &policy,
            &setup.bob,
            std::slice::from_ref(header.capsule()),
            &RetrieveOptions {
                audit_all: true,
                ..RetrieveOptions::default()
            },
        )
        .await?;
    ensure!(retrieval.cfrags[0].len() == 2);
    let liar_report = retrieval.nodes.iter().find(|n| n.staker == liar).unwrap();
    ensure!(
        liar_report.outcome == NodeOutcome::Answered { valid: 0, wrong: 1 },
        "{:?}",
        liar_report
    );
    let key = stream::open_data_key_reencrypted(
        &setup.bob,
        &policy.delegating_key,
        &header,
        retrieval.cfrags[0].clone(),
    )?;
    let mut plaintext = Vec::new();
    stream::decrypt_stream_with_key(
        &key,
        &header,
        &kms_client::TrustedSenders::of_policy(&policy),
        &mut reader,
        &mut plaintext,
    )?;
    ensure!(plaintext == payload);

    // The fault, through a file, as `kms report FILE` would read it.
    ensure!(retrieval.faults.len() == 1, "{:?}", retrieval.faults);
    let fault = &retrieval.faults[0];
    ensure!(
        fault.staker == liar && fault.expected_verdict == "WrongE",
        "{fault:?}"
    );
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("fault.json");
    fault.save(&path)?;
    let fault = Fault::load(&path)?;

    let read = setup.chain.read_provider();
    let escrow = setup.d.staking_escrow(&read);
    let stake_before = escrow.stakeOf(liar).call().await?;
    // Anyone can report and gets the reward; every dev account has a role, so Alice does.
    let reporter = &setup.alice;
    let reporter_account = setup.chain.address(ALICE)?;
    let outcome = reporter.report(&fault, reporter_account).await?;
    ensure!(outcome.verdict == Verdict::WrongE, "{outcome:?}");
    ensure!(outcome.staker == liar);
    ensure!(!outcome.penalty.is_zero() && !outcome.reward.is_zero());
    let stake_after = escrow.stakeOf(liar).call().await?;
    ensure!(stake_after == stake_before - outcome.penalty);

    // The same evidence again: refused before anything is sent.
    let nonce = read.get_transaction_count(reporter_account).await?;
    match reporter.report(&fault, reporter_account).await {
        Err(ReportError::AlreadyEvaluated(_)) => {}
        other => bail!("second report: {other:?}"),
    }
    ensure!(
        read.get_transaction_count(reporter_account).await? == nonce,
        "a transaction was sent for evidence already evaluated"
    );
    Ok(())
}
