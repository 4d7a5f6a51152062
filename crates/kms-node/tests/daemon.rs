//! The daemon against the real contracts on anvil: duties exactly once across restarts, the
//! follower's durable cursor and reorg handling, and the HTTP API's refusals with real policies.
//! Needs `forge build` artifacts and `npm ci` (for anvil and forge).

#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use alloy::{
    eips::{eip2718::Encodable2718, BlockNumberOrTag},
    network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder},
    primitives::{Address, Bytes, FixedBytes, U256},
    providers::{ext::AnvilApi, DynProvider, Provider},
    rpc::types::TransactionRequest,
    sol_types::SolCall,
};
use anyhow::{ensure, Context, Result};
use kms_contracts::test_utils::accounts::{ALICE, OTHER_STAKER, OTHER_WORKER, STAKER, WORKER};
use kms_contracts::{
    test_utils::{eventually, TestChain},
    StakingEscrow,
};
use kms_crypto::{
    test_utils::PolicyKeys,
    wire::{NodeInfo, ReencryptRequest},
};
use kms_node::test_utils::local_settings;
use kms_node::{
    DutyConfig, DutyRecord, FeeThreshold, Follower, FollowerConfig, Limits, Settings, Step, Store,
};
use umbral_pre::{encrypt, DefaultSerialize, SecretKey};

mod support;

use support::{create_policy, duty, is_done, unix_now, wait_for_head, Client};

const SECONDS_PER_PERIOD: u64 = 600;
/// How long a test waits for the node to do something.
const WAIT: Duration = Duration::from_secs(30);

/// The node's settings; its fees are withdrawn from the first wei (these tests check the
/// withdrawal of 1-gwei policies' fees, far below the default threshold's ten withdrawals' gas).
fn settings(chain: &TestChain, store: &Path, staker: usize, worker: usize) -> Result<Settings> {
    let settings = local_settings(chain, staker, worker, store.to_owned())?;
    Ok(Settings {
        duties: DutyConfig {
            withdraw_fees_threshold: Some(FeeThreshold::Wei(U256::from(1))),
            ..settings.duties.clone()
        },
        ..settings
    })
}

/// A chain with dev account `STAKER` staked (the minimum) and `WORKER` bonded, a reader, their
/// addresses, and a place for the node's store (the directory lives as long as the last item).
type Staked = (
    TestChain,
    DynProvider,
    Address,
    Address,
    PathBuf,
    tempfile::TempDir,
);

async fn staked() -> Result<Staked> {
    let chain = TestChain::start(SECONDS_PER_PERIOD).await?;
    chain.stake_minimum(STAKER, WORKER).await?;
    let (staker, worker) = (chain.address(STAKER)?, chain.address(WORKER)?);
    let dir = tempfile::tempdir()?;
    let store_path = dir.path().join("node.redb");
    let reader = chain.read_provider();
    Ok((chain, reader, staker, worker, store_path, dir))
}

#[tokio::test]
async fn duties_run_once_per_period_across_restarts() -> Result<()> {
    let (chain, reader, staker, worker, store_path, _dir) = staked().await?;

    // First run: publishes the node record and commits to the next period. The URL stays the
    // same across the runs (the port would not), so the record is published once.
    let fixed_url = |mut s: Settings| {
        s.public_url = Some("http://node.example:9151".into());
        s
    };
    let node = kms_node::start(fixed_url(settings(&chain, &store_path, STAKER, WORKER)?)).await?;
    let period = chain.current_period().await?;
    let first_commit = format!("commit/{}", period + 1);
    let store = node.store().clone();
    eventually("the first commitment", WAIT, || async {
        Ok(is_done(&store, &first_commit))
    })
    .await?;
    let record = d_record(&chain, staker).await?;
    ensure!(
        record.url == node.public_url(),
        "node record not published: {record:?}"
    );
    // The status shows the commitment and the worker's balance as the duties read them (read
    // again right after the commitment settled), with no warning.
    let client = Client::new(format!("http://{}", node.local_addr()));
    eventually("the status to show the commitment", WAIT, || async {
        let (code, status) = client.get("/v1/status").await?;
        ensure!(code == 200, "{code} {status}");
        Ok(status["standing"]["committedNext"] == true)
    })
    .await?;
    let (_, status) = client.get("/v1/status").await?;
    let standing = &status["standing"];
    let read_at = standing["block"].as_u64().context("no standing block")?;
    let balance = reader.get_balance(worker).block_id(read_at.into()).await?;
    ensure!(
        standing["lastCommittedPeriod"] == period + 1
            && standing["nextCommitmentPeriod"] == period + 1
            && standing["nextCommitmentDueBy"] == (period + 1) * SECONDS_PER_PERIOD
            && standing["lowBalance"] == false
            && standing["workerBalanceWei"] == balance.to_string()
            && standing["pendingDuties"] == 0,
        "{status}"
    );
    ensure!(
        address(&status["staker"]) == Some(staker)
            && address(&status["worker"]) == Some(worker)
            && status["chainId"] == 31337
            && status["version"].as_str().is_some_and(|v| !v.is_empty())
            && status["lagBlocks"].is_u64()
            && status["warnings"] == serde_json::json!([]),
        "{status}"
    );
    // Browser apps (the TypeScript SDK) call the API from other origins: the running daemon
    // answers their preflights (any origin by default) and keeps /metrics to itself.
    let origin = "http://app.example:8080";
    let preflight = client
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!(
                "{}/v1/policies/0x{}/reencrypt",
                client.base,
                "00".repeat(16)
            ),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await?;
    let allowed = |r: &reqwest::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    };
    ensure!(
        preflight.status() == 200 && allowed(&preflight).as_deref() == Some(origin),
        "preflight: {preflight:?}"
    );
    let metrics = client
        .http
        .get(format!("{}/metrics", client.base))
        .header("origin", origin)
        .send()
        .await?;
    ensure!(allowed(&metrics).is_none(), "metrics shared: {metrics:?}");

    // A policy naming the node reaches the store through the follower.
    let policy_id =
        create_policy(&chain, [0x42; 16], Address::repeat_byte(9), vec![staker], 3).await?;
    eventually("the follower to record the policy", WAIT, || async {
        Ok(store.policy(policy_id)?.is_some())
    })
    .await?;
    let first_tx = duty(&store, &first_commit);
    let cursor = store.cursor()?.context("no cursor")?;
    node.shutdown().await;
    drop(store);

    // A period later, the second run commits once more, and withdraws the fees the policy
    // accrued with that commitment; the first commitment is not repeated.
    chain.travel(SECONDS_PER_PERIOD).await?;
    let node = kms_node::start(fixed_url(settings(&chain, &store_path, STAKER, WORKER)?)).await?;
    let store = node.store().clone();
    let second_commit = format!("commit/{}", period + 2);
    let fees = format!("fees/{}", period + 1);
    eventually(
        "the second commitment and the fee withdrawal",
        WAIT,
        || async { Ok(is_done(&store, &second_commit) && is_done(&store, &fees)) },
    )
    .await?;
    ensure!(store.cursor()?.context("no cursor")?.block >= cursor.block);
    ensure!(
        duty(&store, &first_commit) == first_tx,
        "first commitment record changed"
    );
    // Give the loops a few more ticks to (wrongly) do anything twice.
    tokio::time::sleep(Duration::from_millis(800)).await;
    node.shutdown().await;

    ensure!(
        chain.commitments(staker).await?.len() == 2,
        "one commitment per period"
    );
    // Every transaction the worker ever sent, but its acceptance of the bond (sent by the test
    // setup, before the node ran), is one recorded duty: the record, the two commitments, and one
    // fee withdrawal per period that had fees (one or two, depending on whether the first run
    // ticked after the policy credited the commitment already made).
    let sent = store
        .duties()?
        .into_iter()
        .filter(|(_, r)| matches!(r, DutyRecord::Done { tx_hash, .. } if !tx_hash.is_zero()))
        .count();
    let nonce = reader.get_transaction_count(worker).await?;
    ensure!(
        sent as u64 + 1 == nonce && (4..=5).contains(&sent),
        "sent {sent} duties, worker nonce {nonce}: {:?}",
        store.duties()?.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    let fees_left = chain
        .deployment()
        .policy_manager(&reader)
        .fees(staker)
        .call()
        .await?;
    ensure!(fees_left.is_zero(), "fees not withdrawn: {fees_left}");
    Ok(())
}

/// With the shipped threshold, fees worth less than ten withdrawals' gas are left to grow: the
/// period's withdrawal is recorded skipped, with the fees, the threshold and the gas price.
#[tokio::test]
async fn fees_below_the_default_threshold_are_skipped_saying_why() -> Result<()> {
    let (chain, reader, staker, worker, store_path, _dir) = staked().await?;
    let settings = local_settings(&chain, STAKER, WORKER, store_path)?;
    ensure!(settings.duties.withdraw_fees_threshold == Some(FeeThreshold::DEFAULT));
    let node = kms_node::start(settings).await?;
    let store = node.store().clone();
    let period = chain.current_period().await?;
    let commit = format!("commit/{}", period + 1);
    eventually("the commitment", WAIT, || async {
        Ok(is_done(&store, &commit))
    })
    .await?;
    // Credits the committed next period: 1 gwei of fees, worth far less than a withdrawal's gas.
    create_policy(&chain, [0x17; 16], Address::repeat_byte(9), vec![staker], 3).await?;
    let key = format!("fees/{period}");
    eventually("the withdrawal skipped", WAIT, || async {
        Ok(matches!(
            duty(&store, &key),
            Some(DutyRecord::Skipped { .. })
        ))
    })
    .await?;
    node.shutdown().await;
    let Some(DutyRecord::Skipped { reason }) = duty(&store, &key) else {
        anyhow::bail!("unexpected record {:?}", duty(&store, &key));
    };
    ensure!(
        reason.starts_with("fees of 1000000000 wei below the threshold of ")
            && reason.contains(" wei = 10 x 40000 gas (a withdrawal) x ")
            && reason.ends_with(" wei/gas (the gas price now)"),
        "{reason}"
    );
    let fees = chain
        .deployment()
        .policy_manager(&reader)
        .fees(staker)
        .call()
        .await?;
    ensure!(fees == U256::from(1_000_000_000u64), "fees {fees}");
    // The node record and the commitment: no withdrawal was sent.
    ensure!(reader.get_transaction_count(worker).await? == 3);
    Ok(())
}

fn address(value: &serde_json::Value) -> Option<Address> {
    value.as_str()?.parse().ok()
}

async fn d_record(chain: &TestChain, staker: Address) -> Result<StakingEscrow::NodeView> {
    let reader = chain.read_provider();
    Ok(chain
        .deployment()
        .staking_escrow(&reader)
        .nodeRecordOf(staker)
        .call()
        .await?)
}

/// A crash between recording a duty's transaction and broadcasting it: the next start sends
/// that very transaction, and signs no other.
#[tokio::test]
async fn a_recorded_unsent_transaction_is_broadcast_not_repeated() -> Result<()> {
    let (chain, reader, staker, worker, store_path, _dir) = staked().await?;
    let d = chain.deployment().clone();

    let key = format!("commit/{}", chain.current_period().await? + 1);
    let input = StakingEscrow::commitToNextPeriodCall {}.abi_encode();
    let (tx_hash, nonce) = record_unsent(
        &chain,
        &store_path,
        &key,
        d.staking_escrow,
        input,
        Some(300_000),
    )
    .await?;

    // The start publishes the node record: it must not take the recorded transaction's nonce.
    let store = run_until_done(&chain, &store_path, &key).await?;
    match duty(&store, &key) {
        Some(DutyRecord::Done { tx_hash: done, .. }) => {
            ensure!(done == tx_hash, "a different transaction was sent")
        }
        other => anyhow::bail!("unexpected record {other:?}"),
    }
    ensure!(reader.get_transaction_receipt(tx_hash).await?.is_some());
    ensure!(chain.commitments(staker).await?.len() == 1);
    // The recorded commitment and the node record: two transactions, nothing signed twice.
    ensure!(reader.get_transaction_count(worker).await? == nonce + 2);
    Ok(())
}

/// Runs the node on `store_path` until duty `key` is done, then stops it; returns its store.
async fn run_until_done(chain: &TestChain, store_path: &Path, key: &str) -> Result<Store> {
    let node = kms_node::start(settings(chain, store_path, STAKER, WORKER)?).await?;
    let store = node.store().clone();
    eventually(&format!("duty {key}"), WAIT, || async {
        Ok(is_done(&store, key))
    })
    .await?;
    node.shutdown().await;
    Ok(store)
}

/// Signs (does not send) the worker's call of `input` on `to` at its next nonce, with the gas a
/// node gives it now (the estimate plus a fifth), and records it under `key` as a crash between
/// the record and the broadcast would leave it. Returns the hash and the nonce.
async fn record_unsent(
    chain: &TestChain,
    store_path: &Path,
    key: &str,
    to: Address,
    input: Vec<u8>,
    gas_limit: Option<u64>,
) -> Result<(alloy::primitives::B256, u64)> {
    let reader = chain.read_provider();
    let worker = chain.address(WORKER)?;
    let nonce = reader.get_transaction_count(worker).await?;
    let fees = reader.estimate_eip1559_fees().await?;
    let request = TransactionRequest::default()
        .with_from(worker)
        .with_to(to)
        .with_input(input);
    let gas_limit = match gas_limit {
        Some(limit) => limit,
        None => reader.estimate_gas(request.clone()).await? * 12 / 10,
    };
    let envelope = request
        .with_nonce(nonce)
        .with_chain_id(chain.deployment().chain_id)
        .with_gas_limit(gas_limit)
        .with_max_fee_per_gas(fees.max_fee_per_gas)
        .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
        .build(&EthereumWallet::from(chain.signer(WORKER)?))
        .await?;
    let tx_hash = *envelope.tx_hash();
    Store::open(store_path)?.set_duty(
        key,
        &DutyRecord::Sent {
            tx_hash,
            raw_tx: Bytes::from(envelope.encoded_2718()),
            nonce,
        },
    )?;
    Ok((tx_hash, nonce))
}

/// The node was down for two periods after recording (not sending) a commitment: sent as it
/// was, it would now settle the ended period's reward too and run out of the gas it was given,
/// reverting on chain. It is signed again at its own nonce with the gas it needs now.
#[tokio::test]
async fn a_recorded_unsent_transaction_that_no_longer_fits_is_signed_again_at_its_nonce(
) -> Result<()> {
    let (chain, reader, staker, worker, store_path, _dir) = staked().await?;
    let escrow = chain.deployment().staking_escrow;

    // A commitment made by hand, so that one ends while the node is down.
    chain.commit_as(WORKER).await?;
    chain.travel(SECONDS_PER_PERIOD).await?;
    let key = format!("commit/{}", chain.current_period().await? + 1);
    let input = StakingEscrow::commitToNextPeriodCall {}.abi_encode();
    let (recorded, nonce) =
        record_unsent(&chain, &store_path, &key, escrow, input.clone(), None).await?;
    let recorded_limit = reader
        .get_transaction_by_hash(recorded)
        .await?
        .map(|tx| alloy::consensus::Transaction::gas_limit(&tx));
    ensure!(
        recorded_limit.is_none(),
        "the recorded transaction was sent"
    );
    let envelope_limit = {
        let store = Store::open(&store_path)?;
        match store.duty(&key)? {
            Some(DutyRecord::Sent { raw_tx, .. }) => {
                use alloy::eips::eip2718::Decodable2718;
                let tx = alloy::consensus::TxEnvelope::decode_2718(&mut raw_tx.as_ref())?;
                alloy::consensus::Transaction::gas_limit(&tx)
            }
            other => anyhow::bail!("unexpected record {other:?}"),
        }
    };
    chain.travel(SECONDS_PER_PERIOD).await?;
    let needed = reader
        .estimate_gas(
            TransactionRequest::default()
                .with_from(worker)
                .with_to(escrow)
                .with_input(input),
        )
        .await?;
    ensure!(
        needed > envelope_limit,
        "the setup is void: the recorded commitment ({envelope_limit} gas) still fits ({needed})"
    );

    let store = run_until_done(&chain, &store_path, &key).await?;
    let Some(DutyRecord::Done { tx_hash, .. }) = duty(&store, &key) else {
        anyhow::bail!("unexpected record {:?}", duty(&store, &key));
    };
    ensure!(
        tx_hash != recorded,
        "the recorded transaction went out as it was"
    );
    let sent = reader
        .get_transaction_by_hash(tx_hash)
        .await?
        .context("the new transaction is not on chain")?;
    ensure!(
        alloy::consensus::Transaction::nonce(&sent) == nonce,
        "signed again at another nonce"
    );
    ensure!(reader.get_transaction_receipt(recorded).await?.is_none());
    let failed: Vec<_> = store
        .duties()?
        .into_iter()
        .filter(|(_, r)| matches!(r, DutyRecord::Failed { .. }))
        .collect();
    ensure!(failed.is_empty(), "failed duties: {failed:?}");
    // The hand-made commitment and the revived one.
    ensure!(chain.commitments(staker).await?.len() == 2);
    Ok(())
}

/// A recorded, never-sent transaction that would now revert is not sent: the duty is skipped
/// and its nonce goes to the next transaction.
#[tokio::test]
async fn a_recorded_unsent_transaction_that_would_now_revert_is_dropped() -> Result<()> {
    let (chain, reader, staker, worker, store_path, _dir) = staked().await?;
    // Fees the node has not earned: the withdrawal reverts (a gas limit given by hand, since
    // there is nothing to estimate).
    let key = format!("fees/{}", chain.current_period().await?);
    let input = kms_contracts::PolicyManager::withdrawFeesCall { node: staker }.abi_encode();
    let (recorded, nonce) = record_unsent(
        &chain,
        &store_path,
        &key,
        chain.deployment().policy_manager,
        input,
        Some(100_000),
    )
    .await?;

    let commit = format!("commit/{}", chain.current_period().await? + 1);
    let store = run_until_done(&chain, &store_path, &commit).await?;
    match duty(&store, &key) {
        Some(DutyRecord::Skipped { reason }) => ensure!(
            reason.contains("would now revert") && reason.contains("nothing to pay"),
            "skipped for another reason: {reason}"
        ),
        other => anyhow::bail!("unexpected record {other:?}"),
    }
    ensure!(reader.get_transaction_receipt(recorded).await?.is_none());
    // The dropped transaction's nonce went to the node's own transactions.
    let Some(DutyRecord::Done { tx_hash, .. }) = duty(&store, &commit) else {
        anyhow::bail!("commitment not done");
    };
    let sent = reader
        .get_transaction_by_hash(tx_hash)
        .await?
        .context("no commitment")?;
    ensure!(alloy::consensus::Transaction::nonce(&sent) >= nonce);
    ensure!(reader.get_transaction_count(worker).await? > nonce);
    Ok(())
}

#[tokio::test]
async fn follower_resumes_from_its_cursor_and_rewinds_after_a_deep_reorg() -> Result<()> {
    let chain = TestChain::start(SECONDS_PER_PERIOD).await?;
    chain.stake_minimum(STAKER, WORKER).await?;
    let reader = chain.read_provider();
    let d = chain.deployment().clone();
    let staker = chain.address(STAKER)?;
    // The worker commits so that the node can take policies.
    chain.commit_as(WORKER).await?;
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("node.redb"))?;
    let follower = |confirmations| {
        Follower::new(
            reader.clone(),
            store.clone(),
            FollowerConfig {
                staker,
                policy_manager: d.policy_manager,
                start_block: d.start_block,
                confirmations,
                max_range: 5,
            },
        )
    };

    // From scratch, in ranges of at most 5 blocks, up to the head.
    let first = follower(0).step().await?;
    ensure!(
        matches!(first, Step::Advanced { from, to, .. } if from == d.start_block && to == d.start_block + 4),
        "{first:?}"
    );
    while !matches!(follower(0).step().await?, Step::Idle { .. }) {}
    let cursor = store.cursor()?.context("no cursor")?;
    // A new follower on the same store resumes after the cursor.
    create_policy(&chain, [1; 16], Address::repeat_byte(9), vec![staker], 2).await?;
    let resumed = follower(0).step().await?;
    ensure!(
        matches!(resumed, Step::Advanced { from, events: 1, .. } if from == cursor.block + 1),
        "{resumed:?}"
    );

    // Confirmation depth: a policy 1 block deep is not applied at depth 2.
    let snapshot = reader.anvil_snapshot().await?;
    let shallow = create_policy(&chain, [2; 16], Address::repeat_byte(9), vec![staker], 2).await?;
    ensure!(matches!(follower(2).step().await?, Step::Idle { .. }));
    ensure!(store.policy(shallow)?.is_none());
    // Applied at depth 0, then the block is reorged away (revert + other blocks).
    follower(0).step().await?;
    ensure!(store.policy(shallow)?.is_some());
    ensure!(reader.anvil_revert(snapshot).await?, "evm_revert refused");
    chain.mine(3).await?;
    let step = follower(0).step().await?;
    ensure!(matches!(step, Step::Rewound { .. }), "{step:?}");
    while !matches!(follower(0).step().await?, Step::Idle { .. }) {}
    let cursor = store.cursor()?.context("no cursor")?;
    let canonical = reader
        .get_block_by_number(BlockNumberOrTag::Number(cursor.block))
        .await?
        .context("cursor block")?;
    ensure!(
        canonical.header.hash == cursor.hash,
        "cursor off the canonical chain"
    );
    Ok(())
}

#[tokio::test]
async fn api_on_chain_refusals_and_revocation_within_a_block() -> Result<()> {
    let chain = TestChain::start(SECONDS_PER_PERIOD).await?;
    chain.stake_minimum(STAKER, WORKER).await?;
    chain.stake_minimum(OTHER_STAKER, OTHER_WORKER).await?;
    let d = chain.deployment().clone();
    let (staker, other) = (chain.address(STAKER)?, chain.address(OTHER_STAKER)?);
    chain.commit_as(OTHER_WORKER).await?;
    let dir = tempfile::tempdir()?;
    let node = kms_node::start(settings(
        &chain,
        &dir.path().join("node.redb"),
        STAKER,
        WORKER,
    )?)
    .await?;
    let store = node.store().clone();
    let period = chain.current_period().await?;
    eventually("the commitment", WAIT, || async {
        Ok(is_done(&store, &format!("commit/{}", period + 1)))
    })
    .await
    .with_context(|| format!("{:?}", store.duties()))?;
    let client = Client::new(format!("http://{}", node.local_addr()));
    let info: NodeInfo = client
        .http
        .get(format!("{}/v1/node", client.base))
        .send()
        .await?
        .json()
        .await?;
    let node_pk = kms_node::wire::decode_public_key("umbralPublicKey", &info.umbral_public_key)?;

    let keys = PolicyKeys::random();
    let kfrag = keys.kfrags(1, 1).remove(0);
    let upload_body = |policy_id: [u8; 16]| -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(
            &keys.seal(&kfrag, &node_pk, staker, policy_id)?,
        )?)
    };
    let signer_address = keys.signer_address();
    let path =
        |id: [u8; 16], what: &str| format!("/v1/policies/0x{}/{what}", alloy::hex::encode(id));

    // A policy that names only the other node: refused.
    let foreign = create_policy(&chain, [0xf0; 16], signer_address, vec![other], 2).await?;
    let (status, body) = client
        .post(&path(foreign, "kfrag"), upload_body(foreign)?)
        .await?;
    ensure!(status == 403, "{status} {body}");

    // The node's own policy: accepted, then served to Bob.
    let mut nodes = vec![staker, other];
    nodes.sort();
    let id = create_policy(&chain, [0x0a; 16], signer_address, nodes, 2).await?;
    let (status, body) = client.post(&path(id, "kfrag"), upload_body(id)?).await?;
    ensure!(status == 201, "{status} {body}");
    // Served once the node has read the creation's block (its poll interval).
    wait_for_head(&client, chain.head().await?).await?;
    let (capsule, _) = encrypt(&keys.delegating.public_key(), b"hello").unwrap();
    let capsules = vec![capsule.to_bytes()?.into_vec()];
    let request = |sk: &SecretKey| {
        serde_json::to_vec(&ReencryptRequest::sign(
            sk,
            id,
            staker,
            unix_now(),
            &capsules,
        ))
        .unwrap()
    };
    let (status, body) = client
        .post(&path(id, "reencrypt"), request(&keys.bob))
        .await?;
    ensure!(status == 200, "{status} {body}");
    // Another requester, malformed and oversized bodies.
    let (status, body) = client
        .post(&path(id, "reencrypt"), request(&SecretKey::random()))
        .await?;
    ensure!(status == 401, "{status} {body}");
    let (status, body) = client
        .post(&path(id, "reencrypt"), b"{\"capsules\": 7}".to_vec())
        .await?;
    ensure!(
        status == 400 && body["error"].is_string(),
        "{status} {body}"
    );
    let (status, body) = client
        .post(
            &path(id, "reencrypt"),
            vec![b' '; Limits::default().max_body_bytes + 1],
        )
        .await?;
    ensure!(status == 413, "{status} {body}");

    // Alice revokes: the very next request is refused, and the follower deletes the kfrag.
    let as_alice = chain.provider(ALICE)?;
    let mut nodes = vec![staker, other];
    nodes.sort();
    let receipt = d
        .policy_manager(&as_alice)
        .revokePolicy(FixedBytes(id), nodes)
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status());
    // Refused from the revocation's block on, once the node has read it (its poll interval):
    // 410, whether the follower has already applied it (depth 0 here) or not.
    let block = receipt.block_number.context("no block number")?;
    wait_for_head(&client, block).await?;
    let (status, body) = client
        .post(&path(id, "reencrypt"), request(&keys.bob))
        .await?;
    ensure!(
        status == 410
            && body["error"]
                .as_str()
                .is_some_and(|e| e.contains("revoked")),
        "{status} {body}"
    );
    eventually("the kfrag's deletion", WAIT, || async {
        Ok(store.get_kfrag(id)?.is_none())
    })
    .await?;
    node.shutdown().await;
    Ok(())
}
