//! Choosing a policy's nodes: stake-weighted sampling without replacement, reproducible from a
//! `u64` seed.
//!
//! The candidates ([`candidates`]) are the stakers `StakingEscrow.getActiveStakers(periodsAhead,
//! ..)` returns for the policy's last period (a bonded worker, committed to the current or next
//! period, tokens still locked then), weighted by those locked tokens, that have published a node
//! record (URL and Umbral key). Every read is pinned to one block so the candidate list is
//! consistent; the pages are read concurrently.
//!
//! The draw ([`crate::Client::sample_reachable`]) is exact integer arithmetic on the weights (no floating point), in
//! the order of the escrow's staker list, with `ChaCha20Rng::seed_from_u64(seed)`: it puts the
//! candidates in a random order, and the policy takes the first ones in that order that ask no
//! more than the offered fee rate (`PolicyManager.effectiveMinFeeRate`, read for the drawn ones
//! only) and answer as their record says. The same chain state, seed and answers give the same
//! nodes on every platform. Rejecting a drawn node and drawing again is sampling without
//! replacement among the nodes that qualify: the same distribution as filtering them all first,
//! without reading every staker's fee minimum.

use std::{collections::VecDeque, future::Future};

use alloy::{
    eips::BlockId,
    primitives::{Address, U256},
    providers::Provider,
};
use futures_util::{stream, StreamExt, TryStreamExt};
use kms_contracts::Deployment;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use umbral_pre::PublicKey;

use crate::{chain::ChainError, policy::check_url, policy::PolicyNode};

/// Stakers read per paged call (`getActiveStakers`, `getNodeRecords`): about 5 and 9 million gas
/// a page (measured on anvil with 10,000 stakers), within the 30 million gas of a block and
/// the usual `eth_call` caps.
pub const PAGE: u64 = 500;

/// Paged calls in flight at once.
const CONCURRENT_PAGES: usize = 8;

/// Concurrent `effectiveMinFeeRate` reads.
const FEE_READS: usize = 16;

/// The most drawn candidates whose fee minimums are read ahead of need at once (after some were
/// found to ask too much, each round reads as many as were drawn so far, up to this).
const DRAW_AHEAD: usize = 256;

/// Why nodes could not be sampled.
#[derive(Debug, thiserror::Error)]
pub enum SamplingError {
    /// Fewer nodes qualify than the policy needs.
    #[error(
        "not enough nodes: {wanted} wanted, {available} available{}. Lower the number of shares, \
         raise the fee rate, end the policy sooner (stakes must stay locked until its end), or \
         wait for more nodes to join",
        excluded_summary(.excluded)
    )]
    NotEnoughNodes {
        /// Nodes the policy needs.
        wanted: usize,
        /// Nodes that qualify.
        available: usize,
        /// The stakers left out, and why: by the time the draw runs out, every candidate has been
        /// checked, so this lists every active staker that does not qualify.
        excluded: Vec<Excluded>,
    },
    /// The chain could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The policy's end is not after the chain's time.
    #[error("the policy must end after the chain's current time {now}, not at {end}")]
    EndInPast {
        /// The requested end (Unix seconds).
        end: u64,
        /// The latest block's timestamp.
        now: u64,
    },
}

fn excluded_summary(excluded: &[Excluded]) -> String {
    if excluded.is_empty() {
        return String::new();
    }
    let list: Vec<String> = excluded
        .iter()
        .map(|e| format!("{}: {}", e.staker, e.reason))
        .collect();
    format!(" (left out: {})", list.join("; "))
}

/// A staker left out of the sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    /// The staker.
    pub staker: Address,
    /// Why.
    pub reason: String,
}

/// A node that may take the policy, with its sampling weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The node, from its on-chain record.
    pub node: PolicyNode,
    /// Its tokens locked in the policy's last period: the weight.
    pub locked: U256,
}

/// The candidates for a policy, read at one block.
#[derive(Debug, Clone)]
pub struct Candidates {
    /// The active stakers with a usable node record, in the escrow's staker-list order: what
    /// the draw picks from. Whether each asks no more than `fee_rate` is checked when it is
    /// drawn ([`crate::Client::sample_reachable`]).
    pub candidates: Vec<Candidate>,
    /// Active stakers without a usable node record, and why.
    pub excluded: Vec<Excluded>,
    /// The fee rate offered (wei per node and period): drawn candidates asking more are left out.
    pub fee_rate: U256,
    /// The block read.
    pub block: u64,
    /// That block's timestamp.
    pub timestamp: u64,
    /// The period of that timestamp.
    pub current_period: u64,
}

/// Draws indices with probability proportional to their weight, without replacement. Items of
/// weight zero are never drawn.
#[derive(Debug, Clone)]
pub struct WeightedDraw {
    weights: Vec<U256>,
    total: U256,
    remaining: usize,
}

impl WeightedDraw {
    /// A draw over `weights` (index `i` has weight `weights[i]`).
    pub fn new(weights: Vec<U256>) -> Self {
        // Stakes are bounded by the token's cap (under 2^128): the sum cannot saturate in
        // practice, and saturating keeps a hostile chain from making this panic.
        let total = weights
            .iter()
            .fold(U256::ZERO, |sum, w| sum.saturating_add(*w));
        let remaining = weights.iter().filter(|w| !w.is_zero()).count();
        Self {
            weights,
            total,
            remaining,
        }
    }

    /// How many items can still be drawn (weight above zero, not drawn yet).
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// The next index, or `None` when every item of positive weight has been drawn.
    pub fn draw<R: RngCore>(&mut self, rng: &mut R) -> Option<usize> {
        if self.total.is_zero() {
            return None;
        }
        let mut target = uniform_below(rng, self.total);
        let mut chosen = None;
        for (i, weight) in self.weights.iter().enumerate() {
            if target < *weight {
                chosen = Some(i);
                break;
            }
            target -= *weight;
        }
        // With a saturated total the target may pass every weight: take the last live one.
        let index = chosen.or_else(|| self.weights.iter().rposition(|w| !w.is_zero()))?;
        self.total = self.total.saturating_sub(self.weights[index]);
        self.weights[index] = U256::ZERO;
        self.remaining -= 1;
        if self.remaining == 0 {
            self.total = U256::ZERO;
        }
        Some(index)
    }
}

/// A uniform integer in `[0, bound)` (`bound > 0`), by rejection on the bound's bit length.
fn uniform_below<R: RngCore>(rng: &mut R, bound: U256) -> U256 {
    let bits = bound.bit_len();
    loop {
        let mut limbs = [0u64; 4];
        for limb in &mut limbs {
            *limb = rng.next_u64();
        }
        let mut value = U256::from_limbs(limbs);
        if bits < 256 {
            value &= (U256::from(1u8) << bits) - U256::from(1u8);
        }
        if value < bound {
            return value;
        }
    }
}

/// `n` distinct indices of `weights`, drawn by weight without replacement with
/// `ChaCha20Rng::seed_from_u64(seed)`, in draw order. Fails if fewer than `n` weights are
/// positive.
pub fn sample_weighted(weights: &[U256], n: usize, seed: u64) -> Result<Vec<usize>, SamplingError> {
    let mut draw = WeightedDraw::new(weights.to_vec());
    let available = draw.remaining();
    if available < n {
        return Err(SamplingError::NotEnoughNodes {
            wanted: n,
            available,
            excluded: Vec::new(),
        });
    }
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    Ok((0..n).filter_map(|_| draw.draw(&mut rng)).collect())
}

/// Reads the candidates for a policy ending at `end_timestamp` that pays `fee_rate` wei per
/// node and period, at the latest block: the active stakers and their node records, in pages of
/// [`PAGE`] read concurrently. The fee minimums are not read here: the draw
/// ([`crate::Client::sample_reachable`]) reads those of the candidates it draws.
pub async fn candidates<P: Provider>(
    provider: &P,
    deployment: &Deployment,
    end_timestamp: u64,
    fee_rate: U256,
) -> Result<Candidates, SamplingError> {
    let what = "reading the stakers";
    let latest = provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .map_err(|e| ChainError::rpc(what, e))?
        .ok_or_else(|| ChainError::rpc(what, "no latest block"))?;
    let (block, timestamp) = (latest.header.number, latest.header.timestamp);
    if end_timestamp <= timestamp {
        return Err(SamplingError::EndInPast {
            end: end_timestamp,
            now: timestamp,
        });
    }
    let spp = deployment.seconds_per_period.max(1);
    let current_period = timestamp / spp;
    let last_period = (end_timestamp - 1) / spp;
    let periods_ahead = U256::from(last_period - current_period);
    let at = BlockId::number(block);

    let escrow = deployment.staking_escrow(provider);
    let count: u64 = escrow
        .stakersCount()
        .block(at)
        .call()
        .await
        .map_err(|e| ChainError::rpc(what, e))?
        .try_into()
        .unwrap_or(u64::MAX);

    // Both lists of a page at once, the pages a few at a time, in order.
    let escrow = &escrow;
    let pages: Vec<_> = stream::iter((0..count).step_by(PAGE as usize))
        .map(|offset| async move {
            let (offset, limit) = (U256::from(offset), U256::from(PAGE));
            let active = async {
                escrow
                    .getActiveStakers(periods_ahead, offset, limit)
                    .block(at)
                    .call()
                    .await
            };
            let records = async { escrow.getNodeRecords(offset, limit).block(at).call().await };
            let (active, records) = futures_util::future::join(active, records).await;
            let active = active.map_err(|e| ChainError::rpc(what, e))?;
            let records = records.map_err(|e| ChainError::rpc("reading the node records", e))?;
            Ok::<_, ChainError>((active, records))
        })
        .buffered(CONCURRENT_PAGES)
        .try_collect()
        .await?;

    let mut excluded = Vec::new();
    let mut found = Vec::new();
    for (active, records) in pages {
        // A page's records are in list order, a subset of the page: look each staker up.
        let records: std::collections::HashMap<Address, _> =
            records.into_iter().map(|r| (r.staker, r)).collect();
        for (staker, locked) in active.activeStakers.into_iter().zip(active.locked) {
            let Some(record) = records.get(&staker) else {
                excluded.push(Excluded {
                    staker,
                    reason: "no node record published".into(),
                });
                continue;
            };
            let url = match check_url(&record.url) {
                Ok(url) => url,
                Err(reason) => {
                    excluded.push(Excluded {
                        staker,
                        reason: format!("node record URL {reason}"),
                    });
                    continue;
                }
            };
            let key = match PublicKey::try_from_compressed_bytes(&record.umbralPublicKey) {
                Ok(key) => key,
                Err(e) => {
                    excluded.push(Excluded {
                        staker,
                        reason: format!("node record Umbral key is not a point: {e}"),
                    });
                    continue;
                }
            };
            found.push(Candidate {
                node: PolicyNode {
                    staker,
                    worker: record.worker,
                    url,
                    umbral_public_key: key,
                },
                locked,
            });
        }
    }
    Ok(Candidates {
        candidates: found,
        excluded,
        fee_rate,
        block,
        timestamp,
        current_period,
    })
}

/// What the draw asks about the candidates it draws: their fee minimums (from the chain) and
/// whether their nodes answer (over HTTP). [`crate::Client`] asks the chain and the nodes; tests
/// answer from tables.
pub(crate) trait NodeChecks {
    /// `PolicyManager.effectiveMinFeeRate` of each of `stakers` at `block`, in order.
    fn min_fee_rates(
        &self,
        stakers: &[Address],
        block: u64,
    ) -> impl Future<Output = Result<Vec<U256>, ChainError>> + Send;

    /// `Ok` if the node answers `GET /v1/node` as its on-chain record says; why not otherwise.
    fn probe(&self, node: &PolicyNode) -> impl Future<Output = Result<(), String>> + Send;
}

/// The fee minimums of `stakers` at `block`, [`FEE_READS`] at a time, in order.
pub(crate) async fn read_min_fee_rates<P: Provider>(
    provider: &P,
    deployment: &Deployment,
    stakers: &[Address],
    block: u64,
) -> Result<Vec<U256>, ChainError> {
    let manager = &deployment.policy_manager(provider);
    let at = BlockId::number(block);
    stream::iter(stakers.iter().copied())
        .map(|staker| async move {
            manager
                .effectiveMinFeeRate(staker)
                .block(at)
                .call()
                .await
                .map_err(|e| ChainError::rpc("reading the nodes' minimum fee rates", e))
        })
        .buffered(FEE_READS)
        .try_collect()
        .await
}

/// Draws `wanted` nodes from `found` by stake, leaving out the stakers in `exclude`, and returns
/// them ordered by staker (as a policy lists them) with the stakers left out and why.
///
/// The draw ([`WeightedDraw`] with `ChaCha20Rng::seed_from_u64(seed)`) orders the candidates;
/// the policy takes the first `wanted` in that order that ask no more than `found.fee_rate` and
/// answer their probe. Each round draws what is missing, reads the drawn ones' fee minimums
/// (more ahead once some asked too much: reading ahead never changes the result) and probes
/// those that qualify, all at once. A drawn candidate that asks too much or does not answer is
/// left out, with the reason, and the next one in draw order takes its place. Stakers never
/// drawn are not checked, so `excluded` names only those without a usable record and those
/// drawn and left out; when the draw runs out ([`SamplingError::NotEnoughNodes`]), every
/// candidate has been drawn and checked.
pub(crate) async fn sample_nodes<C: NodeChecks + Sync>(
    checks: &C,
    found: &Candidates,
    wanted: usize,
    seed: u64,
    exclude: &[Address],
) -> Result<(Vec<PolicyNode>, Vec<Excluded>), SamplingError> {
    let mut excluded = found.excluded.clone();
    let mut weights = Vec::with_capacity(found.candidates.len());
    for candidate in &found.candidates {
        let left_out = exclude.contains(&candidate.node.staker);
        weights.push(if left_out {
            U256::ZERO
        } else {
            candidate.locked
        });
    }
    let mut draw = WeightedDraw::new(weights);
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    // Drawn and fee-checked, not yet considered, in draw order: qualifying or left out.
    let mut checked: VecDeque<Result<usize, Excluded>> = VecDeque::new();
    let (mut drawn, mut too_dear) = (0usize, 0usize);
    let mut chosen: Vec<PolicyNode> = Vec::with_capacity(wanted);
    // (Loops rather than iterator adapters: a future holding closures' borrows is not `Send`
    // for every lifetime, and a node spawns this.)
    while chosen.len() < wanted {
        let missing = wanted - chosen.len();
        let mut batch: Vec<PolicyNode> = Vec::with_capacity(missing);
        while batch.len() < missing {
            if let Some(next) = checked.pop_front() {
                match next {
                    Ok(i) => batch.push(found.candidates[i].node.clone()),
                    Err(left_out) => excluded.push(left_out),
                }
                continue;
            }
            let needed = missing - batch.len();
            let ahead = if too_dear == 0 {
                0
            } else {
                drawn.min(DRAW_AHEAD)
            };
            let mut indices = Vec::with_capacity(needed.max(ahead));
            while indices.len() < needed.max(ahead) {
                match draw.draw(&mut rng) {
                    Some(i) => indices.push(i),
                    None => break,
                }
            }
            if indices.is_empty() {
                break;
            }
            drawn += indices.len();
            let stakers: Vec<Address> = indices
                .iter()
                .map(|&i| found.candidates[i].node.staker)
                .collect();
            let minimums = checks.min_fee_rates(&stakers, found.block).await?;
            if minimums.len() != indices.len() {
                return Err(ChainError::rpc(
                    "reading the nodes' minimum fee rates",
                    format!("{} answers for {} nodes", minimums.len(), indices.len()),
                )
                .into());
            }
            for (i, minimum) in indices.into_iter().zip(minimums) {
                if minimum > found.fee_rate {
                    too_dear += 1;
                    checked.push_back(Err(Excluded {
                        staker: found.candidates[i].node.staker,
                        reason: format!(
                            "asks at least {minimum} wei per period, {} offered",
                            found.fee_rate
                        ),
                    }));
                } else {
                    checked.push_back(Ok(i));
                }
            }
        }
        if batch.is_empty() {
            return Err(SamplingError::NotEnoughNodes {
                wanted,
                available: chosen.len(),
                excluded,
            });
        }
        let mut probes = Vec::with_capacity(batch.len());
        for node in &batch {
            probes.push(checks.probe(node));
        }
        let probes = futures_util::future::join_all(probes).await;
        for (node, probe) in batch.into_iter().zip(probes) {
            match probe {
                Ok(()) => chosen.push(node),
                Err(reason) => excluded.push(Excluded {
                    staker: node.staker,
                    reason,
                }),
            }
        }
    }
    chosen.sort_by_key(|n| n.staker);
    Ok((chosen, excluded))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::{
        collections::{HashMap, HashSet},
        sync::Mutex,
    };

    use super::*;

    fn weights(values: &[u64]) -> Vec<U256> {
        values.iter().map(|v| U256::from(*v)).collect()
    }

    #[test]
    fn deterministic_with_a_seed() {
        let w = weights(&[5, 1, 7, 3, 3, 9, 2, 8]);
        let a = sample_weighted(&w, 5, 42).unwrap();
        assert_eq!(a, sample_weighted(&w, 5, 42).unwrap());
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 5, "distinct: {a:?}");
        // Another seed draws another order at least sometimes.
        assert!((0..20).any(|s| sample_weighted(&w, 5, s).unwrap() != a));
    }

    #[test]
    fn zero_weight_is_never_chosen() {
        let w = weights(&[0, 10, 0, 1, 0]);
        for seed in 0..200 {
            let chosen = sample_weighted(&w, 2, seed).unwrap();
            assert!(chosen.iter().all(|i| *i == 1 || *i == 3), "{chosen:?}");
        }
        match sample_weighted(&w, 3, 0) {
            Err(SamplingError::NotEnoughNodes {
                wanted: 3,
                available: 2,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(sample_weighted(&[], 1, 0).is_err());
        assert_eq!(sample_weighted(&[], 0, 0).unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn first_draw_follows_the_weights() {
        // Weights 1 : 3 : 6 over 20,000 seeds: each first pick within 1.5 points of its share.
        let w = weights(&[1, 3, 6]);
        let mut counts = [0u32; 3];
        let runs = 20_000;
        for seed in 0..runs {
            counts[sample_weighted(&w, 1, seed).unwrap()[0]] += 1;
        }
        for (count, share) in counts.iter().zip([0.1, 0.3, 0.6]) {
            let observed = f64::from(*count) / runs as f64;
            assert!((observed - share).abs() < 0.015, "{counts:?}");
        }
    }

    #[test]
    fn huge_weights_are_exact() {
        // Token amounts in wei (1e18 per token), far beyond u64.
        let big = U256::from(10u64).pow(U256::from(27u64));
        let w = vec![big, U256::ZERO, big * U256::from(3u8)];
        let mut counts = [0u32; 3];
        for seed in 0..4_000 {
            counts[sample_weighted(&w, 1, seed).unwrap()[0]] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!(counts[2] > 2 * counts[0], "{counts:?}");
        // Without replacement, all positive ones come out.
        let mut all = sample_weighted(&w, 2, 7).unwrap();
        all.sort();
        assert_eq!(all, vec![0, 2]);
    }

    /// Answers the draw's checks from tables, counting the fee reads.
    struct Fake {
        minimums: HashMap<Address, U256>,
        dead: HashSet<Address>,
        fee_reads: Mutex<Vec<Address>>,
    }

    impl Fake {
        fn new(minimums: &[(Address, u64)], dead: &[Address]) -> Self {
            Self {
                minimums: minimums.iter().map(|(a, m)| (*a, U256::from(*m))).collect(),
                dead: dead.iter().copied().collect(),
                fee_reads: Mutex::new(Vec::new()),
            }
        }

        fn reads(&self) -> Vec<Address> {
            self.fee_reads.lock().unwrap().clone()
        }
    }

    impl NodeChecks for Fake {
        fn min_fee_rates(
            &self,
            stakers: &[Address],
            _block: u64,
        ) -> impl Future<Output = Result<Vec<U256>, ChainError>> + Send {
            self.fee_reads.lock().unwrap().extend_from_slice(stakers);
            let answer = stakers
                .iter()
                .map(|s| self.minimums.get(s).copied().unwrap_or(U256::from(FEE)))
                .collect();
            std::future::ready(Ok(answer))
        }

        fn probe(&self, node: &PolicyNode) -> impl Future<Output = Result<(), String>> + Send {
            std::future::ready(if self.dead.contains(&node.staker) {
                Err("GET /v1/node: unreachable".into())
            } else {
                Ok(())
            })
        }
    }

    /// The offered fee rate; the fakes' default minimum.
    const FEE: u64 = 1_000;

    fn staker(i: usize) -> Address {
        Address::left_padding_from(&(0x1000 + i as u64).to_be_bytes())
    }

    /// Candidates `0..stakes.len()` with those stakes.
    fn found(stakes: &[u64]) -> Candidates {
        let key = umbral_pre::SecretKey::random().public_key();
        Candidates {
            candidates: stakes
                .iter()
                .enumerate()
                .map(|(i, stake)| Candidate {
                    node: PolicyNode {
                        staker: staker(i),
                        worker: staker(i),
                        url: format!("http://127.0.0.1:1/{i}"),
                        umbral_public_key: key,
                    },
                    locked: U256::from(*stake),
                })
                .collect(),
            excluded: vec![Excluded {
                staker: Address::repeat_byte(0xee),
                reason: "no node record published".into(),
            }],
            fee_rate: U256::from(FEE),
            block: 7,
            timestamp: 0,
            current_period: 0,
        }
    }

    fn indices(nodes: &[PolicyNode]) -> Vec<usize> {
        nodes
            .iter()
            .map(|n| (0..).find(|&i| staker(i) == n.staker).unwrap())
            .collect()
    }

    /// The documented rule: the first `wanted` in the draw order over every candidate that
    /// qualify, by staker.
    fn reference(
        stakes: &[u64],
        qualifies: impl Fn(usize) -> bool,
        wanted: usize,
        seed: u64,
    ) -> Vec<usize> {
        let order = sample_weighted(
            &weights(stakes),
            stakes.iter().filter(|s| **s > 0).count(),
            seed,
        )
        .unwrap();
        let mut chosen: Vec<usize> = order
            .into_iter()
            .filter(|&i| qualifies(i))
            .take(wanted)
            .collect();
        chosen.sort_by_key(|&i| staker(i));
        chosen
    }

    #[tokio::test]
    async fn sampling_is_reproducible_and_reads_only_the_drawn() {
        let stakes: Vec<u64> = (0..1_000).map(|i| 1 + i % 7).collect();
        let found = found(&stakes);
        let fake = Fake::new(&[], &[]);
        let (a, excluded) = sample_nodes(&fake, &found, 5, 42, &[]).await.unwrap();
        // Nobody asks too much: the five drawn are the five read, in one round.
        assert_eq!(fake.reads().len(), 5);
        assert_eq!(excluded, found.excluded);
        assert_eq!(indices(&a), reference(&stakes, |_| true, 5, 42));
        let (b, _) = sample_nodes(&Fake::new(&[], &[]), &found, 5, 42, &[])
            .await
            .unwrap();
        assert_eq!(a, b);
        let mut other = false;
        for seed in 0..10 {
            other |= sample_nodes(&fake, &found, 5, seed, &[]).await.unwrap().0 != a;
        }
        assert!(other, "another seed draws other nodes");
    }

    #[tokio::test]
    async fn drawn_nodes_asking_too_much_are_rejected_and_replaced() {
        // Every other candidate asks too much, and a few do not answer.
        let stakes: Vec<u64> = (0..200).map(|i| 1 + i % 5).collect();
        let dear: Vec<(Address, u64)> = (0..200)
            .filter(|i| i % 2 == 1)
            .map(|i| (staker(i), FEE + 1))
            .collect();
        let dead: Vec<Address> = [0, 2, 4, 6, 8].map(staker).to_vec();
        let found = found(&stakes);
        for seed in 0..50 {
            let fake = Fake::new(&dear, &dead);
            let (nodes, excluded) = sample_nodes(&fake, &found, 7, seed, &[]).await.unwrap();
            let chosen = indices(&nodes);
            let qualifies = |i: usize| i.is_multiple_of(2) && !(0..10).contains(&i);
            assert_eq!(
                chosen,
                reference(&stakes, qualifies, 7, seed),
                "seed {seed}"
            );
            // Exactly those drawn before the last one taken and not qualifying are left out,
            // each with its reason.
            let order = sample_weighted(&weights(&stakes), stakes.len(), seed).unwrap();
            let last = chosen
                .iter()
                .map(|c| order.iter().position(|o| o == c).unwrap())
                .max()
                .unwrap();
            let mut expected: Vec<Address> = order[..last]
                .iter()
                .filter(|&&i| !qualifies(i))
                .map(|&i| staker(i))
                .collect();
            let mut left: Vec<Address> = excluded[1..].iter().map(|e| e.staker).collect();
            expected.sort();
            left.sort();
            assert_eq!(left, expected, "seed {seed}");
            for left_out in &excluded[1..] {
                let i = (0..).find(|&i| staker(i) == left_out.staker).unwrap();
                if i % 2 == 1 {
                    assert_eq!(
                        left_out.reason,
                        format!("asks at least {} wei per period, {FEE} offered", FEE + 1)
                    );
                } else {
                    assert!(left_out.reason.contains("unreachable"), "{left_out:?}");
                }
            }
            assert!(fake.reads().len() < 200, "reads ahead, but not everything");
        }
    }

    #[tokio::test]
    async fn rejection_draws_as_filtering_first_would() {
        // Weights 1 : 3 : 6 : 10 with the 10 asking too much: the first pick follows 1 : 3 : 6.
        let found = found(&[1, 3, 6, 10]);
        let fake = Fake::new(&[(staker(3), FEE * 2)], &[]);
        let mut counts = [0u32; 4];
        let runs = 20_000;
        for seed in 0..runs {
            let (nodes, _) = sample_nodes(&fake, &found, 1, seed, &[]).await.unwrap();
            counts[indices(&nodes)[0]] += 1;
        }
        assert_eq!(counts[3], 0);
        for (count, share) in counts.iter().zip([0.1, 0.3, 0.6]) {
            let observed = f64::from(*count) / runs as f64;
            assert!((observed - share).abs() < 0.015, "{counts:?}");
        }
    }

    #[tokio::test]
    async fn not_enough_nodes_lists_every_candidate_left_out() {
        let found = found(&[5, 5, 5, 5, 5]);
        let fake = Fake::new(
            &[(staker(1), FEE * 10), (staker(3), FEE * 10)],
            &[staker(2)],
        );
        match sample_nodes(&fake, &found, 3, 9, &[staker(4)]).await {
            Err(SamplingError::NotEnoughNodes {
                wanted: 3,
                available: 1,
                excluded,
            }) => {
                let mut reasons: Vec<(Address, bool)> = excluded
                    .iter()
                    .map(|e| (e.staker, e.reason.contains("asks at least")))
                    .collect();
                reasons.sort();
                // The one without a record, both too dear, the dead one; not the one left out
                // by the caller, nor the one that qualified.
                assert_eq!(
                    reasons,
                    vec![
                        (staker(1), true),
                        (staker(2), false),
                        (staker(3), true),
                        (Address::repeat_byte(0xee), false),
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        // Every candidate but the caller's exclusion was read once.
        let mut reads = fake.reads();
        reads.sort();
        assert_eq!(reads, (0..4).map(staker).collect::<Vec<_>>());
    }

    #[test]
    fn the_draw_can_continue_for_replacements() {
        let mut draw = WeightedDraw::new(weights(&[1, 1, 1]));
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut seen: Vec<usize> = (0..3).map(|_| draw.draw(&mut rng).unwrap()).collect();
        assert_eq!(draw.draw(&mut rng), None);
        assert_eq!(draw.remaining(), 0);
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2]);
    }
}
