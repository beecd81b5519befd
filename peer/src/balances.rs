//! The balance database: the accounts in a tree of shared buckets, and its
//! balance hash.
//!
//! The packed database is the account records sorted by public key and nothing
//! else, so every server packs the same state to the same bytes:
//!
//! ```text
//! record  = public key (32) | balance, big-endian u32 (4)     36 bytes
//! packed  = record* in ascending key order, no duplicates
//! ```
//!
//! Its balance hash is a fixed three-level tree over the packed records,
//! cut by the first two bytes of the key, so that a round which changes a
//! few accounts rehashes a few small pieces, never the whole database:
//!
//! ```text
//! bucket(p)  = the records whose key begins with the two bytes p, in order
//! leaf(p)    = SHA-256(bucket(p))                 for each non-empty bucket
//! group(g)   = SHA-256(b | leaf(p) for each non-empty bucket p = (g, b),
//!                      in ascending b)            for each non-empty group g
//! hash       = SHA-256(g | group(g) for each non-empty group g, ascending)
//! ```
//!
//! (`b` and `g` are one byte each; an empty database hashes to SHA-256 of
//! nothing.) Every level's input is a sequence of fixed-size entries in a
//! fixed order, so the tree is a one-to-one encoding of the packed bytes:
//! two databases with one hash would mean a SHA-256 collision at some level.
//! Computing it from scratch costs one SHA-256 pass over the records plus
//! about 34 bytes per non-empty bucket (at most 2.2 MB).
//!
//! [`Balances`] stores exactly that tree: 256 groups of 256 buckets, each
//! shared behind an [`Arc`] and holding its sorted records and its cached
//! hash. A clone copies 256 pointers; a payment copies the one group and the
//! one bucket it changes (if another clone shares them) and marks their
//! hashes stale. A round's state is therefore a clone of its base plus its
//! payments, and its hash costs its changed buckets, their groups and the
//! top: the cost follows the payments, not the number of accounts.
//!
//! One caveat, stated so an operator can weigh it: keys are chosen by their
//! owners, so someone may create many accounts whose keys share two first
//! bytes. Their bucket is then large, and a round touching it rehashes all
//! of it once: at worst the whole database, which is what every round cost
//! before the tree. Each such account costs its creator a payment.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::types::{Amount, Hash, PublicKey};

/// Length of one account record.
pub const RECORD_LEN: usize = 36;

/// Groups in the tree, and buckets in a group: one per value of a key byte.
const FANOUT: usize = 256;

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
/// transaction, or leaves it out of its round; a round carrying one is
/// invalid, and no honest server prevotes it.
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

/// The records whose keys share their first two bytes, and their hash.
#[derive(Clone, Default)]
struct Bucket {
    /// Sorted by key, unique.
    records: Vec<Record>,
    /// `leaf` of these records; `None` once they changed.
    hash: Option<Hash>,
}

impl Bucket {
    fn hash(&mut self) -> Hash {
        *self
            .hash
            .get_or_insert_with(|| Hash::of(self.records.as_flattened()))
    }
}

/// The buckets whose keys share their first byte, and their hash.
#[derive(Clone)]
struct Group {
    /// Indexed by the key's second byte; `None` for an empty bucket.
    buckets: Vec<Option<Arc<Bucket>>>,
    /// `group` of these buckets; `None` once one of them changed.
    hash: Option<Hash>,
}

impl Default for Group {
    fn default() -> Group {
        Group {
            buckets: vec![None; FANOUT],
            hash: None,
        }
    }
}

impl Group {
    fn hash(&mut self) -> Hash {
        if let Some(hash) = self.hash {
            return hash;
        }
        let hash = level(&mut self.buckets, |b| b.hash, Bucket::hash);
        self.hash = Some(hash);
        hash
    }
}

/// One level of the tree: SHA-256 over `index | hash` of each non-empty
/// child in index order, hashing a stale child on the way. A stale child
/// was changed through its parent, so it is not shared any more and
/// `make_mut` copies nothing.
fn level<T: Clone>(
    children: &mut [Option<Arc<T>>],
    cached: impl Fn(&T) -> Option<Hash>,
    compute: impl Fn(&mut T) -> Hash,
) -> Hash {
    let mut level = Sha256::new();
    for (i, child) in children.iter_mut().enumerate() {
        if let Some(child) = child {
            let hash = cached(child).unwrap_or_else(|| compute(Arc::make_mut(child)));
            level.update([i as u8]);
            level.update(hash.0);
        }
    }
    Hash(level.finalize().into())
}

/// The accounts and their balances.
#[derive(Clone)]
pub struct Balances {
    /// Indexed by the key's first byte; `None` for an empty group.
    groups: Vec<Option<Arc<Group>>>,
    /// The balance hash; `None` once anything changed.
    hash: Option<Hash>,
    len: usize,
    /// The sum of all balances: set at creation, kept by payments.
    supply: u64,
}

impl Default for Balances {
    fn default() -> Balances {
        Balances {
            groups: vec![None; FANOUT],
            hash: None,
            len: 0,
            supply: 0,
        }
    }
}

impl PartialEq for Balances {
    fn eq(&self, other: &Balances) -> bool {
        self.len == other.len && self.records().eq(other.records())
    }
}

impl Eq for Balances {}

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
        let supply = check_supply(sorted.iter().map(|(_, balance)| *balance))?;
        Ok(Balances::from_sorted(
            sorted.iter().map(|(k, b)| make_record(k, *b)),
            supply,
        ))
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
        let records = || {
            packed
                .chunks_exact(RECORD_LEN)
                .map(|chunk| -> Record { chunk.try_into().expect("36 bytes") })
        };
        if let Some(i) = packed
            .chunks_exact(RECORD_LEN)
            .zip(packed.chunks_exact(RECORD_LEN).skip(1))
            .position(|(a, b)| a[..32] >= b[..32])
        {
            return Err(Error::Invalid(format!(
                "packed database record {} is not in ascending key order",
                i + 1
            )));
        }
        let supply = check_supply(records().map(|r| record_balance(&r)))?;
        Ok(Balances::from_sorted(records(), supply))
    }

    /// The tree of `records`, which are sorted and unique.
    fn from_sorted(records: impl Iterator<Item = Record>, supply: u64) -> Balances {
        let mut balances = Balances {
            supply,
            ..Balances::default()
        };
        let mut groups: Vec<Group> = Vec::new();
        let mut current: Option<(u8, u8)> = None;
        let mut bucket = Bucket::default();
        let flush = |at: (u8, u8), bucket: Bucket, groups: &mut Vec<Group>| {
            if groups.len() <= at.0 as usize {
                groups.resize_with(at.0 as usize + 1, Group::default);
            }
            groups[at.0 as usize].buckets[at.1 as usize] = Some(Arc::new(bucket));
        };
        for record in records {
            let at = (record[0], record[1]);
            if current.is_some_and(|c| c != at) {
                flush(
                    current.expect("set"),
                    std::mem::take(&mut bucket),
                    &mut groups,
                );
            }
            current = Some(at);
            bucket.records.push(record);
            balances.len += 1;
        }
        if let Some(at) = current {
            flush(at, bucket, &mut groups);
        }
        for (g, group) in groups.into_iter().enumerate() {
            if group.buckets.iter().any(Option::is_some) {
                balances.groups[g] = Some(Arc::new(group));
            }
        }
        balances
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn bucket(&self, key: &PublicKey) -> Option<&Bucket> {
        let group = self.groups[key.0[0] as usize].as_ref()?;
        group.buckets[key.0[1] as usize].as_deref()
    }

    /// The balance of `key`, or `None` when it has no account.
    pub fn get(&self, key: &PublicKey) -> Option<Amount> {
        let bucket = self.bucket(key)?;
        let i = bucket
            .records
            .binary_search_by(|record| record_key(record).cmp(&key.0[..]))
            .ok()?;
        Some(record_balance(&bucket.records[i]))
    }

    /// Sets the balance of `key`, creating its account if needed; the
    /// caller keeps `supply` right.
    fn set(&mut self, key: &PublicKey, balance: Amount) {
        self.hash = None;
        let group = self.groups[key.0[0] as usize].get_or_insert_with(Default::default);
        let group = Arc::make_mut(group);
        group.hash = None;
        let bucket = group.buckets[key.0[1] as usize].get_or_insert_with(Default::default);
        let bucket = Arc::make_mut(bucket);
        bucket.hash = None;
        match bucket
            .records
            .binary_search_by(|record| record_key(record).cmp(&key.0[..]))
        {
            Ok(i) => bucket.records[i][32..].copy_from_slice(&balance.to_be_bytes()),
            Err(i) => {
                bucket.records.insert(i, make_record(key, balance));
                self.len += 1;
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

    /// The balance hash (see the module documentation): only the buckets
    /// and groups changed since it was last computed are hashed again.
    pub fn hash(&mut self) -> Hash {
        if let Some(hash) = self.hash {
            return hash;
        }
        let hash = level(&mut self.groups, |g| g.hash, Group::hash);
        self.hash = Some(hash);
        hash
    }

    /// The records in key order.
    fn records(&self) -> impl Iterator<Item = &Record> + '_ {
        self.groups
            .iter()
            .flatten()
            .flat_map(|group| group.buckets.iter().flatten())
            .flat_map(|bucket| bucket.records.iter())
    }

    /// The packed database.
    pub fn pack(&self) -> Vec<u8> {
        let mut packed = Vec::with_capacity(self.len * RECORD_LEN);
        for bucket in self
            .groups
            .iter()
            .flatten()
            .flat_map(|group| group.buckets.iter().flatten())
        {
            packed.extend_from_slice(bucket.records.as_flattened());
        }
        packed
    }

    /// Every account with its balance, in key order.
    pub fn accounts(&self) -> impl Iterator<Item = (PublicKey, Amount)> + '_ {
        self.records().map(|r| {
            (
                PublicKey(record_key(r).try_into().expect("32 bytes")),
                record_balance(r),
            )
        })
    }

    /// The sum of all balances.
    pub fn supply(&self) -> u64 {
        self.supply
    }
}

/// The total of `balances`, refused when it does not fit a `u32`.
fn check_supply(balances: impl Iterator<Item = Amount>) -> Result<u64> {
    let total: u64 = balances.map(u64::from).sum();
    if total > u64::from(u32::MAX) {
        return Err(Error::Invalid(format!(
            "the total supply {total} does not fit a u32 (at most {})",
            u32::MAX
        )));
    }
    Ok(total)
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
        assert_eq!(db.hash(), expected.hash());
        let mut front = Balances::from_accounts(&[(key(200), 5)]).unwrap();
        front.pay(&key(200), &key(1), 1).unwrap();
        front.pay(&key(200), &key(255), 1).unwrap();
        let sorted = Balances::from_accounts(&[(key(1), 1), (key(200), 3), (key(255), 1)]).unwrap();
        assert_eq!(front.pack(), sorted.pack());
    }

    /// The balance hash written out as the module documentation defines
    /// it, from the packed bytes alone.
    fn tree_hash(packed: &[u8]) -> Hash {
        let records: Vec<&[u8]> = packed.chunks(RECORD_LEN).collect();
        let mut top = Vec::new();
        for g in 0..=255u8 {
            let mut group = Vec::new();
            for b in 0..=255u8 {
                let bucket: Vec<u8> = records
                    .iter()
                    .filter(|r| r[0] == g && r[1] == b)
                    .flat_map(|r| r.iter().copied())
                    .collect();
                if !bucket.is_empty() {
                    group.push(b);
                    group.extend_from_slice(&Hash::of(&bucket).0);
                }
            }
            if !group.is_empty() {
                top.push(g);
                top.extend_from_slice(&Hash::of(&group).0);
            }
        }
        Hash::of(&top)
    }

    #[test]
    fn the_hash_is_the_documented_tree() {
        let mut db = Balances::from_accounts(&[(key(1), 7)]).unwrap();
        let mut record = vec![1u8; 32];
        record.extend_from_slice(&7u32.to_be_bytes());
        let mut group = vec![1u8];
        group.extend_from_slice(&Hash::of(&record).0);
        let mut top = vec![1u8];
        top.extend_from_slice(&Hash::of(&group).0);
        assert_eq!(db.hash(), Hash::of(&top));
        assert_eq!(Balances::default().clone().hash(), Hash::of(b""));
        // Keys sharing a first byte, a bucket, or neither.
        let spread = |a: u8, b: u8, c: u8| {
            let mut k = [c; 32];
            k[0] = a;
            k[1] = b;
            PublicKey(k)
        };
        let accounts: Vec<(PublicKey, Amount)> =
            [(0, 0, 1), (0, 0, 2), (0, 9, 1), (7, 9, 1), (255, 255, 255)]
                .iter()
                .map(|&(a, b, c)| (spread(a, b, c), u32::from(c)))
                .collect();
        let mut db = Balances::from_accounts(&accounts).unwrap();
        assert_eq!(db.hash(), tree_hash(&db.pack()));
    }

    #[test]
    fn a_changed_clone_rehashes_what_changed_and_leaves_its_base_alone() {
        let spread = |i: u32| {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
            PublicKey(k)
        };
        let accounts: Vec<(PublicKey, Amount)> = (0..3_000).map(|i| (spread(i), 100)).collect();
        let mut base = Balances::from_accounts(&accounts).unwrap();
        let base_hash = base.hash();
        let base_packed = base.pack();
        let mut round = base.clone();
        for i in 0..200 {
            // Existing payees, and new accounts in new and old buckets.
            round.pay(&spread(i), &spread(i * 7 + 1), 3).unwrap();
            round.pay(&spread(i), &spread(10_000 + i), 1).unwrap();
        }
        assert_eq!(round.len(), 3_200);
        assert_eq!(round.supply(), base.supply());
        let hash = round.hash();
        let mut scratch = Balances::from_packed(&round.pack()).unwrap();
        assert_eq!(hash, scratch.hash(), "incremental equals from scratch");
        assert_eq!(hash, tree_hash(&round.pack()));
        assert_eq!(round, scratch);
        // The base is what it was.
        assert_eq!(base.pack(), base_packed);
        assert_eq!(base.hash(), base_hash);
        assert_eq!(base.get(&spread(10_000)), None);
        // A change after a hash is seen by the next hash.
        round.pay(&spread(5), &spread(6), 1).unwrap();
        assert_ne!(round.hash(), hash);
        assert_eq!(round.hash(), tree_hash(&round.pack()));
    }

    #[test]
    fn packed_bytes_round_trip() {
        let mut db = Balances::from_accounts(&[(key(5), 1), (key(9), 2), (key(7), 3)]).unwrap();
        db.pay(&key(5), &key(6), 1).unwrap();
        let packed = db.pack();
        let back = Balances::from_packed(&packed).unwrap();
        assert_eq!(back.pack(), packed);
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
