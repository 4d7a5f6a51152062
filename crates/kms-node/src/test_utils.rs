//! Test support (feature `test-utils`): a [`PolicyDirectory`] without a chain, for the API's
//! tests and benchmarks, and the [`Settings`] of a node on a test chain. Nothing here ships in a
//! binary.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, MutexGuard, PoisonError,
    },
};

use alloy::primitives::Address;

use crate::{
    audit::AuditConfig,
    directory::{Arrangement, DirectoryError, PolicyDirectory},
    Behaviour, DutyConfig, Limits, Settings,
};

/// The settings of a node on `chain` for its dev accounts `staker` and `worker`, its store at
/// `store_path`: any free port of 127.0.0.1, acting at depth 0, polling every 100 ms, its Umbral
/// key derived from the staker's index, honest, and **audits off** (a test that wants them sets
/// `duties.audit`). Callers change what their test needs with `Settings { .., ..settings }`.
pub fn local_settings(
    chain: &kms_contracts::devchain::DevChain,
    staker: usize,
    worker: usize,
    store_path: std::path::PathBuf,
) -> Result<Settings, kms_contracts::devchain::DevChainError> {
    let seed = u8::try_from(staker).unwrap_or(u8::MAX);
    Ok(Settings {
        rpc_url: chain.endpoint_url().to_string(),
        deployment: chain.deployment().clone(),
        staker: chain.address(staker)?,
        worker: chain.signer(worker)?,
        umbral: kms_crypto::keys::MasterSecret::from_seed([seed; 32]).node_key(),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        public_url: None,
        store_path,
        confirmations: 0,
        poll_interval: std::time::Duration::from_millis(100),
        max_log_range: 1000,
        duties: DutyConfig {
            audit: AuditConfig {
                budget_per_period: alloy::primitives::U256::ZERO,
                ..AuditConfig::default()
            },
            ..DutyConfig::default()
        },
        limits: Limits::default(),
        behaviour: Behaviour::Honest,
    })
}

/// A policy as the chain would tell it.
#[derive(Debug, Clone)]
pub struct FakePolicy {
    /// Its kfrag signer.
    pub signer: Address,
    /// Its nodes and end.
    pub arrangement: Arrangement,
    /// Whether it is live (not revoked).
    pub active: bool,
}

/// The chain, as a map the test edits. Empty by default: it knows no policy.
#[derive(Debug, Default)]
pub struct FakeDirectory {
    policies: Mutex<HashMap<[u8; 16], FakePolicy>>,
    /// `kfrag_signer` calls (each an `eth_call` on a real chain).
    signer_calls: AtomicUsize,
    /// When set, every call fails with this error text (the RPC endpoint is down).
    failure: Mutex<Option<String>>,
}

/// A test's lock: a panic elsewhere in the test must not hide its own failure behind a poison.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeDirectory {
    /// A chain on which `policy_id` is `policy`.
    pub fn with(policy_id: [u8; 16], policy: FakePolicy) -> Self {
        let directory = Self::default();
        directory.insert(policy_id, policy);
        directory
    }

    /// Puts `policy` on the chain as `policy_id` (replacing any).
    pub fn insert(&self, policy_id: [u8; 16], policy: FakePolicy) {
        lock(&self.policies).insert(policy_id, policy);
    }

    /// Revokes (`false`) or restores policy `policy_id`; a no-op for an unknown policy.
    pub fn set_active(&self, policy_id: [u8; 16], active: bool) {
        if let Some(policy) = lock(&self.policies).get_mut(&policy_id) {
            policy.active = active;
        }
    }

    /// From now on every call fails with `text` (`None`: the chain answers again).
    pub fn fail_with(&self, text: Option<String>) {
        *lock(&self.failure) = text;
    }

    /// How many times the kfrag signer was asked.
    pub fn signer_calls(&self) -> usize {
        self.signer_calls.load(Ordering::SeqCst)
    }

    fn check_up(&self) -> Result<(), DirectoryError> {
        match lock(&self.failure).clone() {
            Some(text) => Err(DirectoryError(text)),
            None => Ok(()),
        }
    }
}

impl PolicyDirectory for FakeDirectory {
    async fn kfrag_signer(&self, policy_id: [u8; 16]) -> Result<Option<Address>, DirectoryError> {
        self.signer_calls.fetch_add(1, Ordering::SeqCst);
        self.check_up()?;
        Ok(lock(&self.policies).get(&policy_id).map(|p| p.signer))
    }

    async fn arrangement(
        &self,
        policy_id: [u8; 16],
    ) -> Result<Option<Arrangement>, DirectoryError> {
        self.check_up()?;
        Ok(lock(&self.policies)
            .get(&policy_id)
            .map(|p| p.arrangement.clone()))
    }

    async fn is_active(
        &self,
        policy_id: [u8; 16],
        node: Address,
        nodes: &[Address],
    ) -> Result<bool, DirectoryError> {
        self.check_up()?;
        Ok(lock(&self.policies)
            .get(&policy_id)
            .is_some_and(|p| p.active && p.arrangement.nodes == nodes && nodes.contains(&node)))
    }
}
