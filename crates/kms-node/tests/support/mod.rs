//! What the daemon tests on anvil share: policies created on chain, the duties' records, and a
//! small HTTP client of the node's API.

#![allow(dead_code, clippy::unwrap_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, FixedBytes, U256};
use anyhow::{ensure, Result};
use kms_contracts::test_utils::{accounts::ALICE, TestChain};
use kms_node::{DutyRecord, Store};
use serde_json::Value;

pub(crate) fn duty(store: &Store, key: &str) -> Option<DutyRecord> {
    store.duty(key).unwrap()
}

pub(crate) fn is_done(store: &Store, key: &str) -> bool {
    matches!(duty(store, key), Some(DutyRecord::Done { .. }))
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Alice creates the policy of `salt` for `periods` periods from the current one, at 1 gwei per
/// node and period; returns its id (`policyIdOf(alice, salt)`).
pub(crate) async fn create_policy(
    chain: &TestChain,
    salt: [u8; 16],
    kfrag_signer: Address,
    nodes: Vec<Address>,
    periods: u64,
) -> Result<[u8; 16]> {
    let d = chain.deployment();
    let as_alice = chain.provider(ALICE)?;
    let period = chain.current_period().await?;
    let end = (period + periods) * d.seconds_per_period;
    let value = U256::from(1_000_000_000u64 * periods * nodes.len() as u64);
    let receipt = d
        .policy_manager(&as_alice)
        .createPolicy(
            FixedBytes(salt),
            chain.address(ALICE)?,
            kfrag_signer,
            U256::from(end),
            nodes,
        )
        .value(value)
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "createPolicy reverted");
    Ok(kms_crypto::policy_id_of(chain.address(ALICE)?, salt))
}

/// The node's API at `base` (`http://host:port`).
pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
}

impl Client {
    pub(crate) fn new(base: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            base,
        }
    }

    pub(crate) async fn post(&self, path: &str, body: Vec<u8>) -> Result<(u16, Value)> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        let value = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, value))
    }

    pub(crate) async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await?;
        let status = response.status().as_u16();
        let value = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, value))
    }
}

/// Waits until the node's `GET /v1/status` says it has read block `block` (or a later one).
pub(crate) async fn wait_for_head(client: &Client, block: u64) -> Result<()> {
    kms_contracts::test_utils::eventually(
        &format!("the node to read block {block}"),
        std::time::Duration::from_secs(30),
        || async {
            let (_, status) = client.get("/v1/status").await?;
            Ok(status["headBlock"].as_u64().is_some_and(|h| h >= block))
        },
    )
    .await
}
