//! A node's URL and the pin of its TLS certificate.
//!
//! A node with a self-signed certificate (what `kms node init` makes) publishes, in its on-chain
//! node record, its URL with the SHA-256 of the certificate (DER) as the URL's fragment:
//!
//! ```text
//! https://node.example:9151#tls-sha256=5d2c…(64 hex digits)
//! ```
//!
//! A fragment is never sent to the server (RFC 3986, section 3.5): it is the client's alone, so
//! the pin travels wherever the URL does (the node record, the policy file) and a client that
//! reads it verifies the certificate against it instead of a certificate authority. A node with
//! a CA-issued certificate (what browsers need) publishes a plain `https://` URL; a devnet's
//! node may publish `http://`, which clients refuse unless told otherwise.

use sha2::{Digest, Sha256};

use crate::wire::WireError;

/// The fragment's key.
pub const PIN_KEY: &str = "tls-sha256";

/// The SHA-256 of a certificate's DER encoding.
pub type Fingerprint = [u8; 32];

/// The fingerprint of the certificate `der`.
pub fn fingerprint(der: &[u8]) -> Fingerprint {
    Sha256::digest(der).into()
}

/// `url` (any fragment dropped) pinned to `pin`.
pub fn with_pin(url: &str, pin: &Fingerprint) -> String {
    let base = url.split_once('#').map_or(url, |(base, _)| base);
    format!("{base}#{PIN_KEY}={}", alloy::primitives::hex::encode(pin))
}

/// A node URL taken apart: where to connect, and the pin if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUrl {
    /// The URL without its fragment (what requests go to).
    pub base: String,
    /// The certificate's pinned fingerprint.
    pub pin: Option<Fingerprint>,
}

/// Takes `url` apart. A fragment other than `tls-sha256=<64 hex digits>` is refused (a typo must
/// not silently turn pinning off), and so is a pin on a URL that is not `https://`.
pub fn parse_node_url(url: &str) -> Result<NodeUrl, WireError> {
    let err = |reason: String| WireError {
        field: "url".into(),
        reason: format!("{url:?}: {reason}"),
    };
    let Some((base, fragment)) = url.split_once('#') else {
        return Ok(NodeUrl {
            base: url.to_owned(),
            pin: None,
        });
    };
    let hex = fragment
        .strip_prefix(PIN_KEY)
        .and_then(|rest| rest.strip_prefix('='))
        .ok_or_else(|| {
            err(format!(
                "the fragment must be `{PIN_KEY}=<64 hex digits>` (the node's certificate pin)"
            ))
        })?;
    let pin = alloy::primitives::hex::decode(hex)
        .ok()
        .and_then(|bytes| Fingerprint::try_from(bytes.as_slice()).ok())
        .ok_or_else(|| err(format!("{PIN_KEY} must be 64 hex digits (a SHA-256)")))?;
    if !base
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
    {
        return Err(err("a certificate pin needs an https:// URL".into()));
    }
    Ok(NodeUrl {
        base: base.to_owned(),
        pin: Some(pin),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_pinned_url_round_trips() {
        let pin = fingerprint(b"a certificate");
        let url = with_pin("https://node.example:9151", &pin);
        assert_eq!(
            url,
            format!(
                "https://node.example:9151#tls-sha256={}",
                alloy::primitives::hex::encode(pin)
            )
        );
        let parsed = parse_node_url(&url).unwrap();
        assert_eq!(parsed.base, "https://node.example:9151");
        assert_eq!(parsed.pin, Some(pin));
        // Pinning again replaces the pin.
        assert_eq!(with_pin(&url, &pin), url);
    }

    #[test]
    fn unpinned_urls_pass_and_bad_fragments_are_refused() {
        let plain = parse_node_url("http://127.0.0.1:9151").unwrap();
        assert!(plain.pin.is_none());
        for bad in [
            "https://n:1#sha256=00",
            "https://n:1#tls-sha256=zz",
            "https://n:1#tls-sha256=0011",
            &with_pin("http://n:1", &[7; 32]),
        ] {
            assert!(parse_node_url(bad).is_err(), "{bad}");
        }
    }
}
