//! The room's shared log: a plain file in the feed format of `kms_client::message::feed` (JSON
//! lines, one session record or message each, with the writer's claimed name) that every member
//! appends to and reads from. It stands in for any relay (a server, a bucket, a gossip topic):
//! the log is not trusted with anything, since every entry is encrypted to the room's policy key
//! and signed by its sender, and readers check both. The claimed name is for display only:
//! readers name the sender from the signature's key.

use std::{
    fs::OpenOptions,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use kms_client::message::{FeedItem, MessageError};

/// A line read: its number (0-based), the name it claims, and its item or why it is not one.
pub(crate) type Line = (usize, String, Result<FeedItem, MessageError>);

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
    pub(crate) fn append(&self, from: &str, item: &FeedItem) -> Result<()> {
        let mut line = item.to_line(Some(from));
        line.push('\n');
        // One write of a whole line in append mode: concurrent writers do not interleave lines.
        OpenOptions::new()
            .append(true)
            .open(&self.path)
            .and_then(|mut file| file.write_all(line.as_bytes()))
            .with_context(|| format!("appending to {}", self.path.display()))
    }

    /// Every line from line `from` (0-based) on, decoded, with the name it claims; a line that
    /// is not a feed line is returned as its error, so that the reader can show it as refused.
    pub(crate) fn read_from(&self, from: usize) -> Result<Vec<Line>> {
        let text = std::fs::read_to_string(&self.path)
            .with_context(|| format!("reading {}", self.path.display()))?;
        Ok(text
            .lines()
            .enumerate()
            .skip(from)
            .map(|(number, line)| match FeedItem::parse_line(line) {
                Ok((item, claimed)) => (number, claimed.unwrap_or_else(|| "?".into()), Ok(item)),
                Err(e) => (number, String::from("?"), Err(e)),
            })
            .collect())
    }
}
