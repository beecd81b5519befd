//! The 140-byte payment transaction and its signature check.
//!
//! ```text
//! offset  size  field
//!      0     8  timestamp, Unix milliseconds, big-endian u64
//!      8     4  amount, big-endian u32
//!     12    32  payee public key
//!     44    32  payer public key
//!     76    64  payer's ed25519 signature (see below)
//! ```
//!
//! The signature covers the chain's name as well as the first 76 bytes, so
//! a payment signed for one chain is worthless on another where the payer
//! has the same key (see [`signed_message`]):
//!
//! ```text
//! "rota payment v1" (15 bytes) | len(chain) (1) | chain | bytes 0..76
//! ```
//!
//! The transaction id is the SHA-256 of all 140 bytes. A [`Transaction`] is
//! only a well-formed byte string; a [`VerifiedTx`] is one whose signature has
//! been checked by a [`Verifier`], and only those reach the ledger.
//!
//! Determinism: signatures are checked under the ZIP 215 rules
//! ([`crate::signature`]), so a payment's verdict is the same alone or in any
//! batch, on every server.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::keys::Keypair;
use crate::signature::{self, Batch};
use crate::types::{Amount, Hash, Millis, PublicKey, TxId};

/// The words that open every payment's signed message.
pub const PAYMENT_DOMAIN: &[u8] = b"rota payment v1";

/// The longest chain name a signed message can carry (its length is one
/// byte); the conf allows shorter names still.
const MAX_SIGNED_CHAIN: usize = 255;

/// The bytes a payer signs: the domain words, the chain's name with its
/// length, and the first 76 bytes of the transaction.
pub fn signed_message(chain: &str, prefix: &[u8; SIGNED_LEN]) -> Vec<u8> {
    let chain = &chain.as_bytes()[..chain.len().min(MAX_SIGNED_CHAIN)];
    let mut message = Vec::with_capacity(PAYMENT_DOMAIN.len() + 1 + chain.len() + SIGNED_LEN);
    message.extend_from_slice(PAYMENT_DOMAIN);
    message.push(chain.len() as u8);
    message.extend_from_slice(chain);
    message.extend_from_slice(prefix);
    message
}

/// Length of an encoded transaction.
pub const TX_LEN: usize = 140;
/// Length of the signed prefix of a transaction.
pub const SIGNED_LEN: usize = 76;

/// A well-formed transaction whose signature has not been checked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Transaction([u8; TX_LEN]);

impl Transaction {
    /// Signs, for `chain`, a payment of `amount` from `payer` to `payee`
    /// stamped `timestamp`.
    pub fn sign(
        chain: &str,
        payer: &Keypair,
        payee: PublicKey,
        amount: Amount,
        timestamp: Millis,
    ) -> Self {
        let mut bytes = [0u8; TX_LEN];
        bytes[0..8].copy_from_slice(&timestamp.to_be_bytes());
        bytes[8..12].copy_from_slice(&amount.to_be_bytes());
        bytes[12..44].copy_from_slice(&payee.0);
        bytes[44..76].copy_from_slice(&payer.public().0);
        let signature = payer.sign(&signed_message(chain, Transaction::prefix_of(&bytes)));
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

    fn prefix_of(bytes: &[u8; TX_LEN]) -> &[u8; SIGNED_LEN] {
        bytes[..SIGNED_LEN].try_into().expect("76 bytes")
    }

    /// The bytes the payer signed for `chain`.
    pub fn signed_message(&self, chain: &str) -> Vec<u8> {
        signed_message(chain, Transaction::prefix_of(&self.0))
    }

    fn signature(&self) -> &[u8; 64] {
        self.0[SIGNED_LEN..].try_into().expect("64 bytes")
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

/// Checks payer signatures for one chain, singly or in batches, caching
/// which payer keys may sign (the check decompresses the key, about a third
/// of the cost of a signature check, and payers repeat).
pub struct Verifier {
    chain: String,
    signing_keys: HashSet<[u8; 32]>,
    capacity: usize,
}

impl Verifier {
    /// A verifier of payments signed for `chain`.
    pub fn new(chain: &str) -> Verifier {
        Verifier::with_capacity(chain, 65_536)
    }

    /// A verifier caching at most `capacity` payer keys; when full the cache
    /// is cleared, which costs only the re-check of hot keys.
    pub fn with_capacity(chain: &str, capacity: usize) -> Verifier {
        Verifier {
            chain: chain.to_string(),
            signing_keys: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether `payer` may sign, from the cache when it can.
    fn may_sign(&mut self, payer: PublicKey) -> bool {
        if self.signing_keys.contains(&payer.0) {
            return true;
        }
        let ok = signature::is_signing_key(&payer.0);
        if ok {
            if self.signing_keys.len() >= self.capacity {
                self.signing_keys.clear();
            }
            self.signing_keys.insert(payer.0);
        }
        ok
    }

    fn refuse_key(payer: PublicKey) -> Error {
        Error::Signature(format!(
            "payer key {payer} is not a valid ed25519 key (not a curve point, or of small order)"
        ))
    }

    /// Verifies one transaction.
    pub fn verify(&mut self, tx: Transaction) -> Result<VerifiedTx> {
        let payer = tx.payer();
        if !self.may_sign(payer) {
            return Err(Verifier::refuse_key(payer));
        }
        if !signature::verify(&payer.0, &tx.signed_message(&self.chain), tx.signature()) {
            return Err(Error::Signature(
                "the payer's signature does not verify".into(),
            ));
        }
        Ok(VerifiedTx { id: tx.id(), tx })
    }

    /// Verifies many transactions, returning a result for each in order. The
    /// whole batch is checked at once; only when that fails is each one
    /// checked alone, to find the bad ones. Either way each verdict is the
    /// one [`Verifier::verify`] gives (see [`crate::signature`]).
    pub fn verify_batch(&mut self, txs: &[Transaction]) -> Vec<Result<VerifiedTx>> {
        let mut batch = Batch::new();
        let mut results: Vec<Option<Result<VerifiedTx>>> = Vec::with_capacity(txs.len());
        for tx in txs {
            let payer = tx.payer();
            if self.may_sign(payer) {
                batch.queue_checked_key(&payer.0, &tx.signed_message(&self.chain), tx.signature());
                results.push(None);
            } else {
                results.push(Some(Err(Verifier::refuse_key(payer))));
            }
        }
        let batch_ok = !batch.is_empty() && batch.verify();
        results
            .into_iter()
            .zip(txs)
            .map(|(slot, tx)| match slot {
                Some(refused) => refused,
                None if batch_ok => Ok(VerifiedTx {
                    id: tx.id(),
                    tx: *tx,
                }),
                None => self.verify(*tx),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAIN: &str = "test";

    fn payer() -> Keypair {
        Keypair::from_seed(&[1; 32])
    }

    #[test]
    fn fields_round_trip_through_the_140_bytes() {
        let payee = PublicKey([9; 32]);
        let tx = Transaction::sign(CHAIN, &payer(), payee, 250, 1_700_000_000_123);
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
        let mut verifier = Verifier::new(CHAIN);
        let tx = Transaction::sign(CHAIN, &payer(), PublicKey([9; 32]), 5, 1000);
        assert!(verifier.verify(tx).is_ok());
        let mut bytes = *tx.bytes();
        bytes[8..12].copy_from_slice(&6u32.to_be_bytes());
        let tampered = Transaction::decode(&bytes).unwrap();
        assert!(verifier.verify(tampered).is_err());
    }

    #[test]
    fn a_batch_with_one_forgery_rejects_exactly_that_one() {
        let mut verifier = Verifier::new(CHAIN);
        let mut txs: Vec<Transaction> = (0..10)
            .map(|i| Transaction::sign(CHAIN, &payer(), PublicKey([9; 32]), i + 1, 1000 + i as u64))
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
        let mut verifier = Verifier::new(CHAIN);
        let mut bytes = *Transaction::sign(CHAIN, &payer(), PublicKey([9; 32]), 1, 1).bytes();
        // y = 2 is not the y-coordinate of any point on the curve.
        let mut bad_key = [0u8; 32];
        bad_key[0] = 2;
        bytes[44..76].copy_from_slice(&bad_key);
        let tx = Transaction::decode(&bytes).unwrap();
        let results = verifier.verify_batch(&[tx]);
        assert!(results[0].is_err());
    }

    #[test]
    fn a_payment_signed_for_one_chain_does_not_verify_on_another() {
        let tx = Transaction::sign("east", &payer(), PublicKey([9; 32]), 5, 1000);
        assert!(Verifier::new("east").verify(tx).is_ok());
        assert!(Verifier::new("west").verify(tx).is_err());
        assert!(Verifier::new("west").verify_batch(&[tx])[0].is_err());
    }

    #[test]
    fn the_signed_message_is_the_domain_the_chain_and_the_prefix() {
        let tx = Transaction::sign("east", &payer(), PublicKey([9; 32]), 5, 1000);
        let message = tx.signed_message("east");
        assert_eq!(&message[..15], b"rota payment v1");
        assert_eq!(message[15], 4);
        assert_eq!(&message[16..20], b"east");
        assert_eq!(&message[20..], &tx.bytes()[..SIGNED_LEN]);
    }

    /// The worked example of docs/PROTOCOL.md §5.2, byte for byte.
    #[test]
    fn the_protocol_worked_example_is_what_sign_makes() {
        let payee = Keypair::from_seed(&[2; 32]).public();
        let tx = Transaction::sign("local", &payer(), payee, 250, 1_700_000_000_123);
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(&tx.signed_message("local")),
            "726f7461207061796d656e74207631056c6f63616c0000018bcfe5687b000000fa\
             8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394\
             8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
        );
        assert_eq!(
            hex(&tx.bytes()[SIGNED_LEN..]),
            "872e88af4b3ff5d8de5b16b63b786664acd632f38c33ce2b1a681dd7a62d6f87\
             1d3d5a6e380ea9d2e3cc7a04400b9ee530fe9a92912a98071e00d8b004a0280b"
        );
        assert_eq!(
            tx.id().to_string(),
            "658908f0806f4c63f073a80e98d02eff81ab6d798cd47929cbc308775cf08867"
        );
    }
}
