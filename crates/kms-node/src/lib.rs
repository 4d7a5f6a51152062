//! The KMS miner daemon (see `docs/node.md`).
//!
//! - [`config`]: the TOML configuration `kms node init` writes.
//! - [`store`]: the embedded ACID store (redb): kfrags, confirmed policies, the follower's
//!   cursor, the duties' records.
//! - [`directory`]: the [`PolicyDirectory`] the API asks about
//!   policies, and its implementation against the `PolicyManager` contract.
//! - [`api`]: the axum router.
//! - [`server`]: serves the router over TCP with a header timeout and a connection limit.
//! - `guard`: the API's replay guard (per-policy quotas), per-client rate limit and cache of
//!   unknown policies.
//! - [`follower`]: applies confirmed `PolicyManager` events to the store from a durable cursor,
//!   and keeps the [`head`] view: the head and its unconfirmed revocations, which the API serves
//!   on without a chain call.
//! - [`tx`]: exactly-once duty transactions (recorded before broadcast).
//! - [`duties`]: commit, mint, withdraw fees, prune kfrags.
//! - [`wakeup`]: when the daemon's services (follower, duties, block notifier) run again.
//! - [`daemon`]: starts and stops all of it; [`settings`]: what it runs with and its errors.
//! - `test_utils` (feature `test-utils`): a policy directory without a chain, for tests.

pub mod api;
pub mod audit;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod directory;
pub mod duties;
pub mod evidence;
pub mod follower;
mod guard;
pub mod head;
pub mod server;
pub mod settings;
pub mod standing;
pub mod store;
#[cfg(feature = "test-utils")]
pub mod test_utils;
pub mod tls;
pub mod tx;
pub mod wakeup;
pub use kms_crypto::wire;

pub use api::{router, ApiState, Behaviour, Limits, NodeIdentity};
pub use clock::ChainClock;
pub use config::{ConfigError, NodeConfig};
pub use daemon::{start, DaemonError, RunningNode, Settings};
pub use directory::{Arrangement, ChainDirectory, DirectoryError, PolicyDirectory};
pub use duties::{Duties, DutyConfig, FeeThreshold};
pub use follower::{Follower, FollowerConfig, Step};
pub use head::{HeadBlock, HeadView, NotFresh};
pub use standing::{Standing, StandingView};
pub use store::{Cursor, DutyRecord, PolicyRecord, PutOutcome, Store, StoreError, StoredKfrag};
pub use tx::{TxError, TxSender};
