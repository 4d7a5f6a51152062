//! The network as the chain lists it: every staker with a node record, its stake, worker, URL and
//! last commitment ([`read_stakers`], read by `kms network status` and by the nodes for
//! `GET /v1/network`); and what `kms network status` makes of it ([`network_status`]): whether
//! each node answers as its record says, and what the other nodes' audits saw of it, summed by
//! [`summarize`] (pure, so it is tested without a network).

use alloy::{
    eips::{BlockId, BlockNumberOrTag},
    primitives::{Address, U256},
    providers::Provider,
};
use futures_util::{stream, StreamExt, TryStreamExt};
use kms_contracts::Deployment;
use kms_crypto::wire::{Availability, NetworkView, NodeInfo, PeerView};
use serde::{Deserialize, Serialize};

use crate::{
    chain::ChainError,
    http::{NodeClient, NodeError},
};

/// Stakers read per `getNodeRecords` call (as in the sampling).
const PAGE: u64 = crate::sampling::PAGE;

/// `getNodeRecords` calls in flight at once.
const CONCURRENT_PAGES: usize = 8;

/// Stakers whose state is read at once.
const CONCURRENT_READS: usize = 16;

/// The stakers with a node record at the latest block, in the escrow's order, each without an
/// availability (that is a node's to add). Returns them with the block read.
pub async fn read_stakers<P: Provider>(
    provider: &P,
    deployment: &Deployment,
) -> Result<(u64, Vec<PeerView>), ChainError> {
    let what = "reading the stakers";
    let block = provider
        .get_block_number()
        .await
        .map_err(|e| ChainError::rpc(what, e))?;
    let at = BlockId::number(block);
    let escrow = deployment.staking_escrow(provider);
    let count: u64 = escrow
        .stakersCount()
        .block(at)
        .call()
        .await
        .map_err(|e| ChainError::rpc(what, e))?
        .saturating_to();
    let escrow = &escrow;
    let pages: Vec<Vec<_>> = stream::iter((0..count).step_by(PAGE as usize))
        .map(|offset| async move {
            escrow
                .getNodeRecords(U256::from(offset), U256::from(PAGE))
                .block(at)
                .call()
                .await
                .map_err(|e| ChainError::rpc("reading the node records", e))
        })
        .buffered(CONCURRENT_PAGES)
        .try_collect()
        .await?;
    let records = pages.into_iter().flatten();
    let peers = stream::iter(records)
        .map(|record| async move {
            let info = escrow
                .getStakerInfo(record.staker)
                .block(at)
                .call()
                .await
                .map_err(|e| ChainError::rpc("reading a staker", e))?;
            Ok::<_, ChainError>(PeerView {
                staker: record.staker,
                worker: record.worker,
                url: record.url,
                stake: info.value,
                locked_now: info.lockedNow,
                last_committed_period: info.lastCommittedPeriod.saturating_to(),
                availability: None,
            })
        })
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await?;
    Ok((block, peers))
}

/// Nodes asked at once by [`network_status`].
const CONCURRENT_PROBES: usize = 32;

/// The network now: every staker with a node record, whether its node answers, and what the
/// other nodes' audits saw of it. What `kms network status` prints (its `--json` is this struct).
///
/// Amounts of tokens are decimal strings of token units (18 decimals), as in the other `--json`
/// outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    /// The chain.
    pub chain_id: u64,
    /// The block the stakers were read at.
    pub block: u64,
    /// That block's period.
    pub current_period: u64,
    /// Every staker with a node record, in the escrow's order.
    pub stakers: Vec<StakerStatus>,
    /// Every node asked for its audit records (those that answered `GET /v1/node` as their
    /// record says), and whether its records were counted.
    pub reporters: Vec<ReporterStatus>,
}

/// One staker: the chain's record, its node's answer now, and the other nodes' audits of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StakerStatus {
    /// The staker.
    pub staker: Address,
    /// Tokens staked, in token units (decimal string).
    #[serde(with = "decimal")]
    pub stake: U256,
    /// Tokens locked in the current period, in token units (decimal string).
    #[serde(with = "decimal")]
    pub locked_now: U256,
    /// Its bonded worker (zero: none).
    pub worker: Address,
    /// Its node's URL, from its node record.
    pub url: String,
    /// The last period it committed to (0: never; the current period + 1 when it has committed
    /// to the next one, as a node does ahead of time).
    pub last_committed_period: u64,
    /// Whether its node answered `GET /v1/node` just now as its record says (the same staker
    /// and worker, and the chain).
    pub reachable: bool,
    /// Why not, briefly (`null` when reachable): `unreachable`, `HTTP 503`, `invalid answer`,
    /// `bad URL`, `serves another staker`, `signs with another worker`, `serves chain N`.
    pub unreachable_reason: Option<String>,
    /// What the other nodes' audits saw of it, summed.
    pub audits: Audits,
}

/// The audit answers of one staker as the other nodes recorded them, summed over the nodes whose
/// records were counted (each over its own `fromPeriod..=currentPeriod`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Audits {
    /// How many nodes reported an audit record of it.
    pub reporters: usize,
    /// Failed answers: `wrong + refused + timedOut + invalid`.
    pub failed: u64,
    /// The counts summed (`served`, `wrong`, `refused`, `timedOut`, `invalid`); `lastAt` the
    /// latest answer recorded, `lastStatus` and `lastFailure` the latest failure's.
    #[serde(flatten)]
    pub totals: Availability,
}

/// A node asked for its audit records (`GET /v1/network`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReporterStatus {
    /// The staker it serves.
    pub staker: Address,
    /// Its URL.
    pub url: String,
    /// Whether its records were counted.
    pub counted: bool,
    /// The first period its records cover (`null` unless it answered).
    pub from_period: Option<u64>,
    /// The period it reads the chain at (`null` unless it answered).
    pub current_period: Option<u64>,
    /// Why its records were not counted (`null` when they were), e.g. `HTTP 404 (a version
    /// without /v1/network)`.
    pub reason: Option<String>,
}

/// What was found out about one staker's node, for [`summarize`].
#[derive(Debug, Clone)]
pub struct Observed {
    /// The staker, as [`read_stakers`] lists it.
    pub peer: PeerView,
    /// `Ok` when its node answered `GET /v1/node` as its record says; otherwise why not, briefly
    /// (see [`probe_outcome`]).
    pub probe: Result<(), String>,
    /// Its node's answer to `GET /v1/network` (`None`: not asked).
    pub view: Option<Result<NetworkView, NodeError>>,
}

/// A node error, briefly: `unreachable`, `HTTP 503`, `invalid answer`, `certificate not the
/// pinned one`, `bad URL`.
fn brief(error: &NodeError) -> String {
    match error {
        NodeError::Unreachable(_) => "unreachable".into(),
        NodeError::Refused { status, .. } => format!("HTTP {status}"),
        NodeError::InvalidAnswer(_) => "invalid answer".into(),
        NodeError::Certificate(_) => "certificate not the pinned one".into(),
        NodeError::BadUrl { .. } => "bad URL".into(),
    }
}

/// Whether a node's answer to `GET /v1/node` is what `peer`'s record on chain `chain_id` says:
/// `Ok`, or why not, briefly (see [`StakerStatus::unreachable_reason`]).
pub fn probe_outcome(
    peer: &PeerView,
    chain_id: u64,
    answer: &Result<NodeInfo, NodeError>,
) -> Result<(), String> {
    let info = answer.as_ref().map_err(brief)?;
    if info.staker != peer.staker {
        return Err("serves another staker".into());
    }
    if info.worker != peer.worker {
        return Err("signs with another worker".into());
    }
    if info.chain_id != chain_id {
        return Err(format!("serves chain {}", info.chain_id));
    }
    Ok(())
}

/// Combines the stakers, the probes of their nodes and the nodes' network views into the
/// network's status, read at `block` (period `current_period`) of chain `chain_id`.
///
/// A view counts when its node answered `GET /v1/node` as its record says, and the view is of
/// this chain and names that node's staker; otherwise the node is listed among the reporters
/// with the reason. Each staker's audits are the sum of what the counted views record of it,
/// leaving out its own node's view of itself (a node does not audit itself). Entries of stakers
/// not in `observed` are left out.
pub fn summarize(
    chain_id: u64,
    block: u64,
    current_period: u64,
    observed: &[Observed],
) -> NetworkStatus {
    let mut reporters = Vec::new();
    let mut views: Vec<&NetworkView> = Vec::new();
    for node in observed {
        let (Ok(()), Some(answer)) = (&node.probe, &node.view) else {
            continue;
        };
        let reason = match answer {
            Err(NodeError::Refused { status: 404, .. }) => {
                Some("HTTP 404 (a version without /v1/network)".to_owned())
            }
            Err(e) => Some(brief(e)),
            Ok(view) if view.chain_id != chain_id => {
                Some(format!("serves chain {}", view.chain_id))
            }
            Ok(view) if view.node != node.peer.staker => {
                Some("answers for another staker".to_owned())
            }
            Ok(view) => {
                views.push(view);
                None
            }
        };
        let answered = answer.as_ref().ok();
        reporters.push(ReporterStatus {
            staker: node.peer.staker,
            url: node.peer.url.clone(),
            counted: reason.is_none(),
            from_period: answered.map(|v| v.from_period),
            current_period: answered.map(|v| v.current_period),
            reason,
        });
    }
    let stakers = observed
        .iter()
        .map(|node| {
            let staker = node.peer.staker;
            let mut audits = Audits::default();
            let records = views
                .iter()
                .filter(|view| view.node != staker)
                .filter_map(|view| view.peers.iter().find(|p| p.staker == staker))
                .filter_map(|entry| entry.availability.as_ref());
            for record in records {
                Availability::add(&mut audits.totals, record);
                audits.reporters += 1;
            }
            let t = &audits.totals;
            audits.failed = t
                .wrong
                .saturating_add(t.refused)
                .saturating_add(t.timed_out)
                .saturating_add(t.invalid);
            StakerStatus {
                staker,
                stake: node.peer.stake,
                locked_now: node.peer.locked_now,
                worker: node.peer.worker,
                url: node.peer.url.clone(),
                last_committed_period: node.peer.last_committed_period,
                reachable: node.probe.is_ok(),
                unreachable_reason: node.probe.as_ref().err().cloned(),
                audits,
            }
        })
        .collect();
    NetworkStatus {
        chain_id,
        block,
        current_period,
        stakers,
        reporters,
    }
}

/// Reads the stakers ([`read_stakers`]), asks each node who it is (`GET /v1/node`) and, if it
/// answers as its record says, for its audit records (`GET /v1/network`), all at once with
/// `nodes`' timeouts and attempts, and [`summarize`]s. Fails only when the chain cannot be read:
/// a node that does not answer is a row saying so.
pub async fn network_status<P: Provider>(
    provider: &P,
    deployment: &Deployment,
    nodes: &NodeClient,
) -> Result<NetworkStatus, ChainError> {
    let (block, peers) = read_stakers(provider, deployment).await?;
    let what = "reading the current period";
    let timestamp = provider
        .get_block_by_number(BlockNumberOrTag::Number(block))
        .await
        .map_err(|e| ChainError::rpc(what, e))?
        .ok_or_else(|| ChainError::rpc(what, format!("block {block} is missing")))?
        .header
        .timestamp;
    let current_period = timestamp / deployment.seconds_per_period.max(1);
    let chain_id = deployment.chain_id;
    let observed: Vec<Observed> = stream::iter(peers)
        .map(|peer| async move {
            let probe = probe_outcome(&peer, chain_id, &nodes.node_info(&peer.url).await);
            let view = match probe {
                Ok(()) => Some(nodes.network(&peer.url).await),
                Err(_) => None,
            };
            Observed { peer, probe, view }
        })
        .buffered(CONCURRENT_PROBES)
        .collect()
        .await;
    Ok(summarize(chain_id, block, current_period, &observed))
}

/// `U256` as a decimal string (serde's default for it is hex).
mod decimal {
    use alloy::primitives::U256;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &U256, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<U256, D::Error> {
        let text = String::deserialize(deserializer)?;
        U256::from_str_radix(&text, 10).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const CHAIN: u64 = 31_337;

    fn staker(n: u8) -> Address {
        Address::repeat_byte(n)
    }

    fn peer(n: u8, availability: Option<Availability>) -> PeerView {
        PeerView {
            staker: staker(n),
            worker: Address::repeat_byte(0x80 | n),
            url: format!("http://node-{n}"),
            stake: U256::from(1_000u64) * U256::from(10u64).pow(U256::from(18u64)),
            locked_now: U256::from(n),
            last_committed_period: 7,
            availability,
        }
    }

    fn seen(served: u64, wrong: u64, refused: u64, timed_out: u64, last_at: u64) -> Availability {
        Availability {
            served,
            wrong,
            refused,
            timed_out,
            invalid: 0,
            last_status: (refused > 0).then_some(503),
            last_failure: (wrong + refused + timed_out > 0).then(|| format!("at {last_at}")),
            last_at,
        }
    }

    /// Node `n`'s view: each `(staker, availability)` of `records`.
    fn view(n: u8, records: &[(u8, Option<Availability>)]) -> NetworkView {
        NetworkView {
            chain_id: CHAIN,
            node: staker(n),
            block: 100,
            current_period: 8,
            from_period: 5,
            peers: records.iter().map(|(m, a)| peer(*m, a.clone())).collect(),
        }
    }

    fn reachable(n: u8, view: Result<NetworkView, NodeError>) -> Observed {
        Observed {
            peer: peer(n, None),
            probe: Ok(()),
            view: Some(view),
        }
    }

    fn unreachable(n: u8, reason: &str) -> Observed {
        Observed {
            peer: peer(n, None),
            probe: Err(reason.into()),
            view: None,
        }
    }

    fn row(status: &NetworkStatus, n: u8) -> &StakerStatus {
        status
            .stakers
            .iter()
            .find(|s| s.staker == staker(n))
            .unwrap()
    }

    #[test]
    fn audits_are_summed_across_reporters() {
        let observed = [
            reachable(
                1,
                Ok(view(1, &[(2, Some(seen(5, 1, 0, 0, 10))), (3, None)])),
            ),
            reachable(
                2,
                Ok(view(
                    2,
                    &[
                        (1, Some(seen(4, 0, 0, 0, 9))),
                        (3, Some(seen(0, 0, 2, 1, 12))),
                    ],
                )),
            ),
            reachable(
                3,
                Ok(view(
                    3,
                    &[
                        (1, Some(seen(6, 0, 1, 0, 11))),
                        (2, Some(seen(2, 0, 0, 3, 8))),
                    ],
                )),
            ),
        ];
        let status = summarize(CHAIN, 100, 8, &observed);
        assert_eq!(status.stakers.len(), 3);
        assert_eq!(status.reporters.len(), 3);
        assert!(status.reporters.iter().all(|r| r.counted));

        let one = &row(&status, 1).audits;
        assert_eq!((one.reporters, one.totals.served, one.failed), (2, 10, 1));
        assert_eq!(one.totals.refused, 1);
        let two = &row(&status, 2).audits;
        assert_eq!((two.reporters, two.totals.served, two.failed), (2, 7, 4));
        assert_eq!((two.totals.wrong, two.totals.timed_out), (1, 3));
        // Node 1 has no record of 3 (`null`): only node 2 reported.
        let three = &row(&status, 3).audits;
        assert_eq!(
            (three.reporters, three.totals.served, three.failed),
            (1, 0, 3)
        );
        assert_eq!(three.totals.last_status, Some(503));
        assert_eq!(three.totals.last_failure.as_deref(), Some("at 12"));

        let first = &status.stakers[0];
        assert!(first.reachable && first.unreachable_reason.is_none());
        assert_eq!(first.stake, peer(1, None).stake);
        assert_eq!(first.url, "http://node-1");
    }

    #[test]
    fn a_nodes_own_entry_is_ignored() {
        // A node lists itself; whatever its entry says about itself is not an audit.
        let observed = [
            reachable(
                1,
                Ok(view(1, &[(1, Some(seen(99, 0, 0, 0, 1))), (2, None)])),
            ),
            reachable(
                2,
                Ok(view(
                    2,
                    &[
                        (1, Some(seen(3, 0, 0, 0, 1))),
                        (2, Some(seen(50, 0, 0, 0, 1))),
                    ],
                )),
            ),
        ];
        let status = summarize(CHAIN, 100, 8, &observed);
        let one = &row(&status, 1).audits;
        assert_eq!((one.reporters, one.totals.served), (1, 3));
        assert_eq!(row(&status, 2).audits, Audits::default());
    }

    #[test]
    fn unreachable_old_and_foreign_reporters_are_ignored() {
        let lie = Some(seen(1_000, 0, 0, 0, 1));
        let refused_404 = NodeError::Refused {
            status: 404,
            reason: "not found".into(),
            retry_after_secs: None,
        };
        let mut other_chain = view(5, &[(1, lie.clone())]);
        other_chain.chain_id = 1;
        let observed = [
            reachable(1, Ok(view(1, &[(2, Some(seen(2, 0, 0, 0, 1)))]))),
            // Answers /v1/node, then fails /v1/network.
            reachable(2, Err(NodeError::Unreachable("timed out".into()))),
            // An older version.
            reachable(3, Err(refused_404)),
            // Did not answer /v1/node as its record says: its view, if any, is not asked for,
            // and not counted if given.
            Observed {
                peer: peer(4, None),
                probe: Err("serves another staker".into()),
                view: Some(Ok(view(4, &[(1, lie.clone())]))),
            },
            reachable(5, Ok(other_chain)),
            // A view naming another node.
            reachable(6, Ok(view(7, &[(1, lie.clone())]))),
            unreachable(7, "unreachable"),
        ];
        let status = summarize(CHAIN, 100, 8, &observed);
        assert_eq!(row(&status, 1).audits, Audits::default());
        let two = &row(&status, 2).audits;
        assert_eq!((two.reporters, two.totals.served), (1, 2));

        let reporters: Vec<(Address, bool, Option<&str>)> = status
            .reporters
            .iter()
            .map(|r| (r.staker, r.counted, r.reason.as_deref()))
            .collect();
        assert_eq!(
            reporters,
            [
                (staker(1), true, None),
                (staker(2), false, Some("unreachable")),
                (
                    staker(3),
                    false,
                    Some("HTTP 404 (a version without /v1/network)")
                ),
                (staker(5), false, Some("serves chain 1")),
                (staker(6), false, Some("answers for another staker")),
            ]
        );
        assert_eq!(status.reporters[0].from_period, Some(5));
        assert_eq!(status.reporters[1].from_period, None);

        let four = row(&status, 4);
        assert!(!four.reachable);
        assert_eq!(
            four.unreachable_reason.as_deref(),
            Some("serves another staker")
        );
        assert_eq!(
            row(&status, 7).unreachable_reason.as_deref(),
            Some("unreachable")
        );
    }

    #[test]
    fn an_empty_network() {
        let status = summarize(CHAIN, 3, 0, &[]);
        assert!(status.stakers.is_empty() && status.reporters.is_empty());
        assert_eq!((status.chain_id, status.block), (CHAIN, 3));
    }

    #[test]
    fn hostile_counts_saturate() {
        let huge = Some(seen(u64::MAX, u64::MAX, 0, 0, 1));
        let observed = [
            reachable(1, Ok(view(1, &[(3, huge.clone())]))),
            reachable(2, Ok(view(2, &[(3, huge)]))),
            unreachable(3, "unreachable"),
        ];
        let three = summarize(CHAIN, 1, 1, &observed).stakers[2].audits.clone();
        assert_eq!((three.totals.served, three.failed), (u64::MAX, u64::MAX));
    }

    #[test]
    fn probes_compare_the_node_with_its_record() {
        let record = peer(1, None);
        let info = |staker: Address, worker: Address, chain_id: u64| {
            Ok(NodeInfo {
                staker,
                worker,
                umbral_public_key: String::new(),
                chain_id,
                version: "0.1.0".into(),
                max_capsules_per_request: 64,
            })
        };
        let check = |answer| probe_outcome(&record, CHAIN, &answer);
        assert_eq!(check(info(record.staker, record.worker, CHAIN)), Ok(()));
        assert_eq!(
            check(info(staker(2), record.worker, CHAIN)),
            Err("serves another staker".into())
        );
        assert_eq!(
            check(info(record.staker, staker(2), CHAIN)),
            Err("signs with another worker".into())
        );
        assert_eq!(
            check(info(record.staker, record.worker, 1)),
            Err("serves chain 1".into())
        );
        assert_eq!(
            check(Err(NodeError::Unreachable("connection refused".into()))),
            Err("unreachable".into())
        );
        assert_eq!(
            check(Err(NodeError::Refused {
                status: 503,
                reason: "busy".into(),
                retry_after_secs: None
            })),
            Err("HTTP 503".into())
        );
        assert_eq!(
            check(Err(NodeError::InvalidAnswer("eof".into()))),
            Err("invalid answer".into())
        );
    }

    #[test]
    fn the_json_shape() {
        let observed = [
            reachable(1, Ok(view(1, &[(2, Some(seen(5, 1, 0, 0, 10)))]))),
            unreachable(2, "HTTP 503"),
        ];
        let status = summarize(CHAIN, 100, 8, &observed);
        let json = serde_json::to_value(&status).unwrap();
        let two = &json["stakers"][1];
        assert_eq!(two["stake"], "1000000000000000000000");
        assert_eq!(two["lockedNow"], "2");
        assert_eq!(two["reachable"], false);
        assert_eq!(two["unreachableReason"], "HTTP 503");
        assert_eq!(two["lastCommittedPeriod"], 7);
        assert_eq!(two["audits"]["reporters"], 1);
        assert_eq!(two["audits"]["served"], 5);
        assert_eq!(two["audits"]["failed"], 1);
        assert_eq!(two["audits"]["timedOut"], 0);
        assert_eq!(
            json["stakers"][0]["unreachableReason"],
            serde_json::Value::Null
        );
        assert_eq!(json["reporters"][0]["fromPeriod"], 5);
        assert_eq!(json["currentPeriod"], 8);
        let back: NetworkStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }
}
