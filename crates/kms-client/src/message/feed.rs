//! A feed: session records and messages as JSON lines, the text form `kms message seal` writes
//! and `kms message read` reads (and the chat example's log). Any transport that carries lines
//! carries a feed; nothing in it is trusted, since a reader checks every record and message.
//!
//! Each line is one JSON object with exactly one of `session` (a `KMSSES01` record) or
//! `message` (a message), standard base64 with padding, and optionally `from`, a name the writer
//! claims for display only (the reader names the sender from the signature's key):
//!
//! ```text
//! {"session":"S01TU0VTMDEC..."}
//! {"message":"AQ3k...","from":"bob"}
//! ```

use serde::{Deserialize, Serialize};

use super::{MessageError, Sealed};

/// One item of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    /// A session record's bytes (published before the session's first message).
    Session(Vec<u8>),
    /// A message's bytes.
    Message(Vec<u8>),
}

/// A line as it is written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
}

impl FeedItem {
    /// The items of one sealed message: its session record first, when it opened a session.
    pub fn of_sealed(sealed: Sealed) -> impl Iterator<Item = FeedItem> {
        sealed
            .session
            .map(FeedItem::Session)
            .into_iter()
            .chain(std::iter::once(FeedItem::Message(sealed.message)))
    }

    /// The item as one JSON line (no newline), with the writer's claimed name if any.
    pub fn to_line(&self, from: Option<&str>) -> String {
        let encode = |bytes: &[u8]| Some(kms_crypto::wire::encode_b64(bytes));
        let line = match self {
            Self::Session(bytes) => Line {
                session: encode(bytes),
                message: None,
                from: from.map(str::to_owned),
            },
            Self::Message(bytes) => Line {
                session: None,
                message: encode(bytes),
                from: from.map(str::to_owned),
            },
        };
        // A struct of strings always serializes.
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// Parses one line: the item and the claimed name. A line that is not a feed line is
    /// [`MessageError::BadFeedLine`], saying why.
    pub fn parse_line(line: &str) -> Result<(Self, Option<String>), MessageError> {
        let parsed: Line = serde_json::from_str(line.trim_end())
            .map_err(|e| MessageError::BadFeedLine(format!("not JSON of a feed line: {e}")))?;
        let decode = |field: &str, value: &str| {
            kms_crypto::wire::decode_b64(field, value)
                .map_err(|e| MessageError::BadFeedLine(e.to_string()))
        };
        let item = match (parsed.session, parsed.message) {
            (Some(session), None) => Self::Session(decode("session", &session)?),
            (None, Some(message)) => Self::Message(decode("message", &message)?),
            _ => {
                return Err(MessageError::BadFeedLine(
                    "a feed line holds exactly one of `session` and `message`".into(),
                ))
            }
        };
        Ok((item, parsed.from))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn lines_round_trip_and_bad_lines_say_why() {
        for item in [FeedItem::Session(vec![1, 2, 3]), FeedItem::Message(vec![])] {
            let line = item.to_line(Some("bob"));
            assert_eq!(
                FeedItem::parse_line(&line).unwrap(),
                (item.clone(), Some("bob".into()))
            );
            assert_eq!(
                FeedItem::parse_line(&item.to_line(None)).unwrap(),
                (item, None)
            );
        }
        assert_eq!(
            FeedItem::Message(b"hi".to_vec()).to_line(None),
            r#"{"message":"aGk="}"#
        );
        for (line, why) in [
            ("", "not JSON"),
            ("{}", "exactly one"),
            (r#"{"session":"AA==","message":"AA=="}"#, "exactly one"),
            (r#"{"message":"not base64!"}"#, "base64"),
            (r#"{"message":"AA==","extra":1}"#, "unknown field"),
        ] {
            let err = FeedItem::parse_line(line).unwrap_err().to_string();
            assert!(err.contains(why), "{line}: {err}");
        }
    }
}
