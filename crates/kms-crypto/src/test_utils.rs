//! Test support (feature `test-utils`): the Umbral keys of one policy, as the tests and
//! benchmarks of every crate make them. Nothing here ships in a binary.

use alloy::primitives::Address;
use umbral_pre::{generate_kfrags, PublicKey, SecretKey, Signer, VerifiedKeyFrag};

use crate::wire::{KfragUpload, SealError};

/// Alice's delegating key, her kfrag signer and Bob's receiving key for one policy.
#[derive(Clone)]
pub struct PolicyKeys {
    /// Alice's delegating secret key (the data is encrypted to its public key).
    pub delegating: SecretKey,
    /// The kfrag signer's secret key (the policy's `kfragSigner` is its Ethereum address).
    pub signer: SecretKey,
    /// Bob's receiving secret key.
    pub bob: SecretKey,
}

impl std::fmt::Debug for PolicyKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyKeys")
            .field("delegating", &self.delegating.public_key())
            .field("signer", &self.signer_address())
            .field("bob", &self.bob.public_key())
            .finish()
    }
}

impl PolicyKeys {
    /// Fresh random keys.
    pub fn random() -> Self {
        Self {
            delegating: SecretKey::random(),
            signer: SecretKey::random(),
            bob: SecretKey::random(),
        }
    }

    /// The kfrag signer, as Umbral signs with it.
    pub fn signer(&self) -> Signer {
        Signer::new(self.signer.clone())
    }

    /// The kfrag signer's Ethereum address: the policy's `kfragSigner` on chain.
    pub fn signer_address(&self) -> Address {
        crate::ethereum_address(&self.signer.public_key())
    }

    /// `shares` kfrags of which `threshold` re-encrypt, signed for both keys (as Alice makes
    /// them: the node refuses kfrags that do not commit to the delegating and receiving keys).
    pub fn kfrags(&self, threshold: usize, shares: usize) -> Vec<VerifiedKeyFrag> {
        generate_kfrags(
            &self.delegating,
            &self.bob.public_key(),
            &self.signer(),
            threshold,
            shares,
            true,
            true,
        )
        .into_vec()
    }

    /// `kfrag` sealed for the node of `staker` with Umbral key `node_key`, for `policy_id`.
    pub fn seal(
        &self,
        kfrag: &VerifiedKeyFrag,
        node_key: &PublicKey,
        staker: Address,
        policy_id: [u8; 16],
    ) -> Result<KfragUpload, SealError> {
        KfragUpload::seal(
            kfrag,
            node_key,
            staker,
            policy_id,
            (&self.delegating.public_key(), &self.bob.public_key()),
            &self.signer(),
        )
    }

    /// One sealed kfrag of policy `policy_id` (`threshold` of them needed) for each node
    /// (staker, Umbral key), in order.
    pub fn uploads(
        &self,
        policy_id: [u8; 16],
        threshold: usize,
        nodes: &[(Address, PublicKey)],
    ) -> Result<Vec<KfragUpload>, SealError> {
        let kfrags = self.kfrags(threshold, nodes.len());
        nodes
            .iter()
            .zip(&kfrags)
            .map(|((staker, key), kfrag)| self.seal(kfrag, key, *staker, policy_id))
            .collect()
    }
}
