//! The KMS client library, for the `kms` CLI and any other Rust client (see `docs/client.md`).
//!
//! - Enrico: [`stream`] encrypts a payload of any size to a policy's public key, in constant
//!   memory.
//! - Enrico, small messages: [`MessageSender`] seals chat lines or sensor readings in signed
//!   sessions whose key one capsule carries; Bob's [`Inbox`] opens them, the sessions' keys with
//!   one retrieval ([`Client::open_sessions`]).
//! - Alice: [`Client::plan_grant`] then [`Client::execute_grant`] create a policy on chain and
//!   hand its nodes their kfrags; [`Client::revoke`] and [`Client::refund`] get money back. The
//!   result is a [`PolicyFile`] for Bob. [`revocation`]: she revokes with no transaction by a
//!   signed order the nodes obey at once, and anyone settles it on chain.
//! - Bob: [`Client::retrieve`] asks the policy's nodes for capsule fragments and verifies each;
//!   [`stream::open_data_key_reencrypted`] and [`stream::decrypt_stream_with_key`] decrypt. A
//!   node caught with a wrong signed cfrag leaves a [`Fault`] that [`Client::report`] submits to
//!   the Adjudicator.
//!
//! Modules: [`stream`] (file format), [`message`] (small messages), [`sender`] (Enrico's sender key, the senders Bob trusts), [`policy`] (policy file), [`sampling`] (stake-weighted
//! node choice), [`grant`] (Alice), [`retrieve`] (Bob), [`fault`] (evidence files), [`http`]
//! (the nodes' API client), [`chain`] (transactions and contract errors), [`network`] (the
//! stakers, whether their nodes answer, and what the nodes' audits saw).

pub mod chain;
pub mod client;
pub mod fault;
pub mod grant;
pub mod http;
pub mod message;
pub mod network;
pub mod policy;
pub mod retrieve;
pub mod revocation;
pub mod sampling;
pub mod sender;
pub mod stream;

pub use chain::ChainError;
pub use client::{Client, ClientError};
pub use fault::{Fault, FaultError, ReportOutcome};
pub use grant::{
    Extended, GrantError, GrantOutcome, GrantPlan, GrantRequest, NodeHead, Refunded, UploadReport,
};
pub use http::{HttpConfig, NodeClient, NodeError};
pub use message::{
    Inbox, MessageError, MessageSender, Opened, Sealed, SessionId, SessionLimits, SessionRecord,
    SessionsOpened,
};
pub use network::{network_status, NetworkStatus, StakerStatus};
pub use policy::{PolicyFile, PolicyFileError, PolicyNode};
pub use retrieve::{
    AnswerTerms, NodeFailure, NodeOutcome, NodeReport, ReportError, Retrieval, RetrieveError,
    RetrieveOptions,
};
pub use revocation::{OrderDelivery, OrderError, RevocationOrder};
pub use sampling::{SamplingError, WeightedDraw};
pub use sender::{SenderKey, TrustedSenders};
pub use stream::{DataKey, DecryptOptions, EncryptOptions, Header, StreamError, StreamStats};

/// Re-export of the umbral-pre version the formats are tied to.
pub use umbral_pre;
