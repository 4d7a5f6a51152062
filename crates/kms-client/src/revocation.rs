//! Signed revocation orders, the client's side (`docs/client.md#signed-revocations`).
//!
//! Alice revokes without a transaction: [`sign_order`] signs an order with the policy owner's key
//! (EIP-712, so a wallet can sign it too) and [`send_order`] hands it to the policy's nodes, which
//! refuse the policy from their answer on, with no block mined. The refund follows whenever
//! someone carries an order out on chain: Alice herself with a later `revoke`, or anyone with
//! [`Client::fetch_orders`] (the nodes hand their orders to anyone) and [`Client::settle_order`]
//! (`PolicyManager.revokeBySignature`, which refunds the owner, never the sender).

use alloy::{
    primitives::{Address, FixedBytes},
    providers::Provider,
    signers::Signer,
};
use futures_util::future::join_all;
use kms_contracts::PolicyManager;
pub use kms_crypto::revocation::{
    OrderDomain, RevocationError, RevocationOrder, RevocationOrderBody,
};

use crate::{
    chain::{event_of, policy_manager_revert, transact, ChainError},
    grant::Refunded,
    http::{NodeClient, NodeError},
    policy::PolicyFile,
    Client,
};

/// An order that cannot be signed.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The key is not the policy's owner: nodes and the contract would refuse its order.
    #[error(
        "the key signs as {signer}, but the policy's owner is {owner}: sign with the owner's key"
    )]
    NotOwner {
        /// The key's address.
        signer: Address,
        /// The policy's owner.
        owner: Address,
    },
    /// The node is not one of the policy's.
    #[error("{node} is not one of the policy's nodes ({nodes})")]
    NotInPolicy {
        /// The node asked for.
        node: Address,
        /// The policy's nodes, comma-separated.
        nodes: String,
    },
    /// The signer failed.
    #[error(transparent)]
    Sign(#[from] RevocationError),
}

/// The EIP-712 domain of the policy's orders: its chain and `PolicyManager`.
pub fn order_domain(policy: &PolicyFile) -> OrderDomain {
    OrderDomain {
        chain_id: policy.chain_id,
        policy_manager: policy.policy_manager,
    }
}

/// Signs, with `owner` (the policy owner's key), an order revoking `node`'s arrangement in the
/// policy, or the whole policy (`None`), that may be carried out on chain until `deadline`
/// (Unix seconds). Nothing is sent.
pub async fn sign_order<S: Signer + ?Sized>(
    policy: &PolicyFile,
    owner: &S,
    node: Option<Address>,
    deadline: u64,
) -> Result<RevocationOrder, OrderError> {
    if owner.address() != policy.owner {
        return Err(OrderError::NotOwner {
            signer: owner.address(),
            owner: policy.owner,
        });
    }
    if let Some(node) = node {
        if !policy.nodes.iter().any(|n| n.staker == node) {
            return Err(OrderError::NotInPolicy {
                node,
                nodes: policy.staker_list(),
            });
        }
    }
    Ok(RevocationOrder::sign(
        owner,
        order_domain(policy),
        policy.policy_id,
        node.unwrap_or(Address::ZERO),
        deadline,
    )
    .await?)
}

/// What one node answered to an order ([`send_order`]).
#[derive(Debug)]
pub struct OrderDelivery {
    /// The node's staker.
    pub staker: Address,
    /// Its URL.
    pub url: String,
    /// Whether it kept the order now (`Ok(false)`: it held it already), or why not.
    pub outcome: Result<bool, NodeError>,
}

impl OrderDelivery {
    /// Whether the node holds the order, so refuses the policy.
    pub fn refuses(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// Sends `order` to every node of `policy` it covers (all of them, or the one it names), at
/// once. Each node that answers refuses the policy from that answer on; no transaction, no block.
pub async fn send_order(
    nodes: &NodeClient,
    policy: &PolicyFile,
    order: &RevocationOrder,
) -> Vec<OrderDelivery> {
    let body = RevocationOrderBody::from(order);
    let sends = policy
        .nodes
        .iter()
        .filter(|node| order.covers(node.staker))
        .map(|node| {
            let body = &body;
            async move {
                OrderDelivery {
                    staker: node.staker,
                    url: node.url.clone(),
                    outcome: nodes.send_revocation_order(&node.url, body).await,
                }
            }
        });
    join_all(sends).await
}

impl<P: Provider> Client<P> {
    /// The owner's orders for `policy` that its nodes keep (`GET /v1/policies/{id}/revocation`),
    /// each signed by the policy file's owner in the policy's domain (others are dropped: the
    /// contract would refuse them), without repeats, the whole-policy ones first, then by
    /// latest deadline. Nodes that keep none or do not answer are skipped.
    pub async fn fetch_orders(&self, policy: &PolicyFile) -> Vec<RevocationOrder> {
        let domain = order_domain(policy);
        let answers = join_all(
            policy
                .nodes
                .iter()
                .map(|node| self.nodes.revocation_orders(&node.url, policy.policy_id)),
        )
        .await;
        let mut orders: Vec<RevocationOrder> = Vec::new();
        for (node, answer) in policy.nodes.iter().zip(answers) {
            let Ok(answer) = answer else { continue };
            for body in &answer.orders {
                let Ok(order) = body.decode() else {
                    tracing::warn!(node = %node.staker, "undecodable revocation order skipped");
                    continue;
                };
                let by_owner = order
                    .signer(domain)
                    .is_ok_and(|signer| signer == policy.owner);
                if order.policy_id == policy.policy_id && by_owner && !orders.contains(&order) {
                    orders.push(order);
                }
            }
        }
        orders.sort_by_key(|o| (!o.is_whole_policy(), std::cmp::Reverse(o.deadline)));
        orders
    }

    /// Carries `order` out on chain (`revokeBySignature`), from this client's account, whoever
    /// it is: the refund goes to the policy's owner. The nodes then follow the revocation as
    /// they follow the owner's own.
    pub async fn settle_order(
        &self,
        policy: &PolicyFile,
        order: &RevocationOrder,
    ) -> Result<Refunded, ChainError> {
        self.check_policy_home(policy.chain_id, policy.policy_manager)?;
        let manager = self.deployment.policy_manager(&self.provider);
        let call = manager.revokeBySignature(
            FixedBytes(order.policy_id),
            order.node,
            order.deadline,
            policy.stakers(),
            order.signature.to_vec().into(),
        );
        let what = "carrying out the signed revocation order";
        let receipt = transact(what, call, policy_manager_revert, self.receipt_timeout).await?;
        let refund = if order.is_whole_policy() {
            event_of::<PolicyManager::PolicyRevoked>(what, &receipt)?.refund
        } else {
            event_of::<PolicyManager::ArrangementRevoked>(what, &receipt)?.refund
        };
        Ok(Refunded::of(&receipt, refund))
    }
}
