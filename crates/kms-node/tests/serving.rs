//! The node on the open internet, against the real contracts on anvil with its RPC endpoint
//! behind a counting proxy (`kms_node::test_utils::RpcProxy`): re-encryptions make no chain call,
//! a revocation is refused from the block it is in (before it is confirmed), a reorg that drops
//! it restores service, a stalled RPC endpoint makes the node refuse with 503 once its view of
//! the head is older than the bound, a policy's end and a confirmed revocation are 410 with the
//! reason (the kfrag deleted), and a node starting on an idle chain answers 503 with what it
//! waits for, then carries on. Needs `forge build` artifacts and `npm ci` (for anvil and forge).

#![allow(clippy::unwrap_used)]

mod support;

use std::{net::SocketAddr, time::Duration};

use alloy::primitives::{Address, FixedBytes};
use anyhow::{ensure, Context, Result};
use kms_contracts::test_utils::{
    accounts::{ALICE, STAKER, WORKER},
    eventually, TestChain,
};
use kms_crypto::{test_utils::PolicyKeys, wire::ReencryptRequest};
use kms_node::{
    test_utils::{local_settings, ProxyMode, RpcProxy},
    DutyConfig, Limits, RunningNode, Settings,
};
use support::{create_policy, unix_now, wait_for_head, Client};
use umbral_pre::{encrypt, DefaultSerialize};

const SECONDS_PER_PERIOD: u64 = 600;
/// How long a test waits for the node to do something.
const WAIT: Duration = Duration::from_secs(30);

/// A node of dev accounts `STAKER`/`WORKER` (staked, bonded) whose RPC endpoint is `proxy`.
fn settings(chain: &TestChain, proxy: &RpcProxy, dir: &tempfile::TempDir) -> Result<Settings> {
    Ok(Settings {
        rpc_url: proxy.url().to_owned(),
        ..local_settings(chain, STAKER, WORKER, dir.path().join("node.redb"))?
    })
}

/// A chain with `STAKER` staked and `WORKER` bonded, a proxy of its RPC endpoint, and a place
/// for the node's store.
async fn staked_behind_a_proxy() -> Result<(TestChain, RpcProxy, tempfile::TempDir)> {
    let chain = TestChain::start(SECONDS_PER_PERIOD).await?;
    chain.stake_minimum(STAKER, WORKER).await?;
    let proxy = RpcProxy::start(chain.endpoint_url().as_str()).await?;
    Ok((chain, proxy, tempfile::tempdir()?))
}

/// The reason of an error answer (empty if there is none).
fn reason(body: &serde_json::Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

/// A started node, its API and a policy naming it alone whose kfrag it holds, with Bob's
/// request for it.
struct Serving {
    node: RunningNode,
    client: Client,
    policy_id: [u8; 16],
    request: Box<dyn Fn() -> Vec<u8>>,
}

impl Serving {
    async fn start(chain: &TestChain, settings: Settings, salt: [u8; 16]) -> Result<Self> {
        let staker = settings.staker;
        let node = kms_node::start(settings).await?;
        Self::serve(chain, node, staker, salt).await
    }

    /// The policy of `salt` on `node`, once the node is committed.
    async fn serve(
        chain: &TestChain,
        node: RunningNode,
        staker: Address,
        salt: [u8; 16],
    ) -> Result<Self> {
        // On chain (its duty record may wait for a receipt poll): policies may name the node.
        eventually("the commitment", WAIT, || async {
            Ok(!chain.commitments(staker).await?.is_empty())
        })
        .await?;
        let client = Client::new(format!("http://{}", node.local_addr()));
        let keys = PolicyKeys::random();
        let policy_id = create_policy(chain, salt, keys.signer_address(), vec![staker], 2).await?;
        upload_kfrag(&client, staker, policy_id, &keys).await?;
        // Served once the node has read the creation's block.
        wait_for_head(&client, chain.head().await?).await?;
        Ok(Self {
            node,
            client,
            policy_id,
            request: Box::new(bob_request(policy_id, staker, keys)),
        })
    }

    fn path(&self) -> String {
        format!(
            "/v1/policies/0x{}/reencrypt",
            alloy::hex::encode(self.policy_id)
        )
    }

    async fn reencrypt(&self) -> Result<(u16, serde_json::Value)> {
        self.client.post(&self.path(), (self.request)()).await
    }
}

/// Alice uploads the kfrag of policy `id` (naming `staker` alone) to the node.
async fn upload_kfrag(
    client: &Client,
    staker: Address,
    id: [u8; 16],
    keys: &PolicyKeys,
) -> Result<()> {
    let (_, info) = client.get("/v1/node").await?;
    let node_pk = kms_node::wire::decode_public_key(
        "umbralPublicKey",
        info["umbralPublicKey"].as_str().context("no key")?,
    )?;
    let kfrag = keys.kfrags(1, 1).remove(0);
    let upload = serde_json::to_vec(&keys.seal(&kfrag, &node_pk, staker, id)?)?;
    let path = format!("/v1/policies/0x{}/kfrag", alloy::hex::encode(id));
    let (status, body) = client.post(&path, upload).await?;
    ensure!(status == 201, "kfrag upload: {status} {body}");
    Ok(())
}

/// Bob's signed re-encryption request of one capsule, made anew at each call.
fn bob_request(policy_id: [u8; 16], staker: Address, keys: PolicyKeys) -> impl Fn() -> Vec<u8> {
    let (capsule, _) = encrypt(&keys.delegating.public_key(), b"hello").unwrap();
    let capsules = vec![capsule.to_bytes().unwrap().into_vec()];
    move || {
        serde_json::to_vec(&ReencryptRequest::sign(
            &keys.bob,
            policy_id,
            staker,
            unix_now(),
            &capsules,
        ))
        .unwrap()
    }
}

/// Alice revokes the policy naming `staker` alone (through a new provider each time: a reorg
/// may have dropped an earlier transaction of hers, and its nonce); returns the block.
async fn revoke(chain: &TestChain, policy_id: [u8; 16], staker: Address) -> Result<u64> {
    let receipt = chain
        .deployment()
        .policy_manager(&chain.provider(ALICE)?)
        .revokePolicy(FixedBytes(policy_id), vec![staker])
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "revokePolicy reverted");
    receipt.block_number.context("no block number")
}

/// Asks until the answer has `status` (or `WAIT` passes); returns that answer's body.
async fn until_status(serving: &Serving, status: u16) -> Result<serde_json::Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (got, body) = serving.reencrypt().await?;
        if got == status {
            return Ok(body);
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "still {got} {body}, waiting for {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_reencryption_makes_no_chain_call() -> Result<()> {
    let (chain, proxy, dir) = staked_behind_a_proxy().await?;
    // Polling once an hour: after its first steps the node's loops are quiet, so every call the
    // proxy sees from then on would be the request path's. So the policy exists (and the node is
    // committed) before the node starts: its first step confirms the policy.
    chain.commit_as(WORKER).await?;
    let staker = chain.address(STAKER)?;
    let keys = PolicyKeys::random();
    let policy_id =
        create_policy(&chain, [0x11; 16], keys.signer_address(), vec![staker], 2).await?;
    let settings = Settings {
        poll_interval: Duration::from_secs(3600),
        limits: Limits {
            max_head_age: Duration::from_secs(7200),
            ..Limits::default()
        },
        public_url: Some("http://node.test".to_owned()),
        ..settings(&chain, &proxy, &dir)?
    };
    // The node record is on chain already, so the start sends no transaction: its receipt
    // would be polled once an hour (a loaded machine's anvil may not have it at the first read).
    let key = settings
        .umbral
        .public_key()
        .to_compressed_bytes()
        .into_vec();
    let receipt = chain
        .deployment()
        .staking_escrow(&chain.provider(WORKER)?)
        .publishNodeRecord("http://node.test".to_owned(), key.into())
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "publishNodeRecord reverted");
    // The head before the start: a duty the node sends later (a commitment, if a period ends
    // meanwhile) mines a block its hourly poll would not read for an hour.
    let head = chain.head().await?;
    let node = kms_node::start(settings).await?;
    let client = Client::new(format!("http://{}", node.local_addr()));
    wait_for_head(&client, head).await?;
    upload_kfrag(&client, staker, policy_id, &keys).await?;
    let serving = Serving {
        node,
        client,
        policy_id,
        request: Box::new(bob_request(policy_id, staker, keys)),
    };
    // Quiet: no call for a second.
    let mut calls = proxy.calls();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = proxy.calls();
        if now == calls {
            break;
        }
        calls = now;
    }
    let before = proxy.calls_by_method();
    for _ in 0..20 {
        let (status, body) = serving.reencrypt().await?;
        ensure!(status == 200, "{status} {body}");
    }
    let after = proxy.calls_by_method();
    ensure!(
        after == before,
        "re-encryptions made chain calls: {before:?} then {after:?}"
    );
    serving.node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn revocations_are_refused_from_the_head_a_reorg_restores_and_a_stalled_rpc_is_503(
) -> Result<()> {
    let (chain, proxy, dir) = staked_behind_a_proxy().await?;
    // Two blocks deep, and no duty sending transactions (the test commits for the node): on
    // this idle chain the follower confirms nothing the test does not mine, so a refusal without
    // mining comes from the head view alone.
    chain.commit_as(WORKER).await?;
    let max_head_age = Duration::from_secs(2);
    let base = settings(&chain, &proxy, &dir)?;
    let settings = Settings {
        confirmations: 2,
        limits: Limits {
            max_head_age,
            ..Limits::default()
        },
        duties: DutyConfig {
            commit: false,
            mint: false,
            withdraw_fees_threshold: None,
            prune: false,
            ..base.duties.clone()
        },
        ..base
    };
    let staker = settings.staker;
    // The node record's transaction needs 2 blocks: mine them as the node waits.
    let starting = tokio::spawn(kms_node::start(settings));
    while !starting.is_finished() {
        chain.mine(1).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let serving = Serving::serve(&chain, starting.await??, staker, [0x22; 16]).await?;
    let (status, body) = serving.reencrypt().await?;
    ensure!(status == 200, "{status} {body}");

    // Alice revokes: refused once the node has read the revocation's block, not confirmed yet.
    let block = revoke(&chain, serving.policy_id, staker).await?;
    wait_for_head(&serving.client, block).await?;
    let (status, body) = serving.reencrypt().await?;
    ensure!(
        status == 410 && reason(&body).contains("not yet confirmed"),
        "{status} {body}"
    );
    let store = serving.node.store().clone();
    ensure!(
        store.get_kfrag(serving.policy_id)?.is_some(),
        "the follower applied an unconfirmed revocation"
    );

    // A reorg replaces the revocation's block with an empty one: served again.
    chain.reorg(1).await?;
    until_status(&serving, 200).await?;

    // The RPC endpoint stalls: 503 once the view is older than the bound, then served again.
    proxy.set_mode(ProxyMode::Stall);
    let body = until_status(&serving, 503).await?;
    ensure!(
        reason(&body).contains("its RPC endpoint is not answering"),
        "{body}"
    );
    proxy.set_mode(ProxyMode::Forward);
    until_status(&serving, 200).await?;

    // Revoked again, and confirmed: the follower deletes the kfrag, Bob still gets 410 and why.
    revoke(&chain, serving.policy_id, staker).await?;
    chain.mine(2).await?;
    eventually("the kfrag's deletion", WAIT, || async {
        Ok(store.get_kfrag(serving.policy_id)?.is_none())
    })
    .await?;
    let (status, body) = serving.reencrypt().await?;
    ensure!(
        status == 410
            && reason(&body) == "the policy, or this node's arrangement in it, is revoked",
        "{status} {body}"
    );
    serving.node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_policy_past_its_end_is_410() -> Result<()> {
    let (chain, proxy, dir) = staked_behind_a_proxy().await?;
    let settings = settings(&chain, &proxy, &dir)?;
    let serving = Serving::start(&chain, settings, [0x33; 16]).await?;
    let (status, body) = serving.reencrypt().await?;
    ensure!(status == 200, "{status} {body}");
    // Two periods later by the chain's clock: the policy has ended (and its kfrag is pruned).
    chain.travel(2 * SECONDS_PER_PERIOD).await?;
    let body = until_status(&serving, 410).await?;
    ensure!(reason(&body).starts_with("the policy ended at"), "{body}");
    let store = serving.node.store().clone();
    eventually("the kfrag's pruning", WAIT, || async {
        Ok(store.get_kfrag(serving.policy_id)?.is_none())
    })
    .await?;
    let (status, body) = serving.reencrypt().await?;
    ensure!(
        status == 410 && reason(&body).starts_with("the policy ended at"),
        "{status} {body}"
    );
    serving.node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_extended_policy_is_served_past_its_first_end() -> Result<()> {
    let (chain, proxy, dir) = staked_behind_a_proxy().await?;
    let settings = settings(&chain, &proxy, &dir)?;
    let staker = settings.staker;
    let serving = Serving::start(&chain, settings, [0x44; 16]).await?;
    let manager = chain.deployment().policy_manager(chain.read_provider());
    let id = FixedBytes(serving.policy_id);
    let first_end = manager.getPolicy(id).call().await?.endTimestamp;
    // One period more, for its one node at the policy's rate (1 gwei).
    let receipt = chain
        .deployment()
        .policy_manager(&chain.provider(ALICE)?)
        .extendPolicy(
            id,
            first_end + alloy::primitives::U256::from(SECONDS_PER_PERIOD),
            vec![staker],
        )
        .value(alloy::primitives::U256::from(1_000_000_000u64))
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "extendPolicy reverted");
    wait_for_head(&serving.client, chain.head().await?).await?;
    // Past the first end, before the new one: served, and the kfrag is not pruned.
    chain.travel(2 * SECONDS_PER_PERIOD).await?;
    wait_for_head(&serving.client, chain.head().await?).await?;
    // Pruning scans every 10 duty ticks of 100 ms: give it a few.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = serving.reencrypt().await?;
    ensure!(status == 200, "{status} {body}");
    ensure!(serving.node.store().get_kfrag(serving.policy_id)?.is_some());
    // Past the new end: 410, then pruned.
    chain.travel(SECONDS_PER_PERIOD).await?;
    let body = until_status(&serving, 410).await?;
    ensure!(reason(&body).starts_with("the policy ended at"), "{body}");
    let store = serving.node.store().clone();
    eventually("the kfrag's pruning", WAIT, || async {
        Ok(store.get_kfrag(serving.policy_id)?.is_none())
    })
    .await?;
    serving.node.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_node_starting_on_an_idle_chain_answers_503_and_carries_on() -> Result<()> {
    let chain = TestChain::start(SECONDS_PER_PERIOD).await?;
    chain.stake_minimum(STAKER, WORKER).await?;
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    // Two blocks deep, on a chain that mines only on transactions: the node record's
    // transaction never gets there by itself.
    let settings = Settings {
        confirmations: 2,
        listen,
        ..local_settings(&chain, STAKER, WORKER, dir.path().join("node.redb"))?
    };
    let starting = tokio::spawn(kms_node::start(settings));
    let client = Client::new(format!("http://{listen}"));
    let mut answered = None;
    for _ in 0..100 {
        if let Ok(answer) = client.get("/v1/status").await {
            answered = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = answered.context("the port never answered")?;
    ensure!(
        status == 503 && reason(&body).starts_with("the node is starting: "),
        "{status} {body}"
    );
    eventually("the wait for the node record", WAIT, || async {
        let (_, body) = client.get("/v1/node").await?;
        Ok(reason(&body).contains("publishing the node record"))
    })
    .await?;
    // It does not give up: two blocks later it is up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(!starting.is_finished(), "the node gave up");
    chain.mine(2).await?;
    let node = tokio::time::timeout(WAIT, starting)
        .await
        .context("the node did not finish starting")???;
    let (status, body) = client.get("/v1/node").await?;
    ensure!(status == 200, "{status} {body}");
    node.shutdown().await;
    Ok(())
}
