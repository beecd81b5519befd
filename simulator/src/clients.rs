//! The clients: they pay, ask after their payments, and remember what they
//! were told.
//!
//! Payments are real: signed by the payer's ed25519 key for the run's chain
//! and checked by the same [`Verifier`] the listener uses, so every payment
//! that reaches a core is a genuine [`VerifiedTx`] (signing is
//! deterministic, so a seed replays the same bytes). A client sends each
//! payment to a random server and keeps its disposition (`T`: accepted,
//! forwarded, held, or refused), then asks random servers after it (`S`:
//! committed in block n, pending, lost, unknown).
//!
//! Some payments must be refused whatever happens (zero, to oneself, from
//! an account that does not exist, more than the whole supply, stamped
//! far from any clock); some are sent again to another server. The
//! invariants read [`Clients::must_refuse`] and what honest servers said.

use std::collections::BTreeMap;

use rota_peer::balances::Balances;
use rota_peer::keys::Keypair;
use rota_peer::transaction::{Transaction, VerifiedTx, Verifier};
use rota_peer::wire::{Disposition, Reply, TxStatus};
use rota_peer::{Amount, Millis, PublicKey, ServerId, TxId};

use crate::profile::Profile;
use crate::rng::Rng;

/// Why a payment must be refused, if it must.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
    Zero,
    ToSelf,
    NoAccount,
    OverSupply,
    Stale,
}

impl Bad {
    const ALL: [Bad; 5] = [
        Bad::Zero,
        Bad::ToSelf,
        Bad::NoAccount,
        Bad::OverSupply,
        Bad::Stale,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bad::Zero => "zero amount",
            Bad::ToSelf => "to oneself",
            Bad::NoAccount => "unknown payer",
            Bad::OverSupply => "more than the supply",
            Bad::Stale => "stale timestamp",
        }
    }
}

/// A payment the clients made.
#[derive(Clone, Debug)]
pub struct Payment {
    pub tx: VerifiedTx,
    pub bad: Option<Bad>,
}

/// What one client request was, for reading its answer.
#[derive(Clone, Copy, Debug)]
pub enum Asked {
    /// `T` for payment `index`, to `server`, at true time `at`; `fresh`
    /// when the payment was made for this submission (not sent again).
    Submit {
        index: usize,
        server: ServerId,
        at: Millis,
        fresh: bool,
    },
    /// `S` for payment `index`, to `server`.
    Status { index: usize, server: ServerId },
}

/// What a server told a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Told {
    Disposition(Disposition),
    Refused(String),
    Status(TxStatus),
    Other(String),
}

impl Told {
    /// The answer in a word, for the run's tally.
    pub fn word(&self) -> &'static str {
        match self {
            Told::Disposition(d) => d.word(),
            Told::Refused(_) => "refused",
            Told::Status(TxStatus::Committed { .. }) => "committed",
            Told::Status(TxStatus::Pending) => "pending",
            Told::Status(TxStatus::Lost { .. }) => "lost",
            Told::Status(TxStatus::Unknown) => "unknown",
            Told::Other(_) => "other",
        }
    }
}

/// The run's clients. See the module documentation.
pub struct Clients {
    chain: String,
    keys: Vec<Keypair>,
    stranger: Keypair,
    verifier: Verifier,
    pub payments: Vec<Payment>,
    index: BTreeMap<TxId, usize>,
    /// Every request sent, by the number its client endpoint carries.
    pub asked: Vec<Asked>,
    /// Each client's clock offset.
    skews: Vec<i64>,
    /// How many answers of each kind the clients got.
    pub tally: BTreeMap<&'static str, u64>,
}

/// The key of client account `k`: the same in every run.
fn account_key(k: usize) -> Keypair {
    let mut seed = [0u8; 32];
    seed[..6].copy_from_slice(b"client");
    seed[6..14].copy_from_slice(&(k as u64).to_be_bytes());
    Keypair::from_seed(&seed)
}

impl Clients {
    pub fn new(chain: &str, p: &Profile, rng: &mut Rng) -> Clients {
        Clients {
            chain: chain.to_string(),
            keys: (0..p.accounts).map(account_key).collect(),
            stranger: account_key(1_000),
            verifier: Verifier::new(chain),
            payments: Vec::new(),
            index: BTreeMap::new(),
            asked: Vec::new(),
            skews: (0..p.accounts)
                .map(|_| rng.signed(p.client_skew_ms))
                .collect(),
            tally: BTreeMap::new(),
        }
    }

    /// The genesis: every account holds the same balance.
    pub fn genesis(&self, p: &Profile) -> Balances {
        let accounts: Vec<(PublicKey, Amount)> =
            self.keys.iter().map(|k| (k.public(), p.balance)).collect();
        Balances::from_accounts(&accounts).expect("the profile's genesis fits a u32")
    }

    pub fn payment(&self, id: &TxId) -> Option<&Payment> {
        self.index.get(id).map(|i| &self.payments[*i])
    }

    /// Whether payment `id` must never be committed, and why.
    pub fn must_refuse(&self, id: &TxId) -> Option<Bad> {
        self.payment(id).and_then(|p| p.bad)
    }

    /// A payment to submit at true time `now`: a new one, or an earlier
    /// one again. Returns its index, and whether it is new.
    pub fn next_payment(&mut self, now: Millis, p: &Profile, rng: &mut Rng) -> (usize, bool) {
        if !self.payments.is_empty() && rng.chance(p.resubmit) {
            return (rng.index(self.payments.len()), false);
        }
        let count = self.keys.len();
        let payer = rng.index(count);
        let mut payee = rng.index(count - 1);
        if payee >= payer {
            payee += 1;
        }
        let clock = now.saturating_add_signed(self.skews[payer]);
        let mut amount = rng.range(1, 50) as Amount;
        let mut to = self.keys[payee].public();
        let mut key = &self.keys[payer];
        let mut stamp = clock;
        let bad = rng
            .chance(p.bad_payments)
            .then(|| Bad::ALL[rng.index(Bad::ALL.len())]);
        match bad {
            None => {}
            Some(Bad::Zero) => amount = 0,
            Some(Bad::ToSelf) => to = key.public(),
            Some(Bad::NoAccount) => key = &self.stranger,
            Some(Bad::OverSupply) => amount = Amount::MAX,
            Some(Bad::Stale) => {
                stamp = clock.saturating_sub(3 * p.slot_ms + rng.range(0, p.slot_ms));
            }
        }
        let tx = Transaction::sign(&self.chain, key, to, amount, stamp);
        let tx = self
            .verifier
            .verify(tx)
            .expect("a payment the simulator signs verifies");
        let index = self.payments.len();
        self.index.insert(tx.id(), index);
        self.payments.push(Payment { tx, bad });
        (index, true)
    }

    /// Records a request and returns the client endpoint number its
    /// answer comes back to.
    pub fn ask(&mut self, asked: Asked) -> usize {
        self.asked.push(asked);
        self.asked.len() - 1
    }

    /// Reads an answer.
    pub fn told(reply: &Reply) -> Told {
        match reply {
            Reply::Submitted { disposition, .. } => Told::Disposition(*disposition),
            Reply::Status(status) => Told::Status(*status),
            Reply::Error(message) => Told::Refused(message.clone()),
            other => Told::Other(format!("{other:?}")),
        }
    }
}
