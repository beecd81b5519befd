//! The 140-byte payment transaction and its signature check.
//!
//! ```text
//! offset  size  field
//!      0     8  timestamp, Unix milliseconds, big-endian u64
//!      8     4  amount, big-endian u32
//!     12    32  payee public key
//!     44    32  payer public key
//!     76    64  payer's ed25519 signature over bytes 0..76
//! ```
//!
//! The transaction id is the SHA-256 of all 140 bytes. A [`Transaction`] is
//! only a well-formed byte string; a [`VerifiedTx`] is one whose signature has
//! been checked by a [`Verifier`], and only those reach the ledger.
//!
//! Determinism: a batch check is cofactored and a single check is not, so a
//! crafted signature can pass one and fail the other. The verdict for a batch
//! is a pure function of the batch (the batch's random coefficients come from
//! a transcript of its inputs), so servers that must agree on a list of
//! transactions, the transactions of a ROUND, verify that list as one batch.

use std::collections::HashMap;

use ed25519_dalek::{Signature, VerifyingKey};

use crate::error::{Error, Result};
use crate::keys::Keypair;
use crate::types::{Amount, Hash, Millis, PublicKey, TxId};

/// Length of an encoded transaction.
pub const TX_LEN: usize = 140;
/// Length of the signed prefix of a transaction.
pub const SIGNED_LEN: usize = 76;

/// A well-formed transaction whose signature has not been checked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Transaction([u8; TX_LEN]);

impl Transaction {
    /// Signs a payment of `amount` from `payer` to `payee` stamped `timestamp`.
    pub fn sign(payer: &Keypair, payee: PublicKey, amount: Amount, timestamp: Millis) -> Self {
        let mut bytes = [0u8; TX_LEN];
        bytes[0..8].copy_from_slice(&timestamp.to_be_bytes());
        bytes[8..12].copy_from_slice(&amount.to_be_bytes());
        bytes[12..44].copy_from_slice(&payee.0);
        bytes[44..76].copy_from_slice(&payer.public().0);
        let signature = payer.sign(&bytes[..SIGNED_LEN]);
        bytes[76..].copy_from_slice(&signature);
        Transaction(bytes)
    }

    /// Reads a transaction from exactly 140 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let array: [u8; TX_LEN] = bytes.try_into().map_err(|_| {
            Error::Invalid(format!(
                "a transaction is {TX_LEN} bytes, got {}",
                bytes.len()
            ))
        })?;
        Ok(Transaction(array))
    }

    pub fn bytes(&self) -> &[u8; TX_LEN] {
        &self.0
    }

    pub fn timestamp(&self) -> Millis {
        u64::from_be_bytes(self.0[0..8].try_into().expect("8 bytes"))
    }

    pub fn amount(&self) -> Amount {
        u32::from_be_bytes(self.0[8..12].try_into().expect("4 bytes"))
    }

    pub fn payee(&self) -> PublicKey {
        PublicKey(self.0[12..44].try_into().expect("32 bytes"))
    }

    pub fn payer(&self) -> PublicKey {
        PublicKey(self.0[44..76].try_into().expect("32 bytes"))
    }

    fn signature(&self) -> Signature {
        Signature::from_bytes(self.0[76..].try_into().expect("64 bytes"))
    }

    /// SHA-256 of the 140 bytes.
    pub fn id(&self) -> TxId {
        Hash::of(&self.0)
    }
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Transaction({} pays {} to {} at {})",
            self.payer().to_string().get(..8).unwrap_or_default(),
            self.amount(),
            self.payee().to_string().get(..8).unwrap_or_default(),
            self.timestamp()
        )
    }
}

/// Anything that holds a transaction: a plain or a verified one.
pub trait AsTransaction {
    fn transaction(&self) -> &Transaction;
}

impl AsTransaction for Transaction {
    fn transaction(&self) -> &Transaction {
        self
    }
}

impl AsTransaction for VerifiedTx {
    fn transaction(&self) -> &Transaction {
        &self.tx
    }
}

/// A transaction whose payer signature has been checked, with its id.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VerifiedTx {
    tx: Transaction,
    id: TxId,
}

impl VerifiedTx {
    /// Marks a transaction as verified without checking it. Only for
    /// transactions read back from this server's own block store, which were
    /// verified before they were stored.
    pub fn from_trusted_store(tx: Transaction) -> VerifiedTx {
        VerifiedTx { id: tx.id(), tx }
    }

    pub fn tx(&self) -> &Transaction {
        &self.tx
    }

    pub fn id(&self) -> TxId {
        self.id
    }
}

impl std::ops::Deref for VerifiedTx {
    type Target = Transaction;
    fn deref(&self) -> &Transaction {
        &self.tx
    }
}

/// Checks payer signatures, singly or in batches, caching decompressed payer
/// keys (decompression costs about a third of a single verification, and
/// payers repeat).
pub struct Verifier {
    keys: HashMap<[u8; 32], VerifyingKey>,
    capacity: usize,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::with_capacity(65_536)
    }
}

impl Verifier {
    /// A verifier caching at most `capacity` payer keys; when full the cache
    /// is cleared, which costs only the re-decompression of hot keys.
    pub fn with_capacity(capacity: usize) -> Verifier {
        Verifier {
            keys: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    fn key(&mut self, payer: PublicKey) -> Result<VerifyingKey> {
        if let Some(key) = self.keys.get(&payer.0) {
            return Ok(*key);
        }
        let key = VerifyingKey::from_bytes(&payer.0).map_err(|_| {
            Error::Signature(format!("payer key {payer} is not a valid ed25519 key"))
        })?;
        if self.keys.len() >= self.capacity {
            self.keys.clear();
        }
        self.keys.insert(payer.0, key);
        Ok(key)
    }

    /// Verifies one transaction.
    pub fn verify(&mut self, tx: Transaction) -> Result<VerifiedTx> {
        let key = self.key(tx.payer())?;
        key.verify_strict(&tx.0[..SIGNED_LEN], &tx.signature())
            .map_err(|_| Error::Signature("the payer's signature does not verify".into()))?;
        Ok(VerifiedTx { id: tx.id(), tx })
    }

    /// Verifies many transactions, returning a result for each in order. The
    /// whole batch is checked at once; only when that fails is each one
    /// checked alone, to find the bad ones.
    pub fn verify_batch(&mut self, txs: &[Transaction]) -> Vec<Result<VerifiedTx>> {
        let mut keys = Vec::with_capacity(txs.len());
        let mut candidates = Vec::with_capacity(txs.len());
        let mut results: Vec<Option<Result<VerifiedTx>>> = Vec::with_capacity(txs.len());
        for tx in txs {
            match self.key(tx.payer()) {
                Ok(key) => {
                    keys.push(key);
                    candidates.push(*tx);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let messages: Vec<&[u8]> = candidates.iter().map(|t| &t.0[..SIGNED_LEN]).collect();
        let signatures: Vec<Signature> = candidates.iter().map(|t| t.signature()).collect();
        let batch_ok = !candidates.is_empty()
            && ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok();
        let mut candidates = candidates.into_iter();
        results
            .into_iter()
            .map(|slot| match slot {
                Some(refused) => refused,
                None => {
                    let tx = candidates.next().expect("one candidate per open slot");
                    if batch_ok {
                        Ok(VerifiedTx { id: tx.id(), tx })
                    } else {
                        self.verify(tx)
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payer() -> Keypair {
        Keypair::from_seed(&[1; 32])
    }

    #[test]
    fn fields_round_trip_through_the_140_bytes() {
        let payee = PublicKey([9; 32]);
        let tx = Transaction::sign(&payer(), payee, 250, 1_700_000_000_123);
        let back = Transaction::decode(tx.bytes()).unwrap();
        assert_eq!(back.timestamp(), 1_700_000_000_123);
        assert_eq!(back.amount(), 250);
        assert_eq!(back.payee(), payee);
        assert_eq!(back.payer(), payer().public());
        assert_eq!(back.id(), Hash::of(tx.bytes()));
    }

    #[test]
    fn decode_refuses_the_wrong_length() {
        let err = Transaction::decode(&[0; 139]).unwrap_err().to_string();
        assert!(err.contains("140 bytes, got 139"), "{err}");
    }

    #[test]
    fn a_signed_transaction_verifies_and_a_tampered_one_does_not() {
        let mut verifier = Verifier::default();
        let tx = Transaction::sign(&payer(), PublicKey([9; 32]), 5, 1000);
        assert!(verifier.verify(tx).is_ok());
        let mut bytes = *tx.bytes();
        bytes[8..12].copy_from_slice(&6u32.to_be_bytes());
        let tampered = Transaction::decode(&bytes).unwrap();
        assert!(verifier.verify(tampered).is_err());
    }

    #[test]
    fn a_batch_with_one_forgery_rejects_exactly_that_one() {
        let mut verifier = Verifier::default();
        let mut txs: Vec<Transaction> = (0..10)
            .map(|i| Transaction::sign(&payer(), PublicKey([9; 32]), i + 1, 1000 + i as u64))
            .collect();
        let mut bytes = *txs[4].bytes();
        bytes[139] ^= 1;
        txs[4] = Transaction::decode(&bytes).unwrap();
        let results = verifier.verify_batch(&txs);
        for (i, result) in results.iter().enumerate() {
            assert_eq!(result.is_ok(), i != 4, "transaction {i}");
        }
        assert_eq!(results[3].as_ref().unwrap().id(), txs[3].id());
    }

    #[test]
    fn a_payer_key_that_is_not_a_curve_point_is_refused() {
        let mut verifier = Verifier::default();
        let mut bytes = *Transaction::sign(&payer(), PublicKey([9; 32]), 1, 1).bytes();
        // y = 2 is not the y-coordinate of any point on the curve.
        let mut bad_key = [0u8; 32];
        bad_key[0] = 2;
        bytes[44..76].copy_from_slice(&bad_key);
        let tx = Transaction::decode(&bytes).unwrap();
        let results = verifier.verify_batch(&[tx]);
        assert!(results[0].is_err());
    }
}
