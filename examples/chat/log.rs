//! The room's shared log: a plain file of JSON lines that every member appends to and reads
//! from. It stands in for any relay (a server, a bucket, a gossip topic): the log is not trusted
//! with anything, since every entry is encrypted to the room's policy key and signed by its
//! sender, and readers check both.
//!
//! Each line is `{"from": NAME, "session": BASE64}` (a session record, published before the
//! session's first message) or `{"from": NAME, "message": BASE64}`. `from` is what the writer
//! claims, for display only: readers name the sender from the signature's key.

use std::{
    fs::OpenOptions,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use kms_crypto::wire::{decode_b64, encode_b64};
use serde::{Deserialize, Serialize};

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    /// Who the writer says it is (unauthenticated).
    pub from: String,
    /// A session record (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// A message (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What a line holds, decoded.
pub(crate) enum Record {
    /// A session record's bytes.
    Session(Vec<u8>),
    /// A message's bytes.
    Message(Vec<u8>),
}

/// The log file.
pub(crate) struct Log {
    path: PathBuf,
}

impl Log {
    /// A new, empty log at `path` (an old one is replaced).
    pub(crate) fn create(path: &Path) -> Result<Self> {
        std::fs::write(path, b"").with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Appends a session record or a message, as `from`.
    pub(crate) fn append(&self, from: &str, record: &Record) -> Result<()> {
        let (session, message) = match record {
            Record::Session(bytes) => (Some(encode_b64(bytes)), None),
            Record::Message(bytes) => (None, Some(encode_b64(bytes))),
        };
        let entry = Entry {
            from: from.to_owned(),
            session,
            message,
        };
        let mut line = serde_json::to_string(&entry)?;
        line.push('\n');
        // One write of a whole line in append mode: concurrent writers do not interleave lines.
        OpenOptions::new()
            .append(true)
            .open(&self.path)
            .and_then(|mut file| file.write_all(line.as_bytes()))
            .with_context(|| format!("appending to {}", self.path.display()))
    }

    /// Every line from line `from` (0-based) on, decoded; a line that is not an entry is
    /// returned as its error, so that the reader can show it as refused.
    pub(crate) fn read_from(&self, from: usize) -> Result<Vec<(usize, String, Result<Record>)>> {
        let text = std::fs::read_to_string(&self.path)
            .with_context(|| format!("reading {}", self.path.display()))?;
        Ok(text
            .lines()
            .enumerate()
            .skip(from)
            .map(|(number, line)| {
                let decoded = serde_json::from_str::<Entry>(line)
                    .context("not a log entry")
                    .and_then(|entry| {
                        let record = match (entry.session, entry.message) {
                            (Some(session), None) => Record::Session(decode_b64("session", &session)?),
                            (None, Some(message)) => Record::Message(decode_b64("message", &message)?),
                            _ => anyhow::bail!("an entry holds a session or a message"),
                        };
                        Ok((entry.from, record))
                    });
                match decoded {
                    Ok((from, record)) => (number, from, Ok(record)),
                    Err(e) => (number, String::from("?"), Err(e)),
                }
            })
            .collect())
    }
}
