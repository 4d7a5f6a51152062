//! Choosing a policy's nodes: stake-weighted sampling without replacement, reproducible from a
//! `u64` seed.
//!
//! The candidates are the stakers `StakingEscrow.getActiveStakers(periodsAhead, ..)` returns for
//! the policy's last period (a bonded worker, committed to the current or next period, tokens
//! still locked then), weighted by those locked tokens, that have published a node record (URL
//! and Umbral key) and ask no more than the offered fee rate (`effectiveMinFeeRate`). Every read
//! is pinned to one block so the candidate list is consistent.
//!
//! The draw is exact integer arithmetic on the weights (no floating point), in the order of the
//! escrow's staker list, with `ChaCha20Rng::seed_from_u64(seed)`: the same chain state and seed
//! give the same nodes on every platform.

use alloy::{
    eips::BlockId,
    primitives::{Address, U256},
    providers::Provider,
};
use kms_contracts::Deployment;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use umbral_pre::PublicKey;

use crate::{chain::ChainError, policy::check_url, policy::PolicyNode};

/// Stakers read per paged call.
const PAGE: u64 = 200;

/// Concurrent `effectiveMinFeeRate` reads.
const FEE_READS: usize = 16;

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
        /// The stakers left out, and why.
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

/// A node that can take the policy, with its sampling weight.
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
    /// Those that qualify, in the escrow's staker-list order.
    pub eligible: Vec<Candidate>,
    /// Active stakers that do not qualify, and why.
    pub excluded: Vec<Excluded>,
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
}

impl WeightedDraw {
    /// A draw over `weights` (index `i` has weight `weights[i]`).
    pub fn new(weights: Vec<U256>) -> Self {
        // Stakes are bounded by the token's cap (under 2^128): the sum cannot saturate in
        // practice, and saturating keeps a hostile chain from making this panic.
        let total = weights
            .iter()
            .fold(U256::ZERO, |sum, w| sum.saturating_add(*w));
        Self { weights, total }
    }

    /// How many items can still be drawn (weight above zero, not drawn yet).
    pub fn remaining(&self) -> usize {
        self.weights.iter().filter(|w| !w.is_zero()).count()
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
        if self.remaining() == 0 {
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
/// node and period, at the latest block.
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
    let manager = deployment.policy_manager(provider);
    let count: u64 = escrow
        .stakersCount()
        .block(at)
        .call()
        .await
        .map_err(|e| ChainError::rpc(what, e))?
        .try_into()
        .unwrap_or(u64::MAX);

    let mut active: Vec<(Address, U256)> = Vec::new();
    let mut records = std::collections::HashMap::new();
    let mut offset = 0u64;
    while offset < count {
        let page = escrow
            .getActiveStakers(periods_ahead, U256::from(offset), U256::from(PAGE))
            .block(at)
            .call()
            .await
            .map_err(|e| ChainError::rpc(what, e))?;
        active.extend(page.activeStakers.into_iter().zip(page.locked));
        let nodes = escrow
            .getNodeRecords(U256::from(offset), U256::from(PAGE))
            .block(at)
            .call()
            .await
            .map_err(|e| ChainError::rpc("reading the node records", e))?;
        for record in nodes {
            records.insert(record.staker, record);
        }
        offset += PAGE;
    }

    let mut excluded = Vec::new();
    let mut with_record = Vec::new();
    for (staker, locked) in active {
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
        with_record.push(Candidate {
            node: PolicyNode {
                staker,
                worker: record.worker,
                url,
                umbral_public_key: key,
            },
            locked,
        });
    }

    // The fee minimums, a few at a time, in order. (Owned stakers and a loop of async blocks:
    // a stream of closures borrowing the candidates would make this future `Send` only for
    // some lifetimes, and a node spawns it.)
    let mut minimums: Vec<U256> = Vec::with_capacity(with_record.len());
    for chunk in with_record.chunks(FEE_READS) {
        let mut reads = Vec::with_capacity(chunk.len());
        for candidate in chunk {
            let (manager, staker) = (&manager, candidate.node.staker);
            reads.push(async move {
                manager
                    .effectiveMinFeeRate(staker)
                    .block(at)
                    .call()
                    .await
                    .map_err(|e| ChainError::rpc("reading the nodes' minimum fee rates", e))
            });
        }
        minimums.extend(futures_util::future::try_join_all(reads).await?);
    }
    let mut eligible = Vec::new();
    for (candidate, minimum) in with_record.into_iter().zip(minimums) {
        if minimum > fee_rate {
            excluded.push(Excluded {
                staker: candidate.node.staker,
                reason: format!("asks at least {minimum} wei per period, {fee_rate} offered"),
            });
        } else {
            eligible.push(candidate);
        }
    }
    Ok(Candidates {
        eligible,
        excluded,
        block,
        timestamp,
        current_period,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

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
