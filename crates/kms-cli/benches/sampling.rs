//! `kms policy grant`'s node sampling among many stakers (goal: 5 nodes among 10,000 stakers in
//! at most 2 s on anvil).
//!
//! Setup (timed apart): anvil with the contracts, then `--stakers` stakers (default 10,000), each
//! with what sampling needs: tokens deposited and locked for the minimum lock, itself as its
//! worker, a node record (a URL and its own Umbral key) and a commitment to the next period.
//! Every tenth staker also asks 10 gwei per period, ten times the offered rate, so the draw
//! meets stakers it must reject. The transactions are sent without a signature (anvil's
//! impersonation: nothing to sign), with explicit nonces and gas limits, in JSON-RPC batches of
//! 250 with automining off, each batch then mined into a block of its own (the deployer's
//! transfers first, then each staker's own transactions in nonce order). Stakes are 1 to 8
//! times the minimum, so at most about 14,000 stakers fit in the deployer's initial supply.
//!
//! The nodes: one in-process HTTP server answers `GET /n/<i>/v1/node` for every staker `i`
//! (the URL in its node record is `http://127.0.0.1:PORT/n/<i>`) with the identity its record
//! says (staker, worker, chain, Umbral key), so a probe costs what a real node's answer costs on
//! localhost without running 10,000 daemons.
//!
//! Measured: `Client::plan_grant` for a 3-of-5 policy, which is everything `kms policy grant`
//! does before its confirmation and the first transaction (the candidates read at one block, the
//! stake-weighted draw with the fee checks, and the probes of the drawn nodes), each iteration
//! with a fresh provider and client (a fresh process's cold connections) and its own seed; apart,
//! `sampling::candidates` alone and `network::read_stakers` (what `kms network status` and
//! a node's network view read first).
//!
//! `cargo bench -p kms-cli --bench sampling -- [--stakers N] [--iterations N] [--out PATH]`;
//! `script/bench` runs it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{
    network::TransactionBuilder,
    primitives::{keccak256, Address, Bytes, B256, U256},
    providers::{ext::AnvilApi, Provider},
    rpc::{client::RpcClient, types::TransactionRequest},
    sol_types::SolCall,
};
use anyhow::{ensure, Context, Result};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::get,
    Json, Router,
};
use kms_client::{
    network::read_stakers,
    sampling::{candidates, PAGE},
    Client, GrantRequest, HttpConfig,
};
use kms_contracts::{
    test_utils::{accounts, ChainOptions, TestChain},
    KMSToken, PolicyManager, StakingEscrow,
};
use kms_crypto::{keys::MasterSecret, wire::NodeInfo};
use umbral_pre::SecretKey;

/// A day, as in production: the setup never straddles a period's end.
const PERIOD: u64 = 86_400;

/// Transactions per block. Anvil's time per transaction grows with the pool's and the block's
/// size, and its time per block with the state's: 250 did best of 100 to 1,000.
const BLOCK: usize = 250;

/// Other requests per JSON-RPC batch.
const BATCH: usize = 1_000;

/// The fee rate offered (anvil's deployment default minimum: 1 gwei).
const FEE_RATE: u64 = 1_000_000_000;

/// What every tenth staker asks.
const EXPENSIVE: u64 = 10 * FEE_RATE;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn summary(mut times: Vec<Duration>) -> serde_json::Value {
    times.sort();
    serde_json::json!({
        "runs": times.len(),
        "p50Ms": percentile_ms(&times, 0.5),
        "minMs": percentile_ms(&times, 0.0),
        "maxMs": percentile_ms(&times, 1.0),
    })
}

/// Staker `i`'s address: no dev account, no precompile.
fn staker(i: usize) -> Address {
    let mut preimage = b"kms-bench-staker".to_vec();
    preimage.extend_from_slice(&(i as u64).to_be_bytes());
    Address::from_word(keccak256(preimage))
}

fn tx(from: Address, to: Address, nonce: u64, gas: u64, input: Vec<u8>) -> TransactionRequest {
    TransactionRequest::default()
        .with_from(from)
        .with_to(to)
        .with_nonce(nonce)
        .with_gas_limit(gas)
        .with_input(Bytes::from(input))
}

/// Sends `txs` (`eth_sendTransaction`, impersonated) in JSON-RPC batches of [`BLOCK`], mining
/// each batch into a block of its own and checking that every transaction succeeded.
async fn send_and_mine(
    chain: &TestChain,
    rpc: &RpcClient,
    txs: &[TransactionRequest],
) -> Result<()> {
    let reader = chain.read_provider();
    for chunk in txs.chunks(BLOCK) {
        let mut batch = rpc.new_batch();
        let mut waiters = Vec::with_capacity(chunk.len());
        for tx in chunk {
            waiters.push(batch.add_call::<_, B256>("eth_sendTransaction", &(tx,))?);
        }
        batch.send().await?;
        for waiter in waiters {
            waiter.await?;
        }
        reader.evm_mine(None).await?;
        let block = reader
            .get_block_by_number(Default::default())
            .await?
            .context("no block")?;
        let mined = block.transactions.len();
        ensure!(
            mined == chunk.len(),
            "{mined} transactions mined, {} sent",
            chunk.len()
        );
        let receipts = reader
            .get_block_receipts(block.header.number.into())
            .await?
            .context("no receipts")?;
        if let Some(failed) = receipts.iter().find(|r| !r.status()) {
            anyhow::bail!("transaction {} reverted", failed.transaction_hash);
        }
    }
    Ok(())
}

/// Runs `calls` (JSON-RPC method and parameters) in batches.
async fn call_all(rpc: &RpcClient, calls: &[(&'static str, serde_json::Value)]) -> Result<()> {
    for chunk in calls.chunks(BATCH) {
        let mut batch = rpc.new_batch();
        let mut waiters = Vec::with_capacity(chunk.len());
        for (method, params) in chunk {
            waiters.push(batch.add_call::<_, serde_json::Value>(*method, params)?);
        }
        batch.send().await?;
        for waiter in waiters {
            waiter.await?;
        }
    }
    Ok(())
}

/// The stakers on chain, ready to be sampled. Returns each one's node identity.
async fn setup(chain: &TestChain, count: usize, port: u16) -> Result<Vec<NodeInfo>> {
    let d = chain.deployment().clone();
    let reader = chain.read_provider();
    let rpc = RpcClient::new_http(chain.endpoint_url());
    // A fresh period: the setup never crosses a period's end.
    let now = chain.latest_timestamp().await?;
    chain.travel(PERIOD - now % PERIOD + 1).await?;

    let keys: Vec<SecretKey> = (0..count).map(|_| SecretKey::random()).collect();
    let nodes: Vec<NodeInfo> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| NodeInfo {
            staker: staker(i),
            worker: staker(i),
            umbral_public_key: kms_crypto::wire::encode_public_key(&key.public_key()),
            chain_id: d.chain_id,
            version: "bench".into(),
            max_capsules_per_request: 64,
        })
        .collect();

    reader.anvil_set_logging(false).await?;
    reader.anvil_auto_impersonate_account(true).await?;
    // Room for a batch's gas limits; the base fee falls meanwhile (blocks far below target),
    // so a little ETH pays every staker's gas.
    reader.anvil_set_block_gas_limit(u64::MAX / 2).await?;
    reader.anvil_set_auto_mine(false).await?;

    // Gas money, and the tokens from the deployer.
    let balances: Vec<(&'static str, serde_json::Value)> = (0..count)
        .map(|i| {
            (
                "anvil_setBalance",
                serde_json::json!([staker(i), "0xde0b6b3a7640000"]),
            )
        })
        .collect();
    call_all(&rpc, &balances).await?;
    let deployer = chain.address(accounts::DEPLOYER)?;
    let mut nonce = reader.get_transaction_count(deployer).await?;
    let stake = |i: usize| d.min_stake * U256::from(1 + i % 8);
    let mut transfers = Vec::with_capacity(count);
    for i in 0..count {
        let call = KMSToken::transferCall {
            to: staker(i),
            value: stake(i),
        };
        transfers.push(tx(deployer, d.token, nonce, 100_000, call.abi_encode()));
        nonce += 1;
    }
    send_and_mine(chain, &rpc, &transfers).await?;

    // Each staker: approve, deposit, bond itself, publish its record, commit; every tenth also
    // raises its minimum fee rate.
    let lock = U256::from(d.min_lock_periods);
    let mut own = Vec::with_capacity(count * 6);
    for (i, key) in keys.iter().enumerate() {
        let from = staker(i);
        let mut calls: Vec<(Address, u64, Vec<u8>)> = vec![
            (
                d.token,
                100_000,
                KMSToken::approveCall {
                    spender: d.staking_escrow,
                    value: stake(i),
                }
                .abi_encode(),
            ),
            (
                d.staking_escrow,
                300_000,
                StakingEscrow::depositCall {
                    amount: stake(i),
                    periods: lock,
                }
                .abi_encode(),
            ),
            (
                d.staking_escrow,
                300_000,
                StakingEscrow::bondWorkerCall { worker: from }.abi_encode(),
            ),
            (
                d.staking_escrow,
                300_000,
                StakingEscrow::publishNodeRecordCall {
                    url: format!("http://127.0.0.1:{port}/n/{i}"),
                    umbralPublicKey: Bytes::from(key.public_key().to_compressed_bytes().to_vec()),
                }
                .abi_encode(),
            ),
            (
                d.staking_escrow,
                500_000,
                StakingEscrow::commitToNextPeriodCall {}.abi_encode(),
            ),
        ];
        if i % 10 == 9 {
            calls.push((
                d.policy_manager,
                100_000,
                PolicyManager::setMinFeeRateCall {
                    rate: U256::from(EXPENSIVE),
                }
                .abi_encode(),
            ));
        }
        for (nonce, (to, gas, input)) in calls.into_iter().enumerate() {
            own.push(tx(from, to, nonce as u64, gas, input));
        }
    }
    send_and_mine(chain, &rpc, &own).await?;

    // Back to a real chain's 30 million gas a block.
    reader.anvil_set_block_gas_limit(30_000_000).await?;
    reader.anvil_set_auto_mine(true).await?;
    reader.anvil_auto_impersonate_account(false).await?;
    // An empty latest block, as the sampling reads the latest block's header.
    chain.mine(1).await?;
    Ok(nodes)
}

async fn node_info(
    State(nodes): State<Arc<Vec<NodeInfo>>>,
    Path(i): Path<usize>,
) -> Result<Json<NodeInfo>, StatusCode> {
    nodes.get(i).cloned().map(Json).ok_or(StatusCode::NOT_FOUND)
}

#[tokio::main]
async fn main() -> Result<()> {
    let stakers: usize = arg("--stakers").map_or(Ok(10_000), |s| s.parse())?;
    let iterations: usize = arg("--iterations").map_or(Ok(20), |s| s.parse())?;
    let out = arg("--out").unwrap_or_else(|| "bench-results/sampling.json".into());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let chain = TestChain::start_on(ChainOptions {
        seconds_per_period: PERIOD,
        ..ChainOptions::default()
    })
    .await?;
    let d = chain.deployment().clone();

    eprintln!("setting up {stakers} stakers");
    let started = Instant::now();
    let nodes = Arc::new(setup(&chain, stakers, port).await?);
    let setup_time = started.elapsed();
    eprintln!("setup: {:.1} s", setup_time.as_secs_f64());
    let app = Router::new()
        .route("/n/{i}/v1/node", get(node_info))
        .with_state(nodes);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let now = chain.latest_timestamp().await?;
    let end = (now / PERIOD + 7) * PERIOD;
    let fee_rate = U256::from(FEE_RATE);
    let (alice, bob) = (MasterSecret::random(), MasterSecret::random());
    let owner = chain.address(accounts::ALICE)?;
    let request = |seed: u64| GrantRequest {
        label: "bench".into(),
        owner,
        creator: owner,
        delegating_key: alice.delegating_key("bench").public_key(),
        verifying_key: alice.signing_key().public_key(),
        receiving_key: bob.receiving_key().public_key(),
        senders: Vec::new(),
        threshold: 3,
        shares: 5,
        end_timestamp: end,
        fee_rate,
        seed,
        salt: None,
    };

    // The candidates alone: every active staker with a node record.
    let mut candidate_times = Vec::with_capacity(iterations);
    for _ in 0..iterations.min(5) {
        let provider = chain.provider(accounts::ALICE)?;
        let started = Instant::now();
        let found = candidates(&provider, &d, end, fee_rate).await?;
        candidate_times.push(started.elapsed());
        ensure!(
            found.candidates.len() == stakers,
            "{} candidates",
            found.candidates.len()
        );
    }
    // What a page costs, against the usual `eth_call` gas caps.
    let escrow = d.staking_escrow(chain.read_provider());
    let ahead = U256::from((end - 1) / PERIOD - now / PERIOD);
    let page = U256::from(PAGE);
    let active_gas = escrow
        .getActiveStakers(ahead, U256::ZERO, page)
        .estimate_gas()
        .await?;
    let records_gas = escrow
        .getNodeRecords(U256::ZERO, page)
        .estimate_gas()
        .await?;

    let mut plan_times = Vec::with_capacity(iterations);
    let mut rejected = 0usize;
    for seed in 0..iterations as u64 {
        let started = Instant::now();
        let client = Client::connect(
            chain.provider(accounts::ALICE)?,
            d.clone(),
            HttpConfig::default(),
        )
        .await?;
        let plan = client.plan_grant(&request(seed)).await?;
        plan_times.push(started.elapsed());
        ensure!(plan.policy.nodes.len() == 5);
        rejected += plan
            .excluded
            .iter()
            .filter(|e| e.reason.contains("asks at least"))
            .count();
    }

    let mut network_times = Vec::new();
    for _ in 0..3 {
        let provider = chain.read_provider();
        let started = Instant::now();
        let (_, peers) = read_stakers(&provider, &d).await?;
        network_times.push(started.elapsed());
        ensure!(peers.len() == stakers, "{} stakers read", peers.len());
    }

    let plan = summary(plan_times);
    let report = serde_json::json!({
        "benchmark": "kms policy grant sampling: Client::plan_grant, 3-of-5",
        "stakers": stakers,
        "expensiveStakers": stakers / 10,
        "iterations": iterations,
        "cores": std::thread::available_parallelism().map_or(1, usize::from),
        "setupSeconds": setup_time.as_secs_f64(),
        "planGrant": plan,
        "candidatesOnly": summary(candidate_times),
        "networkReadStakers": summary(network_times),
        "page": { "stakers": PAGE, "getActiveStakersGas": active_gas, "getNodeRecordsGas": records_gas },
        "expensiveDrawnAndRejected": rejected,
        "goalMs": 2000.0,
        "nodes": "one in-process HTTP server answers GET /n/<i>/v1/node for every staker with its record's identity",
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(dir) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    eprintln!("written to {out}");
    Ok(())
}
