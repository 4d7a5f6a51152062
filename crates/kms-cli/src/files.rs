//! Files the commands read and write: the Umbral key, outputs written whole or not at all, and
//! the progress bar of a long read.

use std::{
    io::{BufWriter, IsTerminal, Write},
    path::Path,
};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use kms_crypto::keys::MasterSecret;

/// The Umbral master secret at `path`, with a hint when there is none.
pub fn load_master_secret(path: &Path) -> Result<MasterSecret> {
    MasterSecret::load(path).with_context(|| {
        format!(
            "cannot read the Umbral key file {} (create one with `kms keys new`)",
            path.display()
        )
    })
}

/// A progress bar of `what` on stderr, in bytes (a spinner without a `total`; hidden when
/// stderr is not a terminal).
pub fn progress(total: Option<u64>, what: &str) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_owned());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

/// Writes through `write` into a temporary file next to `path`, renamed over it only when
/// everything succeeded: a failed decryption leaves no partial plaintext. `-` is stdout.
pub fn write_atomically<T>(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<T>,
) -> Result<T> {
    if path.as_os_str() == "-" {
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let result = write(&mut out)?;
        out.flush()?;
        return Ok(result);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    let result = {
        let mut out = BufWriter::new(temp.as_file_mut());
        let result = write(&mut out)?;
        out.flush()?;
        result
    };
    temp.as_file().sync_all()?;
    temp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(result)
}
