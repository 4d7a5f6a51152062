//! `kms devnet --demo`: the whole story on the devnet, every step checked against the chain.
//!
//! 1. the miners' nodes commit to the next period;
//! 2. Alice grants Bob a 3-of-5 policy: nodes sampled by stake, fee paid, kfrags uploaded;
//! 3. Enrico encrypts a file to the policy (streaming, signed with the sender key the policy
//!    authorizes); a file signed by another key is refused;
//! 4. Bob retrieves: asks all five nodes, verifies every cfrag, decrypts; the faulty node's
//!    wrong cfrag is caught with its worker's signature;
//! 5. periods pass (time travel): the nodes commit each period, and every miner's reward is the
//!    formula's `locked * issuance / lockedTotal` of each period it committed to; one miner
//!    restakes, so its rewards are locked and counted in its later commitments' `locked`;
//! 6. each node earned the fee rate for every period it committed to while the policy was live;
//! 7. Alice revokes: the refund is everything not earned, and Bob is refused from the next block;
//! 8. Bob reports the wrong cfrag: the Adjudicator slashes the faulty miner and pays Bob;
//! 9. a peer's audit catches it with no Bob: node 1, restarted with the shipped audit defaults,
//!    re-encrypts random capsules with its peers as chain time runs through a period and files
//!    the faulty node's wrong cfrag itself, paid to its staker.

use std::{
    fs::File,
    io::{BufReader, BufWriter, Write},
    path::PathBuf,
    time::{Duration, Instant},
};

use alloy::{
    eips::BlockId,
    primitives::{Address, B256, U256},
    providers::{DynProvider, Provider},
    rpc::types::Filter,
    sol_types::SolEvent,
};
use anyhow::{bail, ensure, Context, Result};
use kms_client::{
    stream, Client, Fault, GrantOutcome, GrantRequest, Header, HttpConfig, NodeClient, PolicyFile,
    RetrieveOptions, SenderKey, StreamError, TrustedSenders,
};
use kms_contracts::{Adjudicator, Deployment, PolicyManager, StakingEscrow};
use kms_crypto::{keys::MasterSecret, Verdict};
use kms_node::{
    audit::AuditConfig,
    store::{AuditRecord, AuditState, EvidenceRecord, EvidenceState},
    DutyConfig, Store,
};
use rand_core::{OsRng, RngCore};

use super::network::{alice_index, bob_index, Devnet};
use crate::{
    common::{format_eth, format_tokens},
    error::CliError,
};

const THRESHOLD: usize = 3;
const SHARES: usize = 5;
const POLICY_PERIODS: u64 = 6;
/// Four: the restaker's reward of the last one is paid on a commitment that counted a restaked
/// reward.
const PERIODS_TO_PASS: u64 = 4;
const FILE_BYTES: usize = 3 * 1024 * 1024 + 17;
/// 0.001 ETH per node and period.
const FEE_RATE_GWEI: u64 = 1_000_000;
/// The miner whose node audits in step 9: node 1.
const AUDITOR: usize = 0;
/// How long step 9 waits for that node's audit to get the faulty node slashed.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(60);

/// One line of the summary.
struct Row {
    step: &'static str,
    detail: String,
}

/// Runs the story; fails at the first step that does not check out. Step 9 restarts a node.
pub(crate) async fn run(devnet: &mut Devnet) -> Result<()> {
    let mut rows = Vec::new();
    let result = story(devnet, &mut rows).await;
    println!();
    println!("{:<4} {:<34} detail", "ok", "step");
    for row in &rows {
        println!("{:<4} {:<34} {}", "yes", row.step, row.detail);
    }
    match result {
        Ok(()) => {
            println!();
            println!("demo: every step checked out");
            Ok(())
        }
        Err(e) => {
            println!("{:<4} {:<34} {e:#}", "NO", "(next step)");
            Err(e.context("the demo failed"))
        }
    }
}

/// What every step reads: the devnet, its contracts, and a provider without an account.
struct Story<'a> {
    devnet: &'a Devnet,
    deployment: Deployment,
    reader: DynProvider,
}

/// Step 2's result: Alice's client, the policy she paid for, and Bob's keys.
struct Granted {
    alice_client: Client<DynProvider>,
    bob: MasterSecret,
    /// The sender Alice authorized in the policy.
    enrico: SenderKey,
    request: GrantRequest,
    outcome: GrantOutcome,
    /// The policy as Bob reads it from the file Alice wrote.
    loaded: PolicyFile,
}

/// Step 3's result: the plaintext and where its encryption is.
struct Encrypted {
    content: Vec<u8>,
    sealed_path: PathBuf,
}

/// Step 4's result: Bob's client, the file's header, and the faulty node's evidence.
struct Retrieved {
    bob_client: Client<DynProvider>,
    header: Header,
    /// The stakers of the nodes started faulty (the ones whose wrong cfrags were caught).
    faulty: Vec<Address>,
    fault_path: PathBuf,
}

/// The steps in order, each one's row pushed as it checks out; stops at the first that does not.
async fn story(devnet: &mut Devnet, rows: &mut Vec<Row>) -> Result<()> {
    if devnet.miners.len() < SHARES {
        bail!("the demo needs {SHARES} nodes (--nodes {SHARES})");
    }
    let story = Story {
        devnet: &*devnet,
        deployment: devnet.chain.deployment().clone(),
        reader: devnet.chain.read_provider(),
    };
    rows.push(miners_commit(&story).await?);
    let (granted, row) = alice_grants(&story).await?;
    rows.push(row);
    let (encrypted, row) = enrico_encrypts(&story, &granted)?;
    rows.push(row);
    let (retrieved, row) = bob_retrieves(&story, &granted, &encrypted).await?;
    rows.push(row);
    rows.push(periods_pass(&story).await?);
    rows.push(nodes_earn_fees(&story, &granted).await?);
    rows.push(alice_revokes(&story, &granted, &retrieved).await?);
    if let Some(row) = faulty_miner_slashed(&story, &retrieved).await? {
        rows.push(row);
    }
    if let Some(row) = audit_catches_it(devnet, &retrieved).await? {
        rows.push(row);
    }
    Ok(())
}

/// 1. Every node commits to the next period by itself.
async fn miners_commit(story: &Story<'_>) -> Result<Row> {
    let (devnet, reader) = (story.devnet, &story.reader);
    let period = devnet.chain.current_period().await?;
    wait_for_commitments(devnet, reader, period + 1).await?;
    Ok(Row {
        step: "1 miners staked and committed",
        detail: format!(
            "{} nodes committed to period {}",
            devnet.miners.len(),
            period + 1
        ),
    })
}

/// 2. Alice grants Bob 3-of-5.
async fn alice_grants(story: &Story<'_>) -> Result<(Granted, Row)> {
    let (devnet, d) = (story.devnet, &story.deployment);
    let alice_account = devnet.chain.address(alice_index(devnet))?;
    let (alice, bob) = (MasterSecret::random(), MasterSecret::random());
    let enrico = SenderKey::new(MasterSecret::random().sender_key());
    let label = "demo/holiday-video";
    let alice_client = Client::connect(
        devnet.provider(alice_index(devnet))?,
        d.clone(),
        HttpConfig::default(),
    )
    .await?;
    let now = devnet.chain.latest_timestamp().await?;
    let request = GrantRequest {
        label: label.to_owned(),
        owner: alice_account,
        creator: alice_account,
        delegating_key: alice.delegating_key(label).public_key(),
        verifying_key: alice.signing_key().public_key(),
        receiving_key: bob.receiving_key().public_key(),
        senders: vec![enrico.public_key()],
        threshold: THRESHOLD,
        shares: SHARES,
        end_timestamp: (now / d.seconds_per_period + POLICY_PERIODS) * d.seconds_per_period,
        fee_rate: U256::from(FEE_RATE_GWEI * 1_000_000_000),
        seed: 7,
        salt: None,
    };
    let plan = alice_client
        .plan_grant(&request)
        .await
        .map_err(CliError::from)?;
    let outcome = alice_client
        .execute_grant(&plan, &alice.delegating_key(label), &alice.signing_key())
        .await
        .map_err(CliError::from)?;
    ensure!(
        outcome.uploaded() == SHARES,
        "only {} of {SHARES} nodes took their kfrag: {:?}",
        outcome.uploaded(),
        outcome
            .uploads
            .iter()
            .filter_map(|u| u.result.as_ref().err())
            .collect::<Vec<_>>()
    );
    let policy = &outcome.policy;
    let policy_path = devnet.dir.join("policy.json");
    policy.save(&policy_path)?;
    let loaded = PolicyFile::load(&policy_path)?;
    ensure!(
        loaded.policy_id == policy.policy_id,
        "policy file roundtrip"
    );
    let row = Row {
        step: "2 Alice grants Bob 3-of-5",
        detail: format!(
            "policy {} paid {} ETH ({} periods x {SHARES} nodes x {FEE_RATE_GWEI} gwei)",
            policy.policy_id_hex(),
            format_eth(outcome.paid),
            plan.periods
        ),
    };
    let granted = Granted {
        alice_client,
        bob,
        enrico,
        request,
        outcome,
        loaded,
    };
    Ok((granted, row))
}

/// 3. Enrico encrypts a file to the policy's public key.
fn enrico_encrypts(story: &Story<'_>, granted: &Granted) -> Result<(Encrypted, Row)> {
    let dir = &story.devnet.dir;
    let plain_path = dir.join("holiday-video.bin");
    let sealed_path = dir.join("holiday-video.kms");
    let mut content = vec![0u8; FILE_BYTES];
    OsRng.fill_bytes(&mut content);
    std::fs::write(&plain_path, &content)?;
    let stats = {
        let mut input = BufReader::new(File::open(&plain_path)?);
        let mut output = BufWriter::new(File::create(&sealed_path)?);
        let stats = stream::encrypt_stream(
            &granted.outcome.policy.delegating_key,
            &granted.enrico,
            &mut input,
            &mut output,
        )?;
        output.flush()?;
        stats
    };
    // Anyone can encrypt to the policy's public key, but Bob trusts only the policy's senders.
    let mut forged = Vec::new();
    stream::encrypt_stream(
        &granted.outcome.policy.delegating_key,
        &SenderKey::random(),
        &mut &b"not from Enrico"[..],
        &mut forged,
    )?;
    let refused = stream::read_header(&mut &forged[..])?
        .check_sender(&TrustedSenders::of_policy(&granted.loaded), false);
    ensure!(
        matches!(refused, Err(StreamError::UntrustedSender { .. })),
        "a file from an unauthorized sender was not refused: {refused:?}"
    );
    let row = Row {
        step: "3 Enrico encrypts a file",
        detail: format!(
            "{} bytes in {} chunks, signed -> {}; another sender's file refused",
            FILE_BYTES,
            stats.chunks,
            sealed_path.display()
        ),
    };
    Ok((
        Encrypted {
            content,
            sealed_path,
        },
        row,
    ))
}

/// 4. Bob retrieves from all the nodes (auditing every answer), verifies, decrypts.
async fn bob_retrieves(
    story: &Story<'_>,
    granted: &Granted,
    encrypted: &Encrypted,
) -> Result<(Retrieved, Row)> {
    let devnet = story.devnet;
    let Granted { bob, loaded, .. } = granted;
    let bob_client = Client::connect(
        devnet.provider(bob_index(devnet))?,
        story.deployment.clone(),
        HttpConfig::default(),
    )
    .await?;
    let mut sealed = BufReader::new(File::open(&encrypted.sealed_path)?);
    let header = stream::read_header(&mut sealed)?;
    let trusted = TrustedSenders::of_policy(loaded);
    header.check_sender(&trusted, false)?;
    let started = Instant::now();
    let retrieval = bob_client
        .retrieve(
            loaded,
            &bob.receiving_key(),
            std::slice::from_ref(header.capsule()),
            &RetrieveOptions {
                audit_all: true,
                ..Default::default()
            },
        )
        .await
        .map_err(CliError::from)?;
    let retrieve_time = started.elapsed();
    let cfrags = retrieval.cfrags.into_iter().next().context("no cfrags")?;
    ensure!(cfrags.len() >= THRESHOLD, "only {} cfrags", cfrags.len());
    let key = stream::open_data_key_reencrypted(
        &bob.receiving_key(),
        &loaded.delegating_key,
        &header,
        cfrags.iter().take(THRESHOLD).cloned(),
    )?;
    let mut decrypted = Vec::with_capacity(FILE_BYTES);
    stream::decrypt_stream_with_key(&key, &header, &trusted, &mut sealed, &mut decrypted)?;
    ensure!(decrypted == encrypted.content, "the decrypted file differs");
    let faulty: Vec<Address> = devnet
        .miners
        .iter()
        .filter(|m| m.faulty)
        .map(|m| m.staker)
        .collect();
    let caught: Vec<&Fault> = retrieval.faults.iter().collect();
    ensure!(
        caught.len() == faulty.len() && caught.iter().all(|f| faulty.contains(&f.staker)),
        "faults caught {:?}, faulty nodes {faulty:?}",
        caught.iter().map(|f| f.staker).collect::<Vec<_>>()
    );
    let fault_path = devnet.dir.join("fault.json");
    if let Some(fault) = caught.first() {
        fault.save(&fault_path)?;
    }
    let row = Row {
        step: "4 Bob retrieves and decrypts",
        detail: format!(
            "{} valid cfrags in {:.0} ms, file identical; {} wrong cfrag caught",
            cfrags.len(),
            retrieve_time.as_secs_f64() * 1000.0,
            caught.len()
        ),
    };
    let retrieved = Retrieved {
        bob_client,
        header,
        faulty,
        fault_path,
    };
    Ok((retrieved, row))
}

/// The tokens in `staker`'s sub-stakes.
async fn sub_staked(reader: &DynProvider, d: &Deployment, staker: Address) -> Result<U256> {
    let sub_stakes = d.staking_escrow(reader).getSubStakes(staker).call().await?;
    Ok(sub_stakes.iter().map(|s| U256::from(s.amount)).sum())
}

/// Step 5: periods pass; the nodes commit each one; rewards follow the formula. The first
/// honest miner restakes: its rewards are locked into its sub-stake and counted in its next
/// commitment's locked amount, which the formula then pays on.
async fn periods_pass(story: &Story<'_>) -> Result<Row> {
    let (devnet, d, reader) = (story.devnet, &story.deployment, &story.reader);
    let restaker = devnet
        .miners
        .iter()
        .find(|m| !m.faulty)
        .context("no honest miner")?
        .staker;
    let account = (0..32)
        .find(|&i| devnet.chain.address(i).ok() == Some(restaker))
        .context("the restaking miner is not a dev account")?;
    let staked_before = sub_staked(reader, d, restaker).await?;
    let minted_before = d
        .staking_escrow(reader)
        .getStakerInfo(restaker)
        .call()
        .await?
        .rewardsMinted;
    let receipt = d
        .staking_escrow(&devnet.provider(account)?)
        .setReStake(true)
        .send()
        .await?
        .get_receipt()
        .await?;
    ensure!(receipt.status(), "setReStake reverted");
    let restake_block = receipt.block_number.unwrap_or_default();
    for _ in 0..PERIODS_TO_PASS {
        devnet.chain.travel(d.seconds_per_period).await?;
        let period = devnet.chain.current_period().await?;
        wait_for_commitments(devnet, reader, period + 1).await?;
    }
    let current = devnet.chain.current_period().await?;
    let escrow = d.staking_escrow(reader);
    let mut reward_lines = Vec::new();
    for miner in &devnet.miners {
        let expected = formula_rewards(reader, d, miner.staker, current).await?;
        let info = escrow.getStakerInfo(miner.staker).call().await?;
        let actual = info.rewardsMinted + info.pendingReward;
        ensure!(
            actual == expected,
            "miner {}: rewards {actual}, the formula says {expected}",
            miner.staker
        );
        reward_lines.push(format_tokens(actual));
    }
    // The restaker: every reward minted since the switch was locked into its sub-stake, and its
    // last commitment counted it.
    let restaked: U256 = reader
        .get_logs(
            &Filter::new()
                .address(d.staking_escrow)
                .event_signature(StakingEscrow::ReStaked::SIGNATURE_HASH)
                .topic1(restaker.into_word())
                .from_block(restake_block),
        )
        .await?
        .iter()
        .map(|log| {
            log.log_decode::<StakingEscrow::ReStaked>()
                .map(|e| e.inner.data.amount)
        })
        .sum::<Result<U256, _>>()?;
    let minted = escrow.getStakerInfo(restaker).call().await?.rewardsMinted - minted_before;
    let staked_after = sub_staked(reader, d, restaker).await?;
    let commitments = reader
        .get_logs(
            &Filter::new()
                .address(d.staking_escrow)
                .event_signature(StakingEscrow::CommitmentMade::SIGNATURE_HASH)
                .topic1(restaker.into_word())
                .from_block(restake_block),
        )
        .await?
        .iter()
        .map(|log| {
            log.log_decode::<StakingEscrow::CommitmentMade>()
                .map(|e| (e.inner.data.period, e.inner.data.locked))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let last_locked = commitments
        .last()
        .map(|(_, locked)| *locked)
        .context("the restaker made no commitment")?;
    // A period already rewarded (by the formula above) whose locked amount counted restaked
    // tokens.
    let rewarded_on_restaked = commitments
        .iter()
        .find(|(period, locked)| *period < U256::from(current) && *locked > staked_before)
        .map(|(period, locked)| (*period, *locked))
        .context("no rewarded period counted a restaked reward yet")?;
    ensure!(
        !restaked.is_zero()
            && restaked == minted
            && staked_after == staked_before + restaked
            && last_locked == staked_after,
        "restaking: {restaked} restaked of {minted} minted; sub-stakes {staked_before} -> \
         {staked_after}; last commitment's locked {last_locked}"
    );
    Ok(Row {
        step: "5 periods pass, miners rewarded",
        detail: format!(
            "{PERIODS_TO_PASS} periods; rewards = formula exactly: {} KMS; miner {restaker} \
             restakes: {} KMS locked into its sub-stake, counted from its next commitment \
             (period {}: rewarded on {} KMS locked)",
            reward_lines.join(" / "),
            format_tokens(restaked),
            rewarded_on_restaked.0,
            format_tokens(rewarded_on_restaked.1)
        ),
    })
}

/// 6. Fees: each node earned the rate for every period it committed to while live.
async fn nodes_earn_fees(story: &Story<'_>, granted: &Granted) -> Result<Row> {
    let (d, reader) = (&story.deployment, &story.reader);
    let policy = &granted.outcome.policy;
    let manager = d.policy_manager(reader);
    let view = manager
        .getPolicy(alloy::primitives::FixedBytes(policy.policy_id))
        .call()
        .await?;
    let mut earned_total = U256::ZERO;
    for staker in policy.stakers() {
        let earned = fees_accrued(reader, d, staker).await?;
        let committed = manager
            .committedCount(staker, view.startPeriod, view.lastPeriod)
            .call()
            .await?;
        ensure!(
            earned == granted.request.fee_rate * committed,
            "node {staker} earned {earned} wei for {committed} committed periods"
        );
        earned_total += earned;
    }
    Ok(Row {
        step: "6 nodes earn their fees",
        detail: format!(
            "{} ETH earned, fee rate x committed periods for each node",
            format_eth(earned_total)
        ),
    })
}

/// 7. Alice revokes: refunded what was not earned; Bob refused from the next block.
async fn alice_revokes(story: &Story<'_>, granted: &Granted, retrieved: &Retrieved) -> Result<Row> {
    let (d, reader) = (&story.deployment, &story.reader);
    let Granted {
        alice_client,
        bob,
        outcome,
        loaded,
        ..
    } = granted;
    let refunded = alice_client.revoke(loaded).await.map_err(CliError::from)?;
    let mut earned_total = U256::ZERO;
    for staker in outcome.policy.stakers() {
        earned_total += fees_accrued(reader, d, staker).await?;
    }
    ensure!(
        refunded.amount + earned_total == outcome.paid,
        "paid {} != earned {earned_total} + refunded {}",
        outcome.paid,
        refunded.amount
    );
    // Refused from the revocation's block on: each node reads it at its next follower step (a
    // new block wakes it on the devnet's ws:// endpoint), with no chain call per request.
    let heads = alice_client
        .wait_for_nodes_at(loaded, refunded.block, Duration::from_secs(10))
        .await;
    for node in &heads {
        ensure!(
            matches!(node.head, Ok(Some(head)) if head >= refunded.block),
            "the node at {} has not read the revocation's block {}: {:?}",
            node.url,
            refunded.block,
            node.head
        );
    }
    let refused = retrieved
        .bob_client
        .retrieve(
            loaded,
            &bob.receiving_key(),
            std::slice::from_ref(retrieved.header.capsule()),
            &RetrieveOptions::default(),
        )
        .await;
    ensure!(refused.is_err(), "a revoked policy was still served");
    Ok(Row {
        step: "7 Alice revokes, is refunded",
        detail: format!(
            "refund {} ETH = paid - earned; Bob refused",
            format_eth(refunded.amount)
        ),
    })
}

/// 8. Bob reports the wrong cfrag: the faulty miner is slashed, Bob rewarded.
///
/// `None` (no step) when no node was faulty.
async fn faulty_miner_slashed(story: &Story<'_>, retrieved: &Retrieved) -> Result<Option<Row>> {
    let (devnet, d, reader) = (story.devnet, &story.deployment, &story.reader);
    let Some(faulty_staker) = retrieved.faulty.first().copied() else {
        return Ok(None);
    };
    let bob_account = devnet.chain.address(bob_index(devnet))?;
    let bob_client = &retrieved.bob_client;
    let fault = Fault::load(&retrieved.fault_path)?;
    let escrow = d.staking_escrow(reader);
    let token = d.token(reader);
    let stake_before = escrow.getStakerInfo(faulty_staker).call().await?.value;
    let bob_before = token.balanceOf(bob_account).call().await?;
    let report = bob_client
        .report(&fault, bob_account)
        .await
        .map_err(CliError::from)?;
    ensure!(
        report.verdict == Verdict::WrongE,
        "verdict {:?}",
        report.verdict
    );
    ensure!(report.staker == faulty_staker && !report.penalty.is_zero());
    let stake_after = escrow.getStakerInfo(faulty_staker).call().await?.value;
    let bob_after = token.balanceOf(bob_account).call().await?;
    ensure!(
        stake_before - stake_after == report.penalty,
        "stake went {stake_before} -> {stake_after}, penalty {}",
        report.penalty
    );
    ensure!(bob_after - bob_before == report.reward, "Bob's reward");
    // The same evidence cannot be used twice.
    ensure!(
        bob_client.report(&fault, bob_account).await.is_err(),
        "evidence reused"
    );
    Ok(Some(Row {
        step: "8 faulty miner slashed",
        detail: format!(
            "verdict {:?}: {} KMS slashed, {} KMS to Bob",
            report.verdict,
            format_tokens(report.penalty),
            format_tokens(report.reward)
        ),
    }))
}

/// One `CFragEvaluated` event.
#[derive(Debug)]
struct Evaluation {
    block: u64,
    evidence: B256,
    staker: Address,
    investigator: Address,
    verdict: u8,
    penalty: U256,
    reward: U256,
}

/// 9. A peer's audit catches the faulty node, no Bob involved.
///
/// Node 1 is restarted with the shipped audit defaults, chain time runs through a period, and
/// node 1 files the evidence itself, paid to its staker.
///
/// `None` (no step) when no node was faulty.
async fn audit_catches_it(devnet: &mut Devnet, retrieved: &Retrieved) -> Result<Option<Row>> {
    let Some(faulty_staker) = retrieved.faulty.first().copied() else {
        return Ok(None);
    };
    let d = devnet.chain.deployment().clone();
    let reader = devnet.chain.read_provider();
    let auditor = devnet.miners.get(AUDITOR).context("no node 1")?;
    ensure!(
        !auditor.faulty,
        "node 1 is the faulty node: it cannot audit itself"
    );
    let auditor_staker = auditor.staker;

    // A whole period for the audit: to the start of the next one, where every node commits to
    // the one after (the faulty node too: step 8's slash left it staked).
    let spp = d.seconds_per_period;
    let into = devnet.chain.latest_timestamp().await? % spp;
    devnet.chain.travel(spp - into).await?;
    let period = devnet.chain.current_period().await?;
    wait_for_commitments(devnet, &reader, period + 1)
        .await
        .context("every node, the slashed one too, commits before the audit")?;

    // The block before the restart: what happens after it is the audit's.
    let restart_block = devnet.chain.head().await?;
    let token = d.token(&reader);
    let balance_before = token.balanceOf(auditor_staker).call().await?;
    let duties = DutyConfig {
        audit: AuditConfig::default(),
        ..devnet.miners[AUDITOR].settings.duties.clone()
    };
    devnet.restart_node(AUDITOR, duties).await?;
    let node = &devnet.miners[AUDITOR].node;
    wait_for_audit_report(
        devnet,
        node.store(),
        faulty_staker,
        auditor_staker,
        restart_block,
    )
    .await?;

    // The honest miners were never reported, by anyone.
    let all = evaluations(&reader, &d, d.start_block).await?;
    if let Some(wrong) = all.iter().find(|e| !retrieved.faulty.contains(&e.staker)) {
        bail!("an honest miner was reported: {wrong:?}");
    }
    let ours: Vec<&Evaluation> = all
        .iter()
        .filter(|e| e.block > restart_block && e.investigator == auditor_staker)
        .collect();
    let coefficient = d.adjudicator(&reader).rewardCoefficient().call().await?;
    for e in &ours {
        ensure!(
            e.staker == faulty_staker && e.verdict == Verdict::WrongE as u8,
            "unexpected evaluation {e:?}"
        );
        ensure!(
            !e.penalty.is_zero() && e.reward == e.penalty / coefficient,
            "reward {} for a penalty of {}: the contract pays penalty / {coefficient}",
            e.reward,
            e.penalty
        );
    }
    // Exactly the penalty left the stake, and exactly the reward reached node 1's staker, in
    // each reveal's block (the stake also grows by the rewards that commitments settle).
    let escrow = d.staking_escrow(&reader);
    let mut blocks: Vec<u64> = ours.iter().map(|e| e.block).collect();
    blocks.dedup();
    for &block in &blocks {
        let (before, after) = (BlockId::number(block - 1), BlockId::number(block));
        let in_block = ours.iter().filter(|e| e.block == block);
        let penalty: U256 = in_block.clone().map(|e| e.penalty).sum();
        let reward: U256 = in_block.map(|e| e.reward).sum();
        let stake_before = escrow
            .getStakerInfo(faulty_staker)
            .block(before)
            .call()
            .await?
            .value;
        let stake_after = escrow
            .getStakerInfo(faulty_staker)
            .block(after)
            .call()
            .await?
            .value;
        ensure!(
            stake_after + penalty == stake_before,
            "stake went {stake_before} -> {stake_after} in block {block}, penalty {penalty}"
        );
        let paid_before = token.balanceOf(auditor_staker).block(before).call().await?;
        let paid_after = token.balanceOf(auditor_staker).block(after).call().await?;
        ensure!(
            paid_before + reward == paid_after,
            "node 1's staker's tokens went {paid_before} -> {paid_after} in block {block}, \
             reward {reward}"
        );
    }
    let last = blocks.last().copied().unwrap_or(restart_block);
    let penalty: U256 = ours.iter().map(|e| e.penalty).sum();
    let reward: U256 = ours.iter().map(|e| e.reward).sum();
    let balance_after = token
        .balanceOf(auditor_staker)
        .block(BlockId::number(last))
        .call()
        .await?;
    ensure!(
        balance_before + reward == balance_after,
        "node 1's staker's tokens went {balance_before} -> {balance_after}, rewards {reward}"
    );

    // Where the node says its filing stands.
    let first = ours.first().context("no evaluation")?;
    let status = evidence_state(devnet, node.public_url(), first.evidence).await?;
    ensure!(
        status.state == "slashed"
            && status.penalty == Some(first.penalty)
            && status.reward == Some(first.reward),
        "node 1's GET /v1/evidence/{}: {status:?}",
        first.evidence
    );
    let reports = match ours.len() {
        1 => String::new(),
        n => format!("{n} reports, "),
    };
    Ok(Some(Row {
        step: "9 a peer's audit catches it",
        detail: format!(
            "node 1's audit, no Bob: {reports}verdict WrongE, {} KMS slashed, {} KMS \
             (penalty / {coefficient}) to node 1's staker; GET /v1/evidence: {}",
            format_tokens(penalty),
            format_tokens(reward),
            status.state
        ),
    }))
}

/// Runs chain time through node 1's audit rounds until a `CFragEvaluated` event after
/// `after_block` names its staker (paid) and the faulty staker.
///
/// The node plans its audit at its first tick in a period (rounds at random chain times); this
/// waits while a round that is due runs, mines blocks while its evidence is being filed (a
/// reveal goes out from a block after its commitment's), and otherwise travels to the next
/// round.
async fn wait_for_audit_report(
    devnet: &Devnet,
    store: &Store,
    faulty: Address,
    investigator: Address,
    after_block: u64,
) -> Result<()> {
    let (chain, reader) = (&devnet.chain, devnet.chain.read_provider());
    let d = chain.deployment();
    let spp = d.seconds_per_period;
    let deadline = Instant::now() + AUDIT_TIMEOUT;
    loop {
        let found = evaluations(&reader, d, after_block).await?;
        if found
            .iter()
            .any(|e| e.block > after_block && e.investigator == investigator && e.staker == faulty)
        {
            return Ok(());
        }
        let now = chain.latest_timestamp().await?;
        let (record, evidence) = audit_state(store, now / spp).await?;
        ensure!(
            Instant::now() < deadline,
            "node 1 got no evidence against {faulty} evaluated within {} s; its audit: {}; its \
             evidence: {:?}",
            AUDIT_TIMEOUT.as_secs(),
            record.as_ref().map_or_else(
                || format!("none planned for period {}", now / spp),
                |r| format!(
                    "period {}, {:?}, {} peers hold a kfrag, {} of {} rounds done",
                    r.period,
                    r.state,
                    r.uploaded.len(),
                    r.rounds_done,
                    r.rounds.len()
                )
            ),
            evidence
                .iter()
                .map(|(id, r)| (id, &r.state))
                .collect::<Vec<_>>()
        );
        if let Some((_, refused)) = evidence
            .iter()
            .find(|(_, r)| matches!(r.state, EvidenceState::Refused { .. }))
        {
            bail!("node 1's evidence was refused: {:?}", refused.state);
        }
        let Some(record) = record else {
            // Not planned yet: the node plans at its next tick.
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        match &record.state {
            AuditState::Abandoned { reason } => {
                bail!(
                    "node 1 abandoned its audit of period {}: {reason}",
                    record.period
                )
            }
            // `createPolicy` is on its way (its own transaction mines its block).
            AuditState::Planned => {}
            AuditState::Created => {
                let due = record.rounds.iter().filter(|&&at| at <= now).count();
                if evidence.iter().any(|(_, r)| !r.state.is_final()) {
                    chain.mine(1).await?;
                } else if !record.uploaded.is_empty() && record.rounds_done >= due {
                    // To the next round, or into the next period (a new audit) after the last.
                    let next = record.rounds.iter().find(|&&at| at > now).copied();
                    let to = next.unwrap_or((now / spp + 1) * spp);
                    chain.travel(to - now).await?;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Node 1's audit record of `period` and all its evidence, from its store.
async fn audit_state(
    store: &Store,
    period: u64,
) -> Result<(Option<AuditRecord>, Vec<(B256, EvidenceRecord)>)> {
    let store = store.clone();
    Ok(tokio::task::spawn_blocking(move || {
        Ok::<_, kms_node::StoreError>((store.audit(period)?, store.all_evidence()?))
    })
    .await??)
}

/// The node's `GET /v1/evidence/{id}` once its filing has ended (the event may be seen first).
async fn evidence_state(
    devnet: &Devnet,
    url: &str,
    id: B256,
) -> Result<kms_crypto::wire::EvidenceStatus> {
    let http = NodeClient::new(HttpConfig::default())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = http.evidence_status(url, id).await?;
        if status.state != "pending" && status.state != "committed" {
            return Ok(status);
        }
        ensure!(
            Instant::now() < deadline,
            "node 1's filing of {id} still {}",
            status.state
        );
        devnet.chain.mine(1).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every miner's node has committed to `period`.
async fn wait_for_commitments(devnet: &Devnet, reader: &DynProvider, period: u64) -> Result<()> {
    let escrow = devnet.chain.deployment().staking_escrow(reader);
    let deadline = Instant::now() + Duration::from_secs(60);
    for miner in &devnet.miners {
        loop {
            let info = escrow.getStakerInfo(miner.staker).call().await?;
            if info.commitPeriods.contains(&U256::from(period)) {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "node of {} did not commit to period {period}",
                miner.staker
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// `sum over the staker's commitments to ended periods of locked * issuance / lockedTotal`,
/// from its `CommitmentMade` events and the periods' totals.
async fn formula_rewards(
    reader: &DynProvider,
    d: &Deployment,
    staker: Address,
    current: u64,
) -> Result<U256> {
    let filter = Filter::new()
        .address(d.staking_escrow)
        .event_signature(StakingEscrow::CommitmentMade::SIGNATURE_HASH)
        .topic1(staker.into_word())
        .from_block(d.start_block);
    let escrow = d.staking_escrow(reader);
    let mut total = U256::ZERO;
    for log in reader.get_logs(&filter).await? {
        let event = log
            .log_decode::<StakingEscrow::CommitmentMade>()?
            .inner
            .data;
        if event.period >= U256::from(current) {
            continue;
        }
        let totals = escrow.getPeriodTotals(event.period).call().await?;
        if totals.lockedTotal == 0 {
            continue;
        }
        total += event.locked * U256::from(totals.issuance) / U256::from(totals.lockedTotal);
    }
    Ok(total)
}

/// The fees credited to `node` (its `FeesAccrued` events).
async fn fees_accrued(reader: &DynProvider, d: &Deployment, node: Address) -> Result<U256> {
    let filter = Filter::new()
        .address(d.policy_manager)
        .event_signature(PolicyManager::FeesAccrued::SIGNATURE_HASH)
        .topic1(node.into_word())
        .from_block(d.start_block);
    let mut total = U256::ZERO;
    for log in reader.get_logs(&filter).await? {
        total += log
            .log_decode::<PolicyManager::FeesAccrued>()?
            .inner
            .data
            .amount;
    }
    Ok(total)
}

/// The `CFragEvaluated` events from `from_block` on, in order.
async fn evaluations(
    reader: &DynProvider,
    d: &Deployment,
    from_block: u64,
) -> Result<Vec<Evaluation>> {
    let filter = Filter::new()
        .address(d.adjudicator)
        .event_signature(Adjudicator::CFragEvaluated::SIGNATURE_HASH)
        .from_block(from_block);
    let mut out = Vec::new();
    for log in reader.get_logs(&filter).await? {
        let block = log.block_number.context("a log without its block")?;
        let event = log.log_decode::<Adjudicator::CFragEvaluated>()?.inner.data;
        out.push(Evaluation {
            block,
            evidence: event.evidenceHash,
            staker: event.staker,
            investigator: event.investigator,
            verdict: event.verdict,
            penalty: event.penalty,
            reward: event.reward,
        });
    }
    Ok(out)
}
