//! The KMS miner daemon, first slice: the kfrag store, the chain-backed policy checks and the
//! HTTP API that Alice uploads kfrags to and Bob asks for re-encryptions (see `docs/node.md`).
//!
//! - [`store`]: the embedded ACID store (redb).
//! - [`directory`]: the [`PolicyDirectory`](directory::PolicyDirectory) the API asks about
//!   policies, and its implementation against the `PolicyManager` contract.
//! - [`api`]: the axum router.

pub mod api;
pub mod directory;
pub mod store;
pub use kms_crypto::wire;

pub use api::{router, ApiState, Limits, NodeIdentity};
pub use directory::{Arrangement, ChainDirectory, DirectoryError, PolicyDirectory};
pub use store::{PutOutcome, Store, StoreError, StoredKfrag};
