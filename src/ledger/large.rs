//! Large replies to clients: the packed database of a `D` (36 bytes an
//! account) and the block of a `B` (up to 28 MB). Three things bound what a
//! flood of them costs, whatever the clients do with the replies:
//!
//! - **Shared, not copied.** Every `D` answered from one committed database
//!   shares one [`Body`], made (one copy of the packed bytes) at the first
//!   `D` after each commit; the listener hands it to libzmq without a copy.
//!   A `D` costs the ledger thread a few pointer copies, whatever the size.
//! - **Bytes held** (`limits.large_reply_bytes`). Bodies are counted on a
//!   [`Gauge`] while anything holds them: the cache here, a reply in the
//!   channel, or libzmq's queue for a client that does not read. While the
//!   gauge is at the limit, a `B`, and a `D` that needs a new body, are
//!   refused as busy. The bytes held stay under the limit plus one body.
//! - **Bytes sent per second** (`limits.large_reply_bytes_per_s`), a token
//!   bucket ([`Budget`]) that each reply is charged its full size: it bounds
//!   the block reads of the ledger thread and the bytes the node's I/O
//!   thread writes for clients, so that rounds keep their share of both.
//!
//! Refused replies are answered [`BUSY`]; a client tries again later. Both
//! limits are for clients alone: servers fetch on their own sockets.

use std::sync::Arc;

use rota_peer::seal::Seal;
use rota_peer::wire::Reply;
use rota_peer::{Hash, Millis};
use rota_sockets::large::{Body, Gauge};

use crate::config::Limits;

/// The `E` text of a large reply refused by either limit.
pub const BUSY: &str = "the node is busy with large replies (D, B); try again shortly";

/// A large reply: the frames before the body, and the body.
#[derive(Debug)]
pub struct Large {
    pub head: Vec<Vec<u8>>,
    pub body: Arc<Body>,
}

/// What a `D` or `B` is answered with.
#[derive(Debug)]
pub enum Answer {
    Large(Large),
    /// A short reply instead: busy, or no such block.
    Short(Reply),
}

/// The head of `reply`, a reply whose last frame is its body: its frames
/// but the last, so that the wire encoding stays in one place.
fn head(reply: Reply) -> Vec<Vec<u8>> {
    let mut frames = reply.encode();
    frames.pop();
    frames
}

/// A token bucket of bytes per second that may run into debt: a reply is
/// sent while the bucket is not empty and charged afterwards, so that one
/// larger than a second's worth still goes out, and the average holds.
#[derive(Debug)]
pub struct Budget {
    per_s: u64,
    /// Bytes that may still be sent; negative after a large reply.
    tokens: i128,
    at: Millis,
}

impl Budget {
    /// A full bucket (one second's worth) at `now`.
    pub fn new(per_s: u64, now: Millis) -> Budget {
        Budget {
            per_s,
            tokens: per_s as i128,
            at: now,
        }
    }

    /// Whether a reply may be sent at `now`.
    pub fn open(&mut self, now: Millis) -> bool {
        let elapsed = now.saturating_sub(self.at) as i128;
        self.at = self.at.max(now);
        let refill = elapsed * self.per_s as i128 / 1_000;
        self.tokens = (self.tokens + refill).min(self.per_s as i128);
        self.tokens > 0
    }

    /// Charges a reply of `bytes`.
    pub fn spend(&mut self, bytes: usize) {
        self.tokens -= bytes as i128;
    }
}

/// The large-reply state of the ledger thread.
#[derive(Debug)]
pub struct LargeReplies {
    gauge: Arc<Gauge>,
    max_bytes: u64,
    budget: Budget,
    /// The body of the last committed database a `D` asked for.
    database: Option<(Hash, Arc<Body>)>,
}

impl LargeReplies {
    pub fn new(limits: &Limits, now: Millis) -> LargeReplies {
        LargeReplies {
            gauge: Arc::new(Gauge::default()),
            max_bytes: limits.large_reply_bytes,
            budget: Budget::new(limits.large_reply_bytes_per_s, now),
            database: None,
        }
    }

    /// Bytes of large bodies held now, anywhere.
    pub fn held(&self) -> u64 {
        self.gauge.bytes()
    }

    fn full(&self) -> bool {
        self.gauge.bytes() >= self.max_bytes
    }

    /// The `D` reply for the committed database `hash`, whose packed bytes
    /// `packed` gives (called only when a new body is needed).
    pub fn database(
        &mut self,
        reply: Reply,
        hash: Hash,
        packed: impl FnOnce() -> Vec<u8>,
        now: Millis,
    ) -> Answer {
        if !self.budget.open(now) {
            return Answer::Short(Reply::error(BUSY));
        }
        let body = match &self.database {
            Some((cached, body)) if *cached == hash => body.clone(),
            Some(_) | None => {
                // Let go of the old database first: it counts while held.
                self.database = None;
                if self.full() {
                    return Answer::Short(Reply::error(BUSY));
                }
                let body = Body::new(packed(), &self.gauge);
                self.database = Some((hash, body.clone()));
                body
            }
        };
        self.budget.spend(body.len());
        Answer::Large(Large {
            head: head(reply),
            body,
        })
    }

    /// The `B` reply for a block that `read` fetches from the store with
    /// its seal (`None` if there is no such block: `missing` is the answer
    /// then).
    pub fn block(
        &mut self,
        read: impl FnOnce() -> crate::Result<Option<(Option<Seal>, Vec<u8>)>>,
        missing: impl FnOnce() -> Reply,
        now: Millis,
    ) -> crate::Result<Answer> {
        if !self.budget.open(now) || self.full() {
            return Ok(Answer::Short(Reply::error(BUSY)));
        }
        let Some((seal, bytes)) = read()? else {
            return Ok(Answer::Short(missing()));
        };
        self.budget.spend(bytes.len());
        Ok(Answer::Large(Large {
            head: head(Reply::Block {
                seal,
                block: Vec::new(),
            }),
            body: Body::new(bytes, &self.gauge),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(bytes: u64, per_s: u64) -> Limits {
        Limits {
            large_reply_bytes: bytes,
            large_reply_bytes_per_s: per_s,
            ..Limits::default()
        }
    }

    fn database_reply(hash: Hash) -> Reply {
        Reply::Database {
            hash,
            slot: 5,
            height: 2,
            certified: Vec::new(),
            packed: Vec::new(),
        }
    }

    fn large(answer: Answer) -> Large {
        match answer {
            Answer::Large(large) => large,
            Answer::Short(reply) => panic!("not a large reply: {reply:?}"),
        }
    }

    fn is_busy(answer: &Answer) -> bool {
        matches!(answer, Answer::Short(reply) if *reply == Reply::error(BUSY))
    }

    #[test]
    fn head_and_body_are_the_whole_reply() {
        let packed = vec![3; 72];
        let whole = Reply::Database {
            hash: Hash([1; 32]),
            slot: 5,
            height: 2,
            certified: Vec::new(),
            packed: packed.clone(),
        };
        let mut frames = head(database_reply(Hash([1; 32])));
        frames.push(packed);
        assert_eq!(frames, whole.encode());
        let seal = Some(rota_peer::seal::Seal { nonce: 5, time: 6 });
        let mut frames = head(Reply::Block {
            seal,
            block: Vec::new(),
        });
        frames.push(vec![9; 10]);
        let whole = Reply::Block {
            seal,
            block: vec![9; 10],
        };
        assert_eq!(frames, whole.encode());
    }

    #[test]
    fn the_budget_refills_per_second_and_lets_one_large_reply_into_debt() {
        let mut budget = Budget::new(1_000, 0);
        assert!(budget.open(0));
        budget.spend(5_000);
        assert!(!budget.open(1_000), "4,000 in debt, 1,000 back");
        assert!(!budget.open(3_999));
        assert!(budget.open(4_001));
        assert!(budget.open(1_000_000));
        budget.spend(999);
        assert!(budget.open(1_000_000), "capped at one second's worth");
        budget.spend(1);
        assert!(!budget.open(1_000_000));
        assert!(budget.open(u64::MAX), "no overflow");
    }

    #[test]
    fn every_d_of_one_database_shares_one_body() {
        let mut replies = LargeReplies::new(&limits(1 << 20, 1 << 30), 0);
        let packs = std::cell::Cell::new(0);
        let pack = || {
            packs.set(packs.get() + 1);
            vec![7; 36_000]
        };
        let mut d = |hash| large(replies.database(database_reply(hash), hash, pack, 0));
        let (one, other) = (Hash([1; 32]), Hash([2; 32]));
        let first = d(one);
        let second = d(one);
        assert!(Arc::ptr_eq(&first.body, &second.body));
        assert_eq!(packs.get(), 1);
        drop((first, second));
        let third = d(other);
        assert_eq!(packs.get(), 2);
        drop(third);
        assert_eq!(replies.held(), 36_000, "the old database was let go");
    }

    #[test]
    fn bodies_held_past_the_limit_make_new_ones_busy() {
        let mut replies = LargeReplies::new(&limits(100_000, 1 << 30), 0);
        let block = |n: usize| move || Ok(Some((None, vec![1; n])));
        let missing = || Reply::error("no such block");
        let held: Vec<Large> = (0..2)
            .map(|_| large(replies.block(block(60_000), missing, 0).unwrap()))
            .collect();
        assert_eq!(replies.held(), 120_000, "past the limit by one body");
        assert!(is_busy(&replies.block(block(60_000), missing, 0).unwrap()));
        let hash = Hash([1; 32]);
        let refused = replies.database(database_reply(hash), hash, || vec![0; 10], 0);
        assert!(is_busy(&refused), "a new database body is refused too");
        drop(held);
        assert_eq!(replies.held(), 0);
        large(replies.block(block(10), missing, 0).unwrap());
        let Answer::Short(reply) = replies.block(|| Ok(None), missing, 0).unwrap() else {
            panic!("a missing block is not a large reply");
        };
        assert_eq!(reply, Reply::error("no such block"));
    }

    #[test]
    fn bytes_past_the_rate_are_busy_until_it_refills() {
        let mut replies = LargeReplies::new(&limits(1 << 30, 100_000), 0);
        let hash = Hash([1; 32]);
        let pack = || vec![0; 150_000];
        let mut at = |now| replies.database(database_reply(hash), hash, pack, now);
        large(at(0));
        assert!(is_busy(&at(400)), "50,000 in debt, 40,000 back");
        large(at(600));
    }
}
