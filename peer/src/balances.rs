//! The balance database, kept in memory in its packed form.
//!
//! The packed database is the account records sorted by public key and nothing
//! else, so every server packs the same state to the same bytes:
//!
//! ```text
//! record  = public key (32) | balance, big-endian u32 (4)     36 bytes
//! packed  = record* in ascending key order, no duplicates
//! hash    = SHA-256(packed)
//! ```
//!
//! [`Balances`] stores exactly those records in a sorted vector, so packing is
//! free and hashing costs one SHA-256 pass. Accounts created since the last
//! pack wait in a small sorted side map and are merged in one linear pass when
//! the database is next packed.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::types::{Amount, Hash, PublicKey};

/// Length of one account record.
pub const RECORD_LEN: usize = 36;

type Record = [u8; RECORD_LEN];

fn record_key(record: &Record) -> &[u8] {
    &record[..32]
}

fn record_balance(record: &Record) -> Amount {
    u32::from_be_bytes(record[32..].try_into().expect("4 bytes"))
}

fn make_record(key: &PublicKey, balance: Amount) -> Record {
    let mut record = [0u8; RECORD_LEN];
    record[..32].copy_from_slice(&key.0);
    record[32..].copy_from_slice(&balance.to_be_bytes());
    record
}

/// Why a payment cannot be applied to a database. The alpha refuses such a
/// transaction; a server applying a ROUND skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PaymentRefusal {
    #[error("the amount must be greater than 0")]
    ZeroAmount,
    #[error("the payer and the payee must differ")]
    SelfPayment,
    #[error("the payer has no account")]
    NoAccount,
    #[error("the payer's balance {balance} is less than the amount {amount}")]
    InsufficientFunds { balance: Amount, amount: Amount },
    #[error("the payee's balance would overflow")]
    Overflow,
}

/// The accounts and their balances.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Balances {
    /// Sorted by key, unique: exactly the packed database, once `added` is merged.
    records: Vec<Record>,
    /// Accounts created since the last merge.
    added: BTreeMap<PublicKey, Amount>,
}

impl std::fmt::Debug for Balances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Balances({} accounts)", self.len())
    }
}

impl Balances {
    /// A database holding `accounts`. Refuses duplicate keys and a total
    /// supply that does not fit a `u32`.
    pub fn from_accounts(accounts: &[(PublicKey, Amount)]) -> Result<Balances> {
        let mut sorted: Vec<(PublicKey, Amount)> = accounts.to_vec();
        sorted.sort_by_key(|(key, _)| *key);
        if let Some(pair) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::Invalid(format!(
                "account {} is listed twice",
                pair[0].0
            )));
        }
        check_supply(sorted.iter().map(|(_, balance)| *balance))?;
        Ok(Balances {
            records: sorted.iter().map(|(k, b)| make_record(k, *b)).collect(),
            added: BTreeMap::new(),
        })
    }

    /// Reads a packed database, refusing anything that is not one: a length
    /// that is not a multiple of 36, keys out of order or repeated, or a total
    /// supply above `u32::MAX`.
    pub fn from_packed(packed: &[u8]) -> Result<Balances> {
        if packed.len() % RECORD_LEN != 0 {
            return Err(Error::Invalid(format!(
                "a packed database is a whole number of {RECORD_LEN}-byte records, got {} bytes",
                packed.len()
            )));
        }
        let records: Vec<Record> = packed
            .chunks_exact(RECORD_LEN)
            .map(|chunk| chunk.try_into().expect("36 bytes"))
            .collect();
        if let Some(i) = records
            .windows(2)
            .position(|w| record_key(&w[0]) >= record_key(&w[1]))
        {
            return Err(Error::Invalid(format!(
                "packed database record {} is not in ascending key order",
                i + 1
            )));
        }
        check_supply(records.iter().map(record_balance))?;
        Ok(Balances {
            records,
            added: BTreeMap::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.records.len() + self.added.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn position(&self, key: &PublicKey) -> std::result::Result<usize, usize> {
        self.records
            .binary_search_by(|record| record_key(record).cmp(&key.0[..]))
    }

    /// The balance of `key`, or `None` when it has no account.
    pub fn get(&self, key: &PublicKey) -> Option<Amount> {
        match self.position(key) {
            Ok(i) => Some(record_balance(&self.records[i])),
            Err(_) => self.added.get(key).copied(),
        }
    }

    /// Sets the balance of `key`, creating its account if needed.
    fn set(&mut self, key: &PublicKey, balance: Amount) {
        match self.position(key) {
            Ok(i) => self.records[i][32..].copy_from_slice(&balance.to_be_bytes()),
            Err(_) => {
                self.added.insert(*key, balance);
            }
        }
    }

    /// Checks that a payment of `amount` from `payer` to `payee` can be
    /// applied, without applying it.
    pub fn check_payment(
        &self,
        payer: &PublicKey,
        payee: &PublicKey,
        amount: Amount,
    ) -> std::result::Result<(), PaymentRefusal> {
        if amount == 0 {
            return Err(PaymentRefusal::ZeroAmount);
        }
        if payer == payee {
            return Err(PaymentRefusal::SelfPayment);
        }
        let balance = self.get(payer).ok_or(PaymentRefusal::NoAccount)?;
        if balance < amount {
            return Err(PaymentRefusal::InsufficientFunds { balance, amount });
        }
        let payee_balance = self.get(payee).unwrap_or(0);
        if payee_balance.checked_add(amount).is_none() {
            return Err(PaymentRefusal::Overflow);
        }
        Ok(())
    }

    /// Moves `amount` from `payer` to `payee`, creating the payee's account on
    /// its first payment. Nothing changes when the payment is refused.
    pub fn pay(
        &mut self,
        payer: &PublicKey,
        payee: &PublicKey,
        amount: Amount,
    ) -> std::result::Result<(), PaymentRefusal> {
        self.check_payment(payer, payee, amount)?;
        let payer_balance = self.get(payer).expect("checked") - amount;
        let payee_balance = self.get(payee).unwrap_or(0) + amount;
        self.set(payer, payer_balance);
        self.set(payee, payee_balance);
        Ok(())
    }

    /// Merges newly created accounts into the sorted records, in place and
    /// from the back: the vector grows (a large reallocation is remapped, not
    /// copied), and each run of old records moves once, to its final place.
    /// Building a new 36 MB vector instead costs as much in page faults as
    /// hashing it.
    fn merge(&mut self) {
        if self.added.is_empty() {
            return;
        }
        let added = std::mem::take(&mut self.added);
        let old = self.records.len();
        self.records.resize(old + added.len(), [0u8; RECORD_LEN]);
        // records[..end] are old records not yet moved; records[write..] are final.
        let mut end = old;
        let mut write = self.records.len();
        for (key, balance) in added.into_iter().rev() {
            let split = split_before(&self.records[..end], &key.0);
            let run = end - split;
            self.records.copy_within(split..end, write - run);
            write -= run + 1;
            self.records[write] = make_record(&key, balance);
            end = split;
        }
        debug_assert_eq!(write, end, "every old record is in place");
    }

    /// The packed database.
    pub fn pack(&mut self) -> &[u8] {
        self.merge();
        self.records.as_flattened()
    }

    /// The SHA-256 of the packed database.
    pub fn hash(&mut self) -> Hash {
        Hash::of(self.pack())
    }

    /// The packed bytes when nothing is waiting to be merged, so that a shared
    /// (read-only) database can be packed without copying.
    pub fn packed(&self) -> Option<&[u8]> {
        self.added.is_empty().then(|| self.records.as_flattened())
    }

    /// Every account with its balance, in key order.
    pub fn accounts(&mut self) -> impl Iterator<Item = (PublicKey, Amount)> + '_ {
        self.merge();
        self.records.iter().map(|r| {
            (
                PublicKey(record_key(r).try_into().expect("32 bytes")),
                record_balance(r),
            )
        })
    }

    /// The sum of all balances.
    pub fn supply(&self) -> u64 {
        self.records
            .iter()
            .map(|r| record_balance(r) as u64)
            .sum::<u64>()
            + self.added.values().map(|b| *b as u64).sum::<u64>()
    }
}

/// The number of records in `records` (sorted) whose key is below `key`,
/// searched from the end: an exponential step back, then a binary search in
/// the last step, so that nearby keys touch nearby memory.
fn split_before(records: &[Record], key: &[u8]) -> usize {
    let mut high = records.len();
    let mut step = 1;
    loop {
        let low = high.saturating_sub(step);
        if low == 0 || record_key(&records[low]) < key {
            return low + records[low..high].partition_point(|r| record_key(r) < key);
        }
        high = low;
        step *= 2;
    }
}

fn check_supply(balances: impl Iterator<Item = Amount>) -> Result<()> {
    let total: u64 = balances.map(u64::from).sum();
    if total > u64::from(u32::MAX) {
        return Err(Error::Invalid(format!(
            "the total supply {total} does not fit a u32 (at most {})",
            u32::MAX
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }

    #[test]
    fn packing_sorts_by_key_whatever_the_insertion_order() {
        let mut a = Balances::from_accounts(&[(key(3), 30), (key(1), 10)]).unwrap();
        a.pay(&key(3), &key(2), 5).unwrap();
        let mut b = Balances::from_accounts(&[(key(1), 10), (key(2), 5), (key(3), 25)]).unwrap();
        assert_eq!(a.pack(), b.pack());
        assert_eq!(a.hash(), b.hash());
        let packed = a.pack().to_vec();
        assert_eq!(packed.len(), 3 * RECORD_LEN);
        assert_eq!(&packed[..32], &[1; 32]);
        assert_eq!(&packed[32..36], &10u32.to_be_bytes());
        assert_eq!(&packed[36..68], &[2; 32]);
    }

    #[test]
    fn merging_new_accounts_matches_sorting_from_scratch() {
        // Keys spread by a multiplicative hash; new accounts land before,
        // between and after the old ones.
        let spread = |i: u32| {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
            k[4] = (i % 7) as u8;
            PublicKey(k)
        };
        let old: Vec<(PublicKey, Amount)> = (0..5_000).map(|i| (spread(i), 10)).collect();
        let mut db = Balances::from_accounts(&old).unwrap();
        let mut all = old.clone();
        for i in 5_000..5_600 {
            let payer = spread(i % 5_000);
            db.pay(&payer, &spread(i), 1).unwrap();
            all.push((spread(i), 1));
            let entry = all.iter_mut().find(|(k, _)| *k == payer).unwrap();
            entry.1 -= 1;
        }
        let mut expected = Balances::from_accounts(&all).unwrap();
        assert_eq!(db.pack(), expected.pack());
        // Merging again with nothing added changes nothing.
        assert_eq!(db.hash(), expected.hash());
        let mut front = Balances::from_accounts(&[(key(200), 5)]).unwrap();
        front.pay(&key(200), &key(1), 1).unwrap();
        front.pay(&key(200), &key(255), 1).unwrap();
        let mut sorted =
            Balances::from_accounts(&[(key(1), 1), (key(200), 3), (key(255), 1)]).unwrap();
        assert_eq!(front.pack(), sorted.pack());
    }

    #[test]
    fn hash_is_sha256_of_the_packed_bytes() {
        let mut db = Balances::from_accounts(&[(key(1), 7)]).unwrap();
        let mut expected = vec![1u8; 32];
        expected.extend_from_slice(&7u32.to_be_bytes());
        assert_eq!(db.hash(), Hash::of(&expected));
        assert_eq!(Balances::default().clone().hash(), Hash::of(b""));
    }

    #[test]
    fn packed_bytes_round_trip() {
        let mut db = Balances::from_accounts(&[(key(5), 1), (key(9), 2), (key(7), 3)]).unwrap();
        db.pay(&key(5), &key(6), 1).unwrap();
        let packed = db.pack().to_vec();
        let mut back = Balances::from_packed(&packed).unwrap();
        assert_eq!(back.pack(), &packed[..]);
        assert_eq!(back.get(&key(6)), Some(1));
        assert_eq!(back.get(&key(5)), Some(0));
    }

    #[test]
    fn from_packed_refuses_what_is_not_a_database() {
        let err = Balances::from_packed(&[0; 35]).unwrap_err().to_string();
        assert!(err.contains("whole number of 36-byte records"), "{err}");
        let mut unsorted = make_record(&key(2), 1).to_vec();
        unsorted.extend_from_slice(&make_record(&key(1), 1));
        let err = Balances::from_packed(&unsorted).unwrap_err().to_string();
        assert!(err.contains("ascending key order"), "{err}");
        let mut repeated = make_record(&key(1), 1).to_vec();
        repeated.extend_from_slice(&make_record(&key(1), 1));
        assert!(Balances::from_packed(&repeated).is_err());
        let mut rich = make_record(&key(1), u32::MAX).to_vec();
        rich.extend_from_slice(&make_record(&key(2), 1));
        let err = Balances::from_packed(&rich).unwrap_err().to_string();
        assert!(err.contains("does not fit a u32"), "{err}");
    }

    #[test]
    fn each_payment_refusal_has_its_own_reason() {
        let mut db = Balances::from_accounts(&[(key(1), 10), (key(2), u32::MAX - 20)]).unwrap();
        assert_eq!(db.pay(&key(1), &key(2), 0), Err(PaymentRefusal::ZeroAmount));
        assert_eq!(
            db.pay(&key(1), &key(1), 1),
            Err(PaymentRefusal::SelfPayment)
        );
        assert_eq!(db.pay(&key(4), &key(1), 1), Err(PaymentRefusal::NoAccount));
        assert_eq!(
            db.pay(&key(1), &key(3), 11),
            Err(PaymentRefusal::InsufficientFunds {
                balance: 10,
                amount: 11
            })
        );
        // The supply invariant makes overflow impossible in a valid database;
        // the check still guards a hand-made one.
        let mut odd = Balances::default();
        odd.set(&key(1), 5);
        odd.set(&key(2), u32::MAX);
        assert_eq!(odd.pay(&key(1), &key(2), 1), Err(PaymentRefusal::Overflow));
        assert_eq!(db.get(&key(1)), Some(10), "refusals change nothing");
    }

    #[test]
    fn a_payment_creates_the_payee_and_never_goes_negative() {
        let mut db = Balances::from_accounts(&[(key(1), 10)]).unwrap();
        db.pay(&key(1), &key(2), 10).unwrap();
        assert_eq!(db.get(&key(1)), Some(0));
        assert_eq!(db.get(&key(2)), Some(10));
        assert!(db.pay(&key(1), &key(2), 1).is_err());
        assert_eq!(db.supply(), 10);
        assert_eq!(db.len(), 2);
    }

    #[test]
    fn genesis_refuses_duplicates_and_oversupply() {
        assert!(Balances::from_accounts(&[(key(1), 1), (key(1), 2)]).is_err());
        assert!(Balances::from_accounts(&[(key(1), u32::MAX), (key(2), 1)]).is_err());
    }
}
