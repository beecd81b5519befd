//! Key pairs and seed files. Every server and every client is an ed25519 key
//! pair derived from a 32-byte random seed, kept as 64 hex characters in a seed
//! file that only its owner may read (mode 0600). A seed file is created when
//! missing and never overwritten.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey};

use crate::error::{Error, Result};
use crate::types::PublicKey;

/// A signing key with its public key, derived from a seed.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
    public: PublicKey,
}

impl Keypair {
    /// The key pair derived from a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Keypair {
        let signing = SigningKey::from_bytes(seed);
        let public = PublicKey(signing.verifying_key().to_bytes());
        Keypair { signing, public }
    }

    /// A key pair from a fresh random seed, returned with the seed.
    pub fn generate() -> Result<(Keypair, [u8; 32])> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::Invalid(format!("the system random source failed: {e}")))?;
        Ok((Keypair::from_seed(&seed), seed))
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// An ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.public)
    }
}

/// What [`create_seed_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedFile {
    Created,
    AlreadyThere,
}

/// Loads the key pair from an existing seed file.
pub fn load_seed_file(path: &Path) -> Result<Keypair> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let text = text.trim();
    let mut seed = [0u8; 32];
    if text.len() != 64 {
        return Err(Error::Invalid(format!(
            "{}: a seed file holds 64 hex characters, this one holds {}",
            path.display(),
            text.len()
        )));
    }
    hex::decode_to_slice(text, &mut seed).map_err(|e| {
        Error::Invalid(format!(
            "{}: the seed is not hex ({e}); a seed file holds 64 hex characters",
            path.display()
        ))
    })?;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        log::warn!(
            "{}: seed file is readable by others (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    Ok(Keypair::from_seed(&seed))
}

/// Creates a seed file with a fresh random seed unless one is already there,
/// and returns the key pair it holds. An existing file is never overwritten.
pub fn create_seed_file(path: &Path) -> Result<(Keypair, SeedFile)> {
    if path.exists() {
        return Ok((load_seed_file(path)?, SeedFile::AlreadyThere));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let (keypair, seed) = Keypair::generate()?;
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        // Another process made it between our check and our create: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Ok((load_seed_file(path)?, SeedFile::AlreadyThere));
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    file.write_all(format!("{}\n", hex::encode(seed)).as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(path, e))?;
    Ok((keypair, SeedFile::Created))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_file_is_created_with_mode_0600_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/server.seed");
        let (first, made) = create_seed_file(&path).unwrap();
        assert_eq!(made, SeedFile::Created);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);

        let (second, made) = create_seed_file(&path).unwrap();
        assert_eq!(made, SeedFile::AlreadyThere);
        assert_eq!(first.public(), second.public());
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn a_bad_seed_file_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.seed");
        fs::write(&path, "1234").unwrap();
        let err = load_seed_file(&path).unwrap_err().to_string();
        assert!(err.contains("64 hex characters"), "{err}");
        fs::write(&path, "g".repeat(64)).unwrap();
        let err = load_seed_file(&path).unwrap_err().to_string();
        assert!(err.contains("not hex"), "{err}");
    }

    #[test]
    fn the_same_seed_gives_the_same_key() {
        let a = Keypair::from_seed(&[7; 32]);
        let b = Keypair::from_seed(&[7; 32]);
        assert_eq!(a.public(), b.public());
        assert_eq!(a.sign(b"x"), b.sign(b"x"));
    }
}
