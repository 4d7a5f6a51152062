//! What every chain command shares: sending a transaction with a spinner and a decoded revert,
//! amounts and output (the connection is `opts::Chain`).

use std::time::Duration;

use alloy::{
    contract::{CallBuilder, CallDecoder},
    network::Ethereum,
    primitives::{utils::format_units, utils::parse_units, TxHash, U256},
    providers::Provider,
};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use kms_client::{
    chain::{any_revert, transact},
    ChainError,
};

use crate::error::CliError;

/// The latest block's timestamp: the chain's "now" (a devnet's clock may be ahead of the local
/// one).
pub async fn chain_now<P: Provider>(provider: &P) -> Result<u64> {
    Ok(provider
        .get_block_by_number(Default::default())
        .await?
        .context("the chain has no latest block")?
        .header
        .timestamp)
}

/// Simulates `call` (so a revert shows its custom error and nothing is sent), sends it, and
/// waits for the receipt with a spinner. Returns the transaction hash.
pub async fn send<P: Provider, D: CallDecoder>(
    action: &str,
    call: CallBuilder<P, D, Ethereum>,
) -> Result<TxHash> {
    let spinner = spinner(&format!("{action}: waiting for the receipt"));
    let result = transact(action, call, any_revert, Duration::from_secs(120)).await;
    spinner.finish_and_clear();
    let receipt = result.map_err(|e| match e {
        ChainError::Reverted { reason, .. } => CliError::Reverted {
            action: action.to_owned(),
            reason,
        }
        .into(),
        e @ ChainError::Failed { .. } => CliError::Reverted {
            action: action.to_owned(),
            reason: e.to_string(),
        }
        .into(),
        e => anyhow::Error::new(e),
    })?;
    eprintln!("{action}: ok ({})", receipt.transaction_hash);
    Ok(receipt.transaction_hash)
}

/// A spinner on stderr (hidden when stderr is not a terminal).
pub fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Parses a token amount in KMS (18 decimals): `15000`, `0.5`.
pub fn parse_tokens(amount: &str) -> Result<U256> {
    let value = parse_units(amount, 18)
        .with_context(|| format!("{amount:?} is not an amount of KMS (e.g. 15000 or 0.5)"))?;
    Ok(value.get_absolute())
}

/// Formats token units as KMS.
pub fn format_tokens(units: U256) -> String {
    format_units(units, 18).unwrap_or_else(|_| units.to_string())
}

/// Formats wei as ETH.
pub fn format_eth(wei: U256) -> String {
    format_units(wei, 18).unwrap_or_else(|_| wei.to_string())
}

/// Parses a fee rate in wei, or with a unit: `1gwei`, `0.001ether`.
pub fn parse_wei(value: &str) -> Result<U256> {
    let value = value.trim();
    for (suffix, decimals) in [("ether", 18u8), ("eth", 18), ("gwei", 9), ("wei", 0)] {
        if let Some(number) = value.strip_suffix(suffix) {
            return Ok(parse_units(number.trim(), decimals)
                .with_context(|| format!("{value:?} is not an amount of {suffix}"))?
                .get_absolute());
        }
    }
    value
        .parse::<U256>()
        .with_context(|| format!("{value:?} is not an amount of wei (e.g. 1000000000, 1gwei)"))
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
