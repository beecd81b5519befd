//! Seals in rounds (`seal.rs`): a voter prevotes a round's seal only once
//! it proves the block after the base's sealed height; the alpha puts in
//! its round the seal its ledger knows; a commit carries it.

use rota_peer::block::BlockHeader;
use rota_peer::seal::{Seal, search};
use rota_peer::wire::consensus::{Header, Kind, SignedHeader, Verified};

use super::*;

/// The seal of `block` at seal time `time` (the first nonce from 1).
fn seal_of(block: &BlockHeader, time: u64) -> Seal {
    search(block, time, 1, u64::MAX).expect("a seal at a low difficulty")
}

/// A seal that does not prove `block`.
fn bad_seal(block: &BlockHeader, time: u64) -> Seal {
    (1..)
        .map(|nonce| Seal { nonce, time })
        .find(|seal| !seal.proves(block))
        .unwrap()
}

/// Slot 10 makes block 1 on the anchor; slot 11 builds on it.
struct Chain {
    k: Keys,
    h10: Verified<SignedHeader>,
    c10: Verified<Certified>,
    block1: BlockHeader,
}

impl Chain {
    fn new() -> Chain {
        let k = Keys::new(3);
        let h10 = k.on_anchor(10, &vec![10]);
        let c10 = k.certified(Kind::Prevote, &[1, 2], &h10);
        let block1 = h10.header.block(k.timing().schedule.shape()).unwrap();
        assert_eq!((block1.number, block1.difficulty), (1, DIFFICULTY));
        Chain {
            k,
            h10,
            c10,
            block1,
        }
    }

    /// Round 11 on round 10, carrying `seal`, signed by its alpha.
    fn round11(&self, seal: Option<Seal>) -> Verified<SignedHeader> {
        let mut header: Header = self.k.on(11, &self.c10, &vec![11]).header;
        header.seal = seal;
        let alpha = &self.k.keys[self.k.alpha(11)];
        Verified::sign_header(alpha, CHAIN, header, Some(self.c10.certificate()))
    }

    /// A server that holds round 10.
    fn holder(&self) -> Node {
        let mut node = Node::new(&self.k, 0);
        node.round(&self.h10, &vec![10], moments(&self.k.timing(), 10).voting);
        node
    }
}

#[test]
fn a_round_s_seal_is_prevoted_only_when_it_proves_the_block_after_the_sealed_height() {
    let c = Chain::new();
    let m11 = moments(&c.k.timing(), 11);
    let time = 5_000;
    let good = c.round11(Some(seal_of(&c.block1, time)));
    assert_eq!(good.header.sealing(), Some(1));
    let sent = c.holder().round(&good, &vec![11], m11.voting);
    assert_eq!(prevotes(&sent).len(), 1, "a seal that proves block 1");
    let bad = c.round11(Some(bad_seal(&c.block1, time)));
    let sent = c.holder().round(&bad, &vec![11], m11.voting);
    assert!(prevotes(&sent).is_empty(), "a seal that does not prove it");
    let none = c.round11(None);
    let sent = c.holder().round(&none, &vec![11], m11.voting);
    assert_eq!(prevotes(&sent).len(), 1, "a round need not carry a seal");
}

#[test]
fn a_seal_of_a_committed_block_is_checked_against_the_ledger_s_copy_or_waited_for() {
    let c = Chain::new();
    let t = c.k.timing();
    let m11 = moments(&t, 11);
    let good = c.round11(Some(seal_of(&c.block1, 7)));
    // Round 10 is committed here: block 1 is in the ledger's keeping, not
    // in the round's header chain. While the ledger does not hold it, the
    // seal cannot be checked, and the server waits.
    let mut node = c.holder();
    let commit = c.k.certified(Kind::Precommit, &[1, 2], &c.h10);
    node.certified(commit, moments(&t, 10).p);
    assert_eq!(node.commits.len(), 1, "round 10 committed");
    let sent = node.round(&good, &vec![11], m11.voting);
    assert!(prevotes(&sent).is_empty(), "block 1 is not held");
    node.ledger.blocks.insert(1, c.block1);
    let sent = node.tick(m11.voting + 1);
    assert_eq!(prevotes(&sent).len(), 1, "block 1 held: the seal proves it");
}

#[test]
fn the_alpha_puts_the_seal_its_ledger_knows_in_its_round_and_the_commit_carries_it() {
    let c = Chain::new();
    let t = c.k.timing();
    let seal = seal_of(&c.block1, 9);
    // The alpha of slot 11 holds round 10 and its prevote certificate:
    // its lock, on which it builds.
    let alpha = c.k.alpha(11);
    let mut node = Node::new(&c.k, alpha);
    node.round(&c.h10, &vec![10], moments(&t, 10).voting);
    node.certified(c.c10.clone(), moments(&t, 10).p);
    node.ledger.seals.insert(1, seal);
    let sent = node.propose(11, &vec![11], t.close(11));
    let round = sent
        .iter()
        .find_map(|m| match m {
            Message::Round { header, .. } => Some(header.clone()),
            _ => None,
        })
        .expect("round 11 sent");
    assert_eq!(round.header.base.slot, 10);
    assert_eq!(round.header.seal, Some(seal));
    assert_eq!(
        (round.header.sealing(), round.header.sealed_after()),
        (Some(1), 1)
    );
    // Committed, the round carries it.
    let round = round.verify(CHAIN, &c.k.list()).unwrap();
    let certified = c.k.certified(Kind::Precommit, &[0, 1], &round);
    node.certified(certified, moments(&t, 11).p);
    let commit = node.commits.last().expect("round 11 committed");
    let top = commit.rounds.last().unwrap();
    assert_eq!(top.header.header.seal, Some(seal));
    // Its next round builds on sealed height 1: block 1 is not sealed
    // again, and no other block waits.
    let next = node.propose(14, &vec![], t.close(14));
    let header = next
        .iter()
        .find_map(|m| match m {
            Message::Round { header, .. } => Some(header.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((header.header.base.sealed, header.header.seal), (1, None));
}

#[test]
fn a_round_that_claims_a_sealed_height_its_base_does_not_leave_is_not_prevoted() {
    let c = Chain::new();
    let m11 = moments(&c.k.timing(), 11);
    // Round 10 carried no seal: the sealed height after it is 0. A round
    // on it that claims block 1 sealed skips the seal that counts.
    let mut header: Header = c.round11(None).header;
    header.base.sealed = 1;
    let alpha = &c.k.keys[c.k.alpha(11)];
    let lie = Verified::sign_header(alpha, CHAIN, header, Some(c.c10.certificate()));
    let sent = c.holder().round(&lie, &vec![11], m11.voting);
    assert!(prevotes(&sent).is_empty());
}
