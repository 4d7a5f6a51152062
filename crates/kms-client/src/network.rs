//! The network as the chain lists it: every staker with a node record, its stake, worker, URL and
//! last commitment. Read by `kms network status` and by the nodes for `GET /v1/network`.

use alloy::{eips::BlockId, primitives::U256, providers::Provider};
use futures_util::{stream, StreamExt, TryStreamExt};
use kms_contracts::Deployment;
use kms_crypto::wire::PeerView;

use crate::chain::ChainError;

/// Stakers read per `getNodeRecords` call.
const PAGE: u64 = 100;

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
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < count {
        records.extend(
            escrow
                .getNodeRecords(U256::from(offset), U256::from(PAGE))
                .block(at)
                .call()
                .await
                .map_err(|e| ChainError::rpc("reading the node records", e))?,
        );
        offset += PAGE;
    }
    let escrow = &escrow;
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
