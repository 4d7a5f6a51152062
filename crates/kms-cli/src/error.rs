//! The errors that decide how `kms` exits: each says its own exit code, so `main` asks the error
//! instead of recognizing every client error type.

use kms_client::{ChainError, GrantError, ReportError, RetrieveError};

/// An error with an exit code of its own; any other error exits with 1.
///
/// Exit codes: 1 for errors, 2 for usage (clap's own), 3 when a contract refused the
/// transaction, 4 when there are not enough nodes or valid cfrags, 78 (sysexits' `EX_CONFIG`)
/// when a node's configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A contract refused a transaction `kms` sent itself (exit code 3).
    #[error("{action}: {reason}")]
    Reverted {
        /// What was attempted.
        action: String,
        /// The decoded custom error.
        reason: String,
    },
    /// Not enough nodes or valid cfrags (exit code 4).
    #[error("{0}")]
    NotEnough(String),
    /// `kms node run` cannot use its configuration: the file, the keystore or its password, a
    /// key, the deployments file, the TLS files (exit code 78, `EX_CONFIG`). Starting again
    /// without a change fails the same way, so a service manager should not restart it; a failure
    /// that time may mend (the chain unreachable, the worker not bonded yet) exits with 1.
    #[error(transparent)]
    Config(anyhow::Error),
    /// A transaction or read of the client library (exit code 3 if a contract refused it).
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Granting a policy failed (exit code 3 if a contract refused it).
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// Retrieving failed (exit code 3 if a contract refused it).
    #[error(transparent)]
    Retrieve(#[from] RetrieveError),
    /// Reporting a fault failed (exit code 3 if a contract refused it, or the Adjudicator's
    /// state did before anything was sent).
    #[error(transparent)]
    Report(#[from] ReportError),
}

impl CliError {
    /// Whether a contract refused the transaction (or would have: the chain's state refused it
    /// before anything was sent).
    pub fn is_revert(&self) -> bool {
        let chain_revert =
            |e: &ChainError| matches!(e, ChainError::Reverted { .. } | ChainError::Failed { .. });
        match self {
            Self::Reverted { .. } => true,
            Self::NotEnough(_) | Self::Config(_) => false,
            Self::Chain(e)
            | Self::Grant(GrantError::Chain(e))
            | Self::Retrieve(RetrieveError::Chain(e))
            | Self::Report(ReportError::Chain(e)) => chain_revert(e),
            Self::Report(ReportError::AlreadyEvaluated(_)) => true,
            Self::Grant(_) | Self::Retrieve(_) | Self::Report(_) => false,
        }
    }

    /// Whether there were not enough nodes or valid cfrags.
    pub fn is_not_enough(&self) -> bool {
        matches!(self, Self::NotEnough(_))
    }

    /// The process's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        if self.is_revert() {
            3
        } else if self.is_not_enough() {
            4
        } else if matches!(self, Self::Config(_)) {
            EX_CONFIG
        } else {
            1
        }
    }
}

/// sysexits.h's "configuration error", which systemd units name in `RestartPreventExitStatus`.
pub const EX_CONFIG: u8 = 78;

/// The exit code for a failed command: the first [`CliError`] in the chain (under any context)
/// decides; 1 without one.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<CliError>())
        .map_or(1, CliError::exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_error_decides_the_exit_code() {
        let reverted = CliError::Reverted {
            action: "deposit".into(),
            reason: "InsufficientStake()".into(),
        };
        assert_eq!(exit_code(&anyhow::Error::new(reverted)), 3);
        let wrapped = Err::<(), _>(CliError::NotEnough("2 of 3".into())).context("retrieving");
        assert_eq!(wrapped.map_err(|e| exit_code(&e)), Err(4));
        let refused = CliError::from(ReportError::AlreadyEvaluated(Default::default()));
        assert_eq!(exit_code(&refused.into()), 3);
        let unreachable = CliError::from(ChainError::Rpc {
            what: "revoke".into(),
            reason: "connection refused".into(),
        });
        assert_eq!(exit_code(&unreachable.into()), 1);
        assert_eq!(exit_code(&anyhow::anyhow!("no such file")), 1);
        let config = CliError::Config(anyhow::anyhow!("no such file").context("reading node.toml"));
        assert_eq!(config.to_string(), "reading node.toml");
        assert_eq!(exit_code(&anyhow::Error::new(config)), EX_CONFIG);
    }
}
