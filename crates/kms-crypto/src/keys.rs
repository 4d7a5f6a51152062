//! Key files: the Umbral master secret and the Ethereum account's web3 keystore.
//!
//! - **Umbral key file**: JSON `{"version": 1, "kind": "kms-umbral-master-secret", "seed":
//!   "0x<32 bytes>"}`. The seed is umbral-pre's `SecretKeyFactory::from_secure_randomness` input;
//!   every Umbral key is derived from it by label (`make_key`), so one file backs any number of
//!   policies (Alice's delegating key per label, Bob's receiving key, a node's key under
//!   [`NODE_KEY_LABEL`]). The file is written `0600` and refused when group- or world-readable,
//!   as ssh does, because it is not password-encrypted.
//! - **Ethereum keystore**: the web3 secret-storage format (scrypt + AES-128-CTR) that geth,
//!   foundry's `cast wallet` and alloy read, written `0600`.
//! - **Password files**: the first line is the keystore's password; refused, like key files,
//!   when group- or world-readable.
//!
//! Files are never overwritten: creating a key where one exists is an error, so a slip cannot
//! destroy a key that stakes or policies depend on. A key file is created `0600` from the start
//! (never with a wider mode for a moment) and appears whole or not at all.
//!
//! Secrets read or written here (the master seed, key-file contents, passwords, decrypted
//! keystore keys) are zeroed in memory when dropped.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
};

use alloy::{
    primitives::{hex, B256},
    signers::local::{LocalSignerError, PrivateKeySigner},
};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use umbral_pre::{SecretKey, SecretKeyFactory};
use zeroize::Zeroize;
/// Re-exported for callers holding passwords ([`read_password_file`]).
pub use zeroize::Zeroizing;

/// The label a node's Umbral key is derived under from its master secret.
pub const NODE_KEY_LABEL: &[u8] = b"KMS_NODE_KEY_V1";
/// The label Bob's receiving key is derived under.
pub const RECEIVING_KEY_LABEL: &[u8] = b"KMS_RECEIVING_KEY_V1";
/// The label the kfrag signer's key is derived under (its Ethereum address is the policy's
/// `kfragSigner`).
pub const SIGNING_KEY_LABEL: &[u8] = b"KMS_KFRAG_SIGNER_V1";
/// The label Enrico's sender key is derived under: it signs what he encrypts (signed streams and
/// message sessions), so that Bob accepts only data from the senders he trusts.
pub const SENDER_KEY_LABEL: &[u8] = b"KMS_SENDER_KEY_V1";
/// The prefix of the label a policy's delegating key is derived under (then the policy label).
pub const DELEGATING_KEY_PREFIX: &[u8] = b"KMS_DELEGATING_KEY_V1:";

const UMBRAL_KIND: &str = "kms-umbral-master-secret";
const SEED_BYTES: usize = 32;

/// Errors of the key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file exists already.
    #[error("{} exists already: refusing to overwrite a key (move it away first)", .0.display())]
    Exists(PathBuf),
    /// I/O on the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is readable by others.
    #[error(
        "{} is readable by group or others (mode {mode:o}): run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The file is not an Umbral key file.
    #[error("{} is not a KMS Umbral key file: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The keystore could not be written or decrypted (wrong password, corrupt file).
    #[error("keystore {}: {source}", path.display())]
    Keystore {
        /// The keystore file.
        path: PathBuf,
        /// The error.
        #[source]
        source: LocalSignerError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `path`'s directory (`.` for a bare file name) and file name.
fn dir_and_name(path: &Path) -> Result<(PathBuf, String), KeyFileError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| KeyFileError::Format {
            path: path.to_owned(),
            reason: "not a file name".into(),
        })?;
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.to_owned(),
        None => PathBuf::from("."),
    };
    Ok((dir, name.to_owned()))
}

fn exists_or_io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists(path.to_owned())
        } else {
            io_err(path)(e)
        }
    }
}

/// Removes `path` if it exists.
fn remove_if_present(path: &Path) -> Result<(), KeyFileError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// Creates a new file at `path` with mode `0600` (an existing file is an error: `O_EXCL`, so
/// never a file someone else made, nor a symbolic link) and writes and syncs `bytes`.
fn write_new_private_file(path: &Path, bytes: &[u8]) -> Result<(), KeyFileError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(exists_or_io(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Writes `bytes` to a new file at `path` with mode `0600`; an existing file is an error.
///
/// The bytes go to `.<name>.tmp` in the same directory first, created `0600` and exclusively (a
/// stale one, e.g. from a crash, is removed, never reused), then the file is linked to `path`:
/// `path` never exists with another mode or half-written. A hard link rather than a rename,
/// because a rename would replace a key created at `path` meanwhile; the link fails instead.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), KeyFileError> {
    let (dir, name) = dir_and_name(path)?;
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    if path.exists() {
        return Err(KeyFileError::Exists(path.to_owned()));
    }
    let temp = dir.join(format!(".{name}.tmp"));
    remove_if_present(&temp)?;
    let written = write_new_private_file(&temp, bytes)
        .and_then(|()| fs::hard_link(&temp, path).map_err(exists_or_io(path)));
    let removed = remove_if_present(&temp);
    written?;
    // The key is in place; the directory entry of the temporary file is all that is left.
    removed
}

/// Reads a secret file, refusing one that group or others can read.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(io_err(path))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: path.to_owned(),
                mode: mode & 0o777,
            });
        }
    }
    fs::read(path).map(Zeroizing::new).map_err(io_err(path))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UmbralKeyFileV1 {
    version: u32,
    kind: String,
    seed: String,
}

impl Drop for UmbralKeyFileV1 {
    fn drop(&mut self) {
        self.seed.zeroize();
    }
}

/// An Umbral master secret: every Umbral key of a user or a node derives from it by label.
pub struct MasterSecret {
    seed: [u8; SEED_BYTES],
    factory: SecretKeyFactory,
}

impl std::fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterSecret(..)")
    }
}

impl Drop for MasterSecret {
    fn drop(&mut self) {
        // umbral-pre zeroes the factory's own copy.
        self.seed.zeroize();
    }
}

impl MasterSecret {
    /// A fresh master secret from the OS RNG.
    pub fn random() -> Self {
        let mut seed = [0u8; SEED_BYTES];
        OsRng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// The master secret of `seed` (for tests and reproducible devnets only).
    pub fn from_seed(seed: [u8; SEED_BYTES]) -> Self {
        // `from_secure_randomness` only fails on a seed of the wrong length, and ours is fixed.
        let factory = match SecretKeyFactory::from_secure_randomness(&seed) {
            Ok(factory) => factory,
            Err(_) => unreachable!("umbral-pre's factory seed is {SEED_BYTES} bytes"),
        };
        Self { seed, factory }
    }

    /// The key derived under `label`.
    pub fn key(&self, label: &[u8]) -> SecretKey {
        self.factory.make_key(label)
    }

    /// A node's Umbral key.
    pub fn node_key(&self) -> SecretKey {
        self.key(NODE_KEY_LABEL)
    }

    /// Bob's receiving key.
    pub fn receiving_key(&self) -> SecretKey {
        self.key(RECEIVING_KEY_LABEL)
    }

    /// The kfrag signer's key.
    pub fn signing_key(&self) -> SecretKey {
        self.key(SIGNING_KEY_LABEL)
    }

    /// Enrico's sender key: signs signed streams and message sessions.
    pub fn sender_key(&self) -> SecretKey {
        self.key(SENDER_KEY_LABEL)
    }

    /// Alice's delegating key for the policy label `label`.
    pub fn delegating_key(&self, label: &str) -> SecretKey {
        let mut full = DELEGATING_KEY_PREFIX.to_vec();
        full.extend_from_slice(label.as_bytes());
        self.key(&full)
    }

    /// Writes the master secret to a new `0600` file at `path`.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let file = UmbralKeyFileV1 {
            version: 1,
            kind: UMBRAL_KIND.to_owned(),
            seed: hex::encode_prefixed(self.seed),
        };
        let mut json =
            Zeroizing::new(
                serde_json::to_vec_pretty(&file).map_err(|e| KeyFileError::Format {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?,
            );
        json.push(b'\n');
        write_secret_file(path, &json)
    }

    /// Reads the master secret at `path`.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let bytes = read_secret_file(path)?;
        let format = |reason: String| KeyFileError::Format {
            path: path.to_owned(),
            reason,
        };
        let file: UmbralKeyFileV1 =
            serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
        if file.version != 1 || file.kind != UMBRAL_KIND {
            return Err(format(format!(
                "kind {:?} version {}, expected {UMBRAL_KIND:?} version 1",
                file.kind, file.version
            )));
        }
        let seed =
            Zeroizing::new(hex::decode(&file.seed).map_err(|e| format(format!("seed: {e}")))?);
        let seed = <[u8; SEED_BYTES]>::try_from(seed.as_slice())
            .map_err(|_| format(format!("seed: expected {SEED_BYTES} bytes")))?;
        Ok(Self::from_seed(seed))
    }
}

/// Creates a web3 secret-storage keystore for a new random Ethereum account at `path` (`0600`).
pub fn create_keystore(path: &Path, password: &[u8]) -> Result<PrivateKeySigner, KeyFileError> {
    let signer = PrivateKeySigner::random_with(&mut OsRng);
    save_keystore(path, &signer, password)?;
    Ok(signer)
}

/// Writes `signer`'s key as a web3 secret-storage keystore at `path` (`0600`, never overwritten).
pub fn save_keystore(
    path: &Path,
    signer: &PrivateKeySigner,
    password: &[u8],
) -> Result<(), KeyFileError> {
    if path.exists() {
        return Err(KeyFileError::Exists(path.to_owned()));
    }
    let (dir, name) = dir_and_name(path)?;
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let keystore_err = |e: eth_keystore::KeystoreError| KeyFileError::Keystore {
        path: path.to_owned(),
        source: LocalSignerError::from(e),
    };
    // eth-keystore only writes files, with the default mode: it writes into a directory that
    // only this user can enter, and the bytes go to `path` through `write_secret_file`.
    let private = dir.join(format!(".{name}.keystore.tmp"));
    match fs::remove_dir_all(&private) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&private)(e)),
        _ => {}
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(&private).map_err(exists_or_io(&private))?;
    let secret = Zeroizing::new(signer.to_bytes().0);
    let json = eth_keystore::encrypt_key(&private, &mut OsRng, &secret[..], password, Some(&name))
        .map_err(keystore_err)
        .and_then(|_uuid| fs::read(private.join(&name)).map_err(io_err(&private)));
    let removed = fs::remove_dir_all(&private).map_err(io_err(&private));
    write_secret_file(path, &json?)?;
    removed
}

/// Decrypts the keystore at `path`.
pub fn load_keystore(path: &Path, password: &[u8]) -> Result<PrivateKeySigner, KeyFileError> {
    let keystore_err = |source: LocalSignerError| KeyFileError::Keystore {
        path: path.to_owned(),
        source,
    };
    let secret = Zeroizing::new(
        eth_keystore::decrypt_key(path, password)
            .map_err(|e| keystore_err(LocalSignerError::from(e)))?,
    );
    PrivateKeySigner::from_slice(&secret).map_err(|e| keystore_err(LocalSignerError::from(e)))
}

/// Reads a password file: its first line, without the line ending. Like a key file, it is
/// refused when group or others can read it ([`KeyFileError::Permissions`]: `chmod 600` it).
pub fn read_password_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
    let bytes = read_secret_file(path)?;
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(Zeroizing::new(
        line.strip_suffix(b"\r").unwrap_or(line).to_vec(),
    ))
}

/// The hex of a 32-byte private key, for `--private-key` style output in devnets.
pub fn private_key_hex(signer: &PrivateKeySigner) -> String {
    hex::encode_prefixed(B256::from(signer.to_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn umbral_master_secret_roundtrip_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/umbral.json");
        let master = MasterSecret::random();
        master.save(&path).unwrap();
        let loaded = MasterSecret::load(&path).unwrap();
        assert_eq!(
            loaded.node_key().public_key(),
            master.node_key().public_key()
        );
        assert_ne!(
            master.delegating_key("a").public_key(),
            master.delegating_key("b").public_key()
        );
        // Every role's key is its own.
        let roles = [
            master.node_key().public_key(),
            master.receiving_key().public_key(),
            master.signing_key().public_key(),
            master.sender_key().public_key(),
            master.delegating_key("a").public_key(),
        ];
        for (i, a) in roles.iter().enumerate() {
            assert!(roles[i + 1..].iter().all(|b| a != b), "role {i}");
        }
        assert_eq!(
            loaded.sender_key().public_key(),
            master.sender_key().public_key()
        );
        // Never overwritten.
        assert!(matches!(
            MasterSecret::random().save(&path),
            Err(KeyFileError::Exists(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private_and_readable_ones_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("umbral.json");
        MasterSecret::random().save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterSecret::load(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn malformed_umbral_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("umbral.json");
        write_secret_file(&path, br#"{"version":1,"kind":"other","seed":"0x00"}"#).unwrap();
        assert!(matches!(
            MasterSecret::load(&path),
            Err(KeyFileError::Format { .. })
        ));
    }

    #[test]
    fn keystore_roundtrip_wrong_password_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worker.json");
        let signer = create_keystore(&path, b"hunter2").unwrap();
        let loaded = load_keystore(&path, b"hunter2").unwrap();
        assert_eq!(loaded.address(), signer.address());
        assert!(matches!(
            load_keystore(&path, b"wrong"),
            Err(KeyFileError::Keystore { .. })
        ));
        assert!(matches!(
            create_keystore(&path, b"x"),
            Err(KeyFileError::Exists(_))
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn password_file_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        write_secret_file(&path, b"secret\r\nignored\n").unwrap();
        assert_eq!(read_password_file(&path).unwrap().as_slice(), b"secret");
    }

    /// Review finding 11: a password file others can read is refused, as key files are.
    #[cfg(unix)]
    #[test]
    fn readable_password_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        fs::write(&path, b"secret\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_password_file(&path).unwrap_err();
        assert!(
            matches!(err, KeyFileError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password_file(&path).unwrap().as_slice(), b"secret");
    }

    fn mode_of(path: &Path) -> u32 {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(path).unwrap().permissions().mode() & 0o777
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            0o600
        }
    }

    /// Review finding 11: a secret file is created `0600` through a temporary file of its own;
    /// a temporary file someone left there (world-readable, and a hard link to another file) is
    /// never written through, and nothing but the key is left behind.
    #[cfg(unix)]
    #[test]
    fn secret_files_never_reuse_a_planted_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("umbral.json");
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, b"not a secret").unwrap();
        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o644)).unwrap();
        fs::hard_link(&elsewhere, dir.path().join(".umbral.json.tmp")).unwrap();
        MasterSecret::random().save(&path).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(fs::read(&elsewhere).unwrap(), b"not a secret");
        MasterSecret::load(&path).unwrap();
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["elsewhere", "umbral.json"]);
    }

    /// Review finding 11: the keystore is `0600` from its creation: eth-keystore's file (default
    /// mode) is made in a directory only the owner can enter, and `worker.json` is written
    /// through a fresh `0600` temporary file, never a world-readable one found there.
    #[cfg(unix)]
    #[test]
    fn keystore_is_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("worker.json");
        let planted = dir.path().join(".worker.json.tmp");
        fs::write(&planted, b"planted").unwrap();
        fs::set_permissions(&planted, fs::Permissions::from_mode(0o666)).unwrap();
        let signer = create_keystore(&path, b"hunter2").unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(
            load_keystore(&path, b"hunter2").unwrap().address(),
            signer.address()
        );
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["worker.json"]);
    }
}
