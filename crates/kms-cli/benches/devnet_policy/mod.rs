//! What the benchmarks of Bob against an in-process `kms devnet` share: waiting for every node
//! to be committed (so that a grant can sample all of them) and granting a policy.

use std::time::{Duration, Instant};

use alloy::{primitives::U256, providers::Provider};
use anyhow::{ensure, Context, Result};
use kms_cli::devnet::{self, Devnet, DevnetArgs};
use kms_client::{Client, GrantRequest, HttpConfig, PolicyFile};
use kms_crypto::keys::MasterSecret;
use umbral_pre::PublicKey;

/// The value after `name` on the command line, if any.
pub(crate) fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A devnet of `nodes` nodes with hour-long periods, anvil on a free port, its deployments file
/// `deployments/bench-<port>.json` (remove it after).
pub(crate) fn devnet_args(nodes: usize) -> Result<DevnetArgs> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Ok(DevnetArgs {
        plain_http: false,
        port,
        nodes,
        seconds_per_period: 3600,
        node_port: 0,
        deployments_file: format!("deployments/bench-{port}.json"),
        dir: None,
        demo: false,
        faulty_node: false,
    })
}

/// Waits (up to a minute each) until every miner of the devnet has committed to a period.
pub(crate) async fn wait_for_commitments(devnet: &Devnet) -> Result<()> {
    let escrow = devnet
        .chain
        .deployment()
        .staking_escrow(devnet.chain.read_provider());
    for miner in &devnet.miners {
        let deadline = Instant::now() + Duration::from_secs(60);
        while escrow
            .getStakerInfo(miner.staker)
            .call()
            .await?
            .lastCommittedPeriod
            == U256::ZERO
        {
            ensure!(Instant::now() < deadline, "a node did not commit");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The devnet's Alice grants `bob` a `threshold`-of-`shares` policy of label `label` (her keys
/// `alice`), ten periods long, with `senders` authorized; every kfrag must be uploaded.
pub(crate) async fn grant(
    devnet: &Devnet,
    alice: &MasterSecret,
    bob: &MasterSecret,
    label: &str,
    (threshold, shares): (usize, usize),
    senders: Vec<PublicKey>,
) -> Result<PolicyFile> {
    let d = devnet.chain.deployment().clone();
    let alice_index = devnet::alice_index(devnet);
    let alice_client = Client::connect(
        devnet.provider(alice_index)?,
        d.clone(),
        HttpConfig::default(),
    )
    .await?;
    let now = devnet
        .chain
        .read_provider()
        .get_block_by_number(Default::default())
        .await?
        .context("no block")?
        .header
        .timestamp;
    let request = GrantRequest {
        label: label.into(),
        owner: devnet.chain.address(alice_index)?,
        creator: devnet.chain.address(alice_index)?,
        delegating_key: alice.delegating_key(label).public_key(),
        verifying_key: alice.signing_key().public_key(),
        receiving_key: bob.receiving_key().public_key(),
        senders,
        threshold,
        shares,
        end_timestamp: (now / d.seconds_per_period + 10) * d.seconds_per_period,
        fee_rate: U256::from(1_000_000_000u64),
        seed: 1,
        salt: None,
    };
    let plan = alice_client.plan_grant(&request).await?;
    let grant = alice_client
        .execute_grant(&plan, &alice.delegating_key(label), &alice.signing_key())
        .await?;
    ensure!(grant.uploaded() == shares, "uploads failed");
    Ok(grant.policy)
}

/// A client of the devnet's Bob account.
pub(crate) async fn bob_client(devnet: &Devnet) -> Result<Client<alloy::providers::DynProvider>> {
    Ok(Client::connect(
        devnet.provider(devnet::bob_index(devnet))?,
        devnet.chain.deployment().clone(),
        HttpConfig::default(),
    )
    .await?)
}
