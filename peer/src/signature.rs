//! The one signature check of rota: ed25519 under the ZIP 215 rules, alone
//! or in batches, with the same verdict either way.
//!
//! Plain ed25519 leaves two choices open that matter when many servers must
//! agree: which encodings of points are accepted, and whether the check is
//! cofactored. Implementations differ on both, and a batch check that is
//! cofactored beside a single check that is not can pass a signature in one
//! batch and fail it in another. rota follows ZIP 215, which fixes both
//! choices: any encoding of a curve point is accepted (canonical or not), `s`
//! must be below the group order, and the check is `[8][s]B = [8]R + [8][k]A`,
//! single or batched. The verdict on a signature is then a pure function of
//! the key, the message and the signature, on every server, in every batch.
//!
//! One rule is rota's own: a key of small order (the eight points `T` with
//! `[8]T = 0`) is refused as a signer. Under the cofactored check such a key
//! "signs" any message with `R` small and `s = 0`, so money paid to it could
//! be spent by anyone. The rule depends on the key alone, so it keeps every
//! server's verdict the same.
//!
//! A batch draws fresh random coefficients from the operating system: they
//! are what stops a crafted batch of bad signatures from passing together.
//! They change no verdict.

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_consensus::batch;
use ed25519_consensus::{Signature, VerificationKey, VerificationKeyBytes};

/// Whether `key` may sign: it is the encoding of a curve point (canonical or
/// not) that is not of small order.
pub fn is_signing_key(key: &[u8; 32]) -> bool {
    CompressedEdwardsY(*key)
        .decompress()
        .is_some_and(|point| !point.is_small_order())
}

/// Checks one signature.
pub fn verify(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    is_signing_key(key)
        && VerificationKey::try_from(*key)
            .is_ok_and(|vk| vk.verify(&Signature::from(*signature), message).is_ok())
}

/// Checks many signatures at once; [`Batch::verify`] says whether all pass.
/// It agrees with [`verify`] on each: if all pass alone, the batch passes,
/// and if one fails alone, the batch fails.
#[derive(Default)]
pub struct Batch {
    inner: batch::Verifier,
    len: usize,
    refused: bool,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds a signature to check.
    pub fn queue(&mut self, key: &[u8; 32], message: &[u8], signature: &[u8; 64]) {
        if !is_signing_key(key) {
            self.refused = true;
        }
        self.queue_checked_key(key, message, signature);
    }

    /// Adds a signature whose key the caller has already found to pass
    /// [`is_signing_key`] (a decompression saved per signature).
    pub(crate) fn queue_checked_key(
        &mut self,
        key: &[u8; 32],
        message: &[u8],
        signature: &[u8; 64],
    ) {
        self.inner.queue((
            VerificationKeyBytes::from(*key),
            Signature::from(*signature),
            message,
        ));
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether every queued signature passes. An empty batch passes.
    pub fn verify(self) -> bool {
        if self.refused {
            return false;
        }
        self.len == 0 || self.inner.verify(rand_core::OsRng).is_ok()
    }
}
