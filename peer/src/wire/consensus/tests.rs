//! The consensus encodings: each round-trips, each field sits where the
//! module essays say, and verification refuses every forgery it should.

use super::*;
use crate::block::{BlockHeader, Position, Shape};
use crate::keys::Keypair;
use crate::types::ServerId;
use crate::wire::ServerList;

const CHAIN: &str = "test";
const SLOT_MS: u64 = 2_000;

/// A chain of `slot_ms` slots whose blocks are not sealed.
fn shape(slot_ms: u64) -> Shape {
    Shape {
        slot_ms,
        difficulty: 0,
    }
}

fn keys(n: usize) -> Vec<Keypair> {
    (0..n)
        .map(|i| Keypair::from_seed(&[i as u8 + 1; 32]))
        .collect()
}

fn list(keys: &[Keypair]) -> ServerList {
    ServerList::new(keys.iter().map(Keypair::public).collect())
}

fn id(index: usize) -> ServerId {
    ServerId::from_index(index)
}

/// A header of `slot` on the anchor (slot 0), signed by its alpha.
fn anchored(keys: &[Keypair], slot: Slot) -> Verified<SignedHeader> {
    let header = Header {
        slot,
        base: Base {
            digest: Hash::default(),
            slot: 0,
            balance: Hash([7; 32]),
            chain: Default::default(),
            sealed: 0,
        },
        payments: Hash([8; 32]),
        result: Hash([9; 32]),
        seal: None,
    };
    let alpha = &keys[(slot % keys.len() as u64) as usize];
    Verified::sign_header(alpha, CHAIN, header, None)
}

fn votes(
    keys: &[Keypair],
    who: &[usize],
    kind: Kind,
    slot: Slot,
    digest: Hash,
) -> Vec<Verified<Vote>> {
    who.iter()
        .map(|i| Verified::sign_vote(&keys[*i], CHAIN, id(*i), kind, slot, digest))
        .collect()
}

fn certificate(
    keys: &[Keypair],
    who: &[usize],
    kind: Kind,
    header: &SignedHeader,
) -> Verified<Certificate> {
    let v = votes(keys, who, kind, header.slot(), header.digest());
    Verified::assemble(&v, list(keys).majority()).expect("a majority")
}

/// A header of `slot` built on `base` with its certificate.
fn built_on(
    keys: &[Keypair],
    slot: Slot,
    base: &SignedHeader,
    cert: Verified<Certificate>,
) -> Verified<SignedHeader> {
    let header = Header {
        slot,
        base: Base {
            digest: base.digest(),
            slot: base.slot(),
            balance: base.header.result,
            chain: Default::default(),
            sealed: 0,
        },
        payments: Hash([10; 32]),
        result: Hash([11; 32]),
        seal: None,
    };
    let alpha = &keys[(slot % keys.len() as u64) as usize];
    Verified::sign_header(alpha, CHAIN, header, Some(cert))
}

#[test]
fn header_fields_sit_at_their_offsets_and_the_digest_is_their_sha256() {
    let k = keys(3);
    let h = anchored(&k, 5).header;
    let bytes = h.encode();
    assert_eq!(bytes.len(), HEADER_LEN);
    assert_eq!(&bytes[0..8], &5u64.to_be_bytes());
    assert_eq!(&bytes[40..48], &0u64.to_be_bytes());
    assert_eq!(&bytes[48..80], &[7; 32]);
    assert_eq!(&bytes[80..88], &0u64.to_be_bytes());
    assert_eq!(&bytes[88..120], &[0; 32]);
    assert_eq!(&bytes[120..128], &0u64.to_be_bytes());
    assert_eq!(&bytes[128..160], &[8; 32]);
    assert_eq!(&bytes[160..192], &[9; 32]);
    assert_eq!(&bytes[192..208], &[0; 16], "no seal");
    assert_eq!(h.digest(), Hash::of(&bytes));
    assert_eq!(Header::decode(&bytes).unwrap(), h);
    // A seal: the nonce and the time at the end; it seals the block after
    // the base's sealed height, which must be in the base's chain.
    let sealed = Header {
        base: Base {
            chain: Position {
                height: 4,
                block: Hash([3; 32]),
            },
            sealed: 2,
            ..h.base
        },
        seal: Some(crate::seal::Seal {
            nonce: 11,
            time: 12,
        }),
        ..h
    };
    let bytes = sealed.encode();
    assert_eq!(&bytes[120..128], &2u64.to_be_bytes());
    assert_eq!(&bytes[192..200], &11u64.to_be_bytes());
    assert_eq!(&bytes[200..208], &12u64.to_be_bytes());
    assert_eq!(Header::decode(&bytes).unwrap(), sealed);
    assert_eq!((sealed.sealing(), sealed.sealed_after()), (Some(3), 3));
    assert_eq!((h.sealing(), h.sealed_after()), (None, 0));
    // Nonce 0 is no seal, and then the time must be 0 too.
    let mut odd = bytes;
    odd[192..200].copy_from_slice(&[0; 8]);
    assert!(Header::decode(&odd).is_err());
}

#[test]
fn a_header_that_seals_past_its_base_s_blocks_is_refused() {
    let k = keys(3);
    let servers = list(&k);
    let signed = |base: Base, seal| {
        let header = Header {
            slot: 5,
            base,
            payments: Hash([8; 32]),
            result: Hash([9; 32]),
            seal,
        };
        Verified::<SignedHeader>::sign_header(&k[2], CHAIN, header, None).into_inner()
    };
    let seal = Some(crate::seal::Seal { nonce: 1, time: 1 });
    let anchor = anchored(&k, 5).header.base;
    // At height 0 nothing can be sealed; a sealed height above the chain's
    // is refused with or without a seal.
    assert!(signed(anchor, seal).verify(CHAIN, &servers).is_err());
    let past = Base {
        sealed: 1,
        ..anchor
    };
    assert!(signed(past, None).verify(CHAIN, &servers).is_err());
    assert!(signed(anchor, None).verify(CHAIN, &servers).is_ok());
}

#[test]
fn a_header_fixes_the_block_its_round_makes_and_where_the_chain_stands_after() {
    let k = keys(3);
    let mut h = anchored(&k, 5).header;
    h.base.chain = Position {
        height: 6,
        block: Hash([4; 32]),
    };
    let block = h
        .block(shape(2_000))
        .expect("a round with payments makes a block");
    assert_eq!(
        block,
        BlockHeader {
            number: 7,
            previous: Hash([4; 32]),
            slot: 5,
            timestamp: 10_000,
            merkle_root: Hash([8; 32]),
            balance_hash: Hash([9; 32]),
            difficulty: 0,
            nonce: 0,
        }
    );
    assert_eq!(
        h.after(shape(2_000)),
        Position {
            height: 7,
            block: block.hash()
        }
    );
    // Another slot length names another time, so another block id.
    assert_ne!(h.after(shape(1_000)), h.after(shape(2_000)));
    // A round with no payments makes no block: the chain stays.
    h.payments = Hash::default();
    assert_eq!(h.block(shape(2_000)), None);
    assert_eq!(h.after(shape(2_000)), h.base.chain);
}

#[test]
fn the_statement_binds_domain_chain_kind_slot_and_digest() {
    let s = statement("ab", Kind::Prevote, 3, &Hash([4; 32]));
    let mut expected = b"rota consensus v1".to_vec();
    expected.extend_from_slice(&[2, b'a', b'b', 2]);
    expected.extend_from_slice(&3u64.to_be_bytes());
    expected.extend_from_slice(&[4; 32]);
    assert_eq!(s, expected);
}

#[test]
fn every_message_round_trips_and_verifies() {
    let k = keys(4);
    let servers = list(&k);
    let first = anchored(&k, 5);
    let cert = certificate(&k, &[0, 1, 2], Kind::Prevote, &first);
    let second = built_on(&k, 6, &first, cert.clone());
    for header in [&first, &second] {
        let bytes = header.encode();
        let back = SignedHeader::decode(&bytes, 4).unwrap();
        assert_eq!(&back, &**header);
        back.verify(CHAIN, &servers).unwrap();
    }
    let back = Certificate::decode(&cert.encode(), 4).unwrap();
    assert_eq!(back, *cert);
    back.verify(CHAIN, &servers).unwrap();

    let vote = Verified::sign_vote(&k[3], CHAIN, id(3), Kind::Prevote, 6, second.digest());
    let back = Vote::decode(&vote.encode()).unwrap();
    assert_eq!(back.encode().len(), VOTE_LEN);
    back.verify(CHAIN, &servers).unwrap();

    let prevote = Verified::<Prevote>::join(vote.clone(), second.clone()).unwrap();
    let back = Prevote::decode(&prevote.encode(), 4).unwrap();
    assert_eq!(back, *prevote);
    assert_eq!(back.verify(CHAIN, &servers).unwrap(), prevote);

    let pc = votes(&k, &[0], Kind::Precommit, 5, first.digest()).remove(0);
    let precommit = Verified::<Precommit>::join(pc, first.clone(), cert.clone()).unwrap();
    let back = Precommit::decode(&precommit.encode(), 4).unwrap();
    assert_eq!(back, *precommit);
    assert_eq!(back.verify(CHAIN, &servers).unwrap(), precommit);

    let certified = Verified::<Certified>::join(first.clone(), cert.clone()).unwrap();
    let back = Certified::decode(&certified.encode(), 4).unwrap();
    assert_eq!(back.verify(CHAIN, &servers).unwrap(), certified);
}

#[test]
fn evidence_is_two_different_headers_of_one_slot_by_its_alpha() {
    let k = keys(3);
    let servers = list(&k);
    let first = anchored(&k, 4);
    let mut h = first.header;
    h.payments = Hash([1; 32]);
    let second = Verified::sign_header(&k[1], CHAIN, h, None);
    let evidence = Verified::<Evidence>::of(&first, &second).unwrap();
    let back = Evidence::decode(&evidence.encode(), 3).unwrap();
    assert_eq!(back.verify(CHAIN, &servers).unwrap(), evidence);
    assert_eq!(back.slot(), 4);
    assert!(Verified::<Evidence>::of(&first, &first).is_none());
    let same = Evidence {
        first: first.clone().into_inner(),
        second: first.clone().into_inner(),
    };
    assert!(same.verify(CHAIN, &servers).is_err());
    let other_slot = Evidence {
        first: first.into_inner(),
        second: anchored(&k, 5).into_inner(),
    };
    assert!(other_slot.verify(CHAIN, &servers).is_err());
}

#[test]
fn a_header_not_signed_by_its_slots_alpha_is_refused() {
    let k = keys(3);
    let servers = list(&k);
    let good = anchored(&k, 4);
    let forged = Verified::sign_header(&k[0], CHAIN, good.header, None).into_inner();
    let err = forged.verify(CHAIN, &servers).unwrap_err().to_string();
    assert!(err.contains("alpha") && err.contains("server 2"), "{err}");
    assert!(
        good.verify("other", &servers).is_err(),
        "bound to the chain"
    );
}

#[test]
fn a_headers_base_must_be_earlier_and_carry_its_own_certificate() {
    let k = keys(3);
    let servers = list(&k);
    let first = anchored(&k, 4);
    let cert = certificate(&k, &[0, 1], Kind::Prevote, &first);
    let good = built_on(&k, 5, &first, cert.clone());
    good.verify(CHAIN, &servers).unwrap();

    let mut no_cert = good.clone().into_inner();
    no_cert.base_certificate = None;
    let err = no_cert.verify(CHAIN, &servers).unwrap_err().to_string();
    assert!(err.contains("without its certificate"), "{err}");

    let mut anchor_with_cert = first.clone().into_inner();
    anchor_with_cert.base_certificate = Some(cert.clone().into_inner());
    assert!(anchor_with_cert.verify(CHAIN, &servers).is_err());

    // A certificate for another header than the base.
    let stranger = anchored(&k, 7);
    let wrong = certificate(&k, &[0, 1], Kind::Prevote, &stranger);
    let mut h = good.clone().into_inner();
    h.base_certificate = Some(wrong.into_inner());
    let err = h.verify(CHAIN, &servers).unwrap_err().to_string();
    assert!(err.contains("does not vouch"), "{err}");

    // A base at the header's own slot.
    let mut header = good.header;
    header.base.slot = 5;
    let same_slot = Verified::sign_header(&k[2], CHAIN, header, Some(cert)).into_inner();
    let err = same_slot.verify(CHAIN, &servers).unwrap_err().to_string();
    assert!(err.contains("not earlier"), "{err}");
}

#[test]
fn forged_certificates_are_refused_too_few_duplicate_unknown_or_bad() {
    let k = keys(5);
    let servers = list(&k);
    let header = anchored(&k, 9);
    let good = certificate(&k, &[0, 2, 4], Kind::Prevote, &header).into_inner();
    good.verify(CHAIN, &servers).unwrap();

    let mut few = good.clone();
    few.signatures.pop();
    let err = few.verify(CHAIN, &servers).unwrap_err().to_string();
    assert!(err.contains("2 signatures; 3 to 5"), "{err}");

    let mut duplicate = good.clone();
    duplicate.signatures[1] = duplicate.signatures[0];
    let err = duplicate.verify(CHAIN, &servers).unwrap_err().to_string();
    assert!(err.contains("distinct"), "{err}");

    let mut unordered = good.clone();
    unordered.signatures.swap(0, 1);
    assert!(unordered.verify(CHAIN, &servers).is_err());

    for stranger in [ServerId(0), ServerId(6), ServerId(u32::MAX)] {
        let mut unknown = good.clone();
        let last = unknown.signatures.len() - 1;
        unknown.signatures[last].0 = stranger;
        if stranger.0 == 0 {
            unknown.signatures.rotate_right(1);
        }
        let err = unknown.verify(CHAIN, &servers).unwrap_err().to_string();
        assert!(err.contains("not in the conf"), "{stranger}: {err}");
    }

    let mut bad = good.clone();
    bad.signatures[2].1[0] ^= 1;
    let err = bad.verify(CHAIN, &servers).unwrap_err().to_string();
    assert!(err.contains("does not verify"), "{err}");

    // Signatures by servers of the conf, on another statement.
    let mut relabelled = good.clone();
    relabelled.kind = Kind::Precommit;
    assert!(relabelled.verify(CHAIN, &servers).is_err());
    let mut moved = good.clone();
    moved.slot += 1;
    assert!(moved.verify(CHAIN, &servers).is_err());
    assert!(good.verify("other", &servers).is_err());

    // The signatures of a stranger who holds no place in the conf.
    let stranger = Keypair::from_seed(&[99; 32]);
    let mut forged = good.clone();
    forged.signatures[0].1 = stranger.sign(&statement(CHAIN, Kind::Prevote, 9, &header.digest()));
    assert!(forged.verify(CHAIN, &servers).is_err());
}

#[test]
fn decoding_refuses_more_signatures_than_servers_before_reading_them() {
    let k = keys(3);
    let header = anchored(&k, 9);
    let cert = certificate(&k, &[0, 1, 2], Kind::Prevote, &header);
    let bytes = cert.encode();
    assert!(Certificate::decode(&bytes, 3).is_ok());
    let err = Certificate::decode(&bytes, 2).unwrap_err().to_string();
    assert!(
        err.contains("at most 2 signatures") && err.contains("says 3"),
        "{err}"
    );
    let mut huge = bytes[..41].to_vec();
    huge.extend_from_slice(&u16::MAX.to_be_bytes());
    let err = Certificate::decode(&huge, 3).unwrap_err().to_string();
    assert!(err.contains("says 65535"), "{err}");
}

#[test]
fn a_vote_must_be_about_the_header_it_carries() {
    let k = keys(3);
    let servers = list(&k);
    let header = anchored(&k, 4);
    let other = anchored(&k, 7);
    let vote = votes(&k, &[2], Kind::Prevote, 7, other.digest()).remove(0);
    assert!(Verified::<Prevote>::join(vote.clone(), header.clone()).is_none());
    let forged = Prevote {
        vote: vote.into_inner(),
        header: header.clone().into_inner(),
    };
    let err = forged.verify(CHAIN, &servers).unwrap_err().to_string();
    assert!(err.contains("travels with"), "{err}");

    // A precommit resting on a commit certificate, or on another slot's.
    let pc = votes(&k, &[2], Kind::Precommit, 4, header.digest()).remove(0);
    let commit = certificate(&k, &[0, 1], Kind::Precommit, &header);
    assert!(Verified::<Precommit>::join(pc.clone(), header.clone(), commit.clone()).is_none());
    let forged = Precommit {
        vote: pc.into_inner(),
        header: header.into_inner(),
        certificate: commit.into_inner(),
    };
    let err = forged.verify(CHAIN, &servers).unwrap_err().to_string();
    assert!(err.contains("rests on"), "{err}");
}

#[test]
fn a_vote_by_a_server_outside_the_conf_or_with_a_bad_signature_is_refused() {
    let k = keys(3);
    let servers = list(&k);
    let mut vote = votes(&k, &[1], Kind::Precommit, 4, Hash([1; 32]))
        .remove(0)
        .into_inner();
    vote.verify(CHAIN, &servers).unwrap();
    vote.signer = ServerId(3);
    assert!(vote.verify(CHAIN, &servers).is_err(), "another server's id");
    vote.signer = ServerId(4);
    let err = vote.verify(CHAIN, &servers).unwrap_err().to_string();
    assert!(err.contains("not in the conf"), "{err}");
    vote.signer = ServerId(0);
    assert!(vote.verify(CHAIN, &servers).is_err());
}

#[test]
fn assembling_a_certificate_needs_a_majority_of_one_statement() {
    let k = keys(5);
    let d = Hash([3; 32]);
    let mut v = votes(&k, &[4, 0], Kind::Prevote, 2, d);
    assert!(Verified::assemble(&v, 3).is_none(), "two of five");
    v.push(v[0].clone());
    assert!(
        Verified::assemble(&v, 3).is_none(),
        "a repeated vote counts once"
    );
    v.extend(votes(&k, &[2], Kind::Prevote, 2, d));
    let cert = Verified::assemble(&v, 3).unwrap();
    let signers: Vec<u32> = cert.signatures.iter().map(|(s, _)| s.0).collect();
    assert_eq!(signers, vec![1, 3, 5], "sorted, distinct");
    cert.verify(CHAIN, &list(&k)).unwrap();
    v.extend(votes(&k, &[3], Kind::Prevote, 2, Hash([4; 32])));
    assert!(Verified::assemble(&v, 3).is_none(), "mixed statements");
    let headers = votes(&k, &[0, 1, 2], Kind::Header, 2, d);
    assert!(
        Verified::assemble(&headers, 3).is_none(),
        "headers are not certified"
    );
}

#[test]
fn truncated_extended_or_mangled_bytes_never_panic_and_mostly_refuse() {
    let k = keys(4);
    let first = anchored(&k, 5);
    let cert = certificate(&k, &[0, 1, 2], Kind::Prevote, &first);
    let second = built_on(&k, 6, &first, cert.clone());
    let pc = votes(&k, &[1], Kind::Precommit, 6, second.digest()).remove(0);
    let cert2 = certificate(&k, &[0, 1, 3], Kind::Prevote, &second);
    let precommit = Verified::<Precommit>::join(pc, second, cert2).unwrap();
    let bytes = precommit.encode();
    for cut in 0..bytes.len() {
        assert!(Precommit::decode(&bytes[..cut], 4).is_err(), "cut at {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let err = Precommit::decode(&longer, 4).unwrap_err().to_string();
    assert!(err.contains("1 bytes too many"), "{err}");
    let servers = list(&k);
    for i in 0..bytes.len() {
        let mut m = bytes.clone();
        m[i] ^= 0x5a;
        if let Ok(p) = Precommit::decode(&m, 4) {
            assert!(
                p.verify(CHAIN, &servers).is_err(),
                "byte {i} changed and still verifies"
            );
        }
    }
}

/// Rounds of slots 4, 5 and 6, each on the one before (5 on 4 with a
/// prevote certificate, 6 on 5 likewise), and a commit certificate on 6.
fn chain_of_three(k: &[Keypair]) -> (Vec<SignedHeader>, Certified) {
    let r4 = anchored(k, 4);
    let r5 = built_on(k, 5, &r4, certificate(k, &[0, 1], Kind::Prevote, &r4));
    let r6 = built_on(k, 6, &r5, certificate(k, &[1, 2], Kind::Prevote, &r5));
    let commit = certificate(k, &[0, 2], Kind::Precommit, &r6);
    let certified = Verified::<Certified>::join(r6, commit)
        .unwrap()
        .into_inner();
    (vec![r4.into_inner(), r5.into_inner()], certified)
}

#[test]
fn a_proof_proves_its_first_round_through_the_headers_above_it() {
    let k = keys(3);
    let (headers, certified) = chain_of_three(&k);
    for from in 0..=2 {
        let proof = Proof {
            headers: headers[from..].to_vec(),
            certified: certified.clone(),
        };
        let bytes = proof.encode();
        let back = Proof::decode(&bytes, 3).unwrap();
        assert_eq!(back, proof);
        let proven = back.verify(CHAIN, &list(&k)).unwrap();
        assert_eq!(proven.slot(), 4 + from as u64, "the first round is proven");
    }
}

#[test]
fn a_proof_that_does_not_chain_or_is_not_a_commit_is_refused() {
    let k = keys(3);
    let (headers, certified) = chain_of_three(&k);
    let servers = list(&k);
    // A gap: slot 4's header straight under slot 6's certificate.
    let gap = Proof {
        headers: vec![headers[0].clone()],
        certified: certified.clone(),
    };
    let err = gap.verify(CHAIN, &servers).unwrap_err().to_string();
    assert!(err.contains("does not chain"), "{err}");
    // A prevote certificate commits nothing.
    let r5 = Verified(headers[1].clone());
    let prevoted = Proof {
        headers: Vec::new(),
        certified: Verified::<Certified>::join(
            r5.clone(),
            certificate(&k, &[0, 1], Kind::Prevote, &r5),
        )
        .unwrap()
        .into_inner(),
    };
    let err = prevoted.verify(CHAIN, &servers).unwrap_err().to_string();
    assert!(err.contains("not a commit certificate"), "{err}");
    // A header whose alpha's signature was tampered with.
    let mut forged = headers.clone();
    forged[0].signature[0] ^= 1;
    let forged = Proof {
        headers: forged,
        certified: certified.clone(),
    };
    assert!(forged.verify(CHAIN, &servers).is_err());
    // Another conf's servers did not sign it.
    assert!(
        Proof { headers, certified }
            .verify(CHAIN, &list(&keys(4)[1..]))
            .is_err()
    );
}

#[test]
fn a_proof_claiming_more_headers_than_its_bytes_hold_is_refused_before_reading_them() {
    let mut bytes = u32::MAX.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0; 2 * MIN_SIGNED_HEADER_LEN]);
    let err = Proof::decode(&bytes, 3).unwrap_err().to_string();
    assert!(
        err.contains("cannot hold the 4294967295 headers it claims"),
        "{err}"
    );
}

#[test]
fn a_status_is_taken_only_for_what_its_commit_certificate_vouches() {
    use crate::wire::{CertifiedStatus, Status};
    let k = keys(3);
    let servers = list(&k);
    let header = anchored(&k, 4);
    let join = |kind| {
        let certificate = certificate(&k, &[0, 2], kind, &header);
        Verified::<Certified>::join(header.clone(), certificate)
            .expect("about the header")
            .into_inner()
    };
    let commit = join(Kind::Precommit);
    // The round has payments: block 1 after it.
    let after = header.header.after(shape(SLOT_MS));
    assert_eq!(after.height, 1);
    let status = Status {
        slot: 4,
        balance_hash: header.header.result,
        height: 1,
        block_hash: after.block,
    };
    let good = CertifiedStatus {
        status,
        certified: Some(commit.clone()),
    };
    let bytes = good.encode();
    assert_eq!(CertifiedStatus::decode(&bytes, 3).unwrap(), good);
    assert_eq!(
        good.verify(CHAIN, &servers, shape(SLOT_MS)).unwrap(),
        status
    );
    let claim = |status, certified| CertifiedStatus { status, certified };
    let refused = |claim: CertifiedStatus| {
        claim
            .verify(CHAIN, &servers, shape(SLOT_MS))
            .unwrap_err()
            .to_string()
    };
    // The certificate vouches for the blocks too: fewer (a server still
    // fetching them) pass with any block id; more, or another last block,
    // do not.
    let fetching = Status {
        height: 0,
        block_hash: Hash([1; 32]),
        ..status
    };
    assert!(
        claim(fetching, Some(commit.clone()))
            .verify(CHAIN, &servers, shape(SLOT_MS))
            .is_ok()
    );
    let taller = Status {
        height: 1_000,
        ..status
    };
    let forked = Status {
        block_hash: Hash([1; 32]),
        ..status
    };
    for lie in [taller, forked] {
        assert!(
            refused(claim(lie, Some(commit.clone())))
                .contains("its certificate vouches for height 1 with block"),
            "{lie:?}"
        );
    }
    // On another slot length the same round makes another block.
    assert!(good.verify(CHAIN, &servers, shape(SLOT_MS * 2)).is_err());

    let later = Status { slot: 5, ..status };
    let other = Status {
        balance_hash: Hash([2; 32]),
        ..status
    };
    for lie in [later, other] {
        assert!(
            refused(claim(lie, Some(commit.clone())))
                .contains("its certificate vouches for slot 4 with hash"),
            "{lie:?}"
        );
    }
    assert!(refused(claim(status, None)).contains("carries no commit certificate"));
    assert!(refused(claim(status, Some(join(Kind::Prevote)))).contains("not a commit certificate"));
    // A certificate whose signature was tampered with, or from another conf.
    let mut forged = commit.clone();
    forged.certificate.signatures[0].1[0] ^= 1;
    assert!(
        claim(status, Some(forged))
            .verify(CHAIN, &servers, shape(SLOT_MS))
            .is_err()
    );
    assert!(good.verify(CHAIN, &list(&keys(5)), shape(SLOT_MS)).is_err());
    // Slot 0 vouches for nothing and carries nothing, blocks included.
    assert_eq!(
        claim(Status::default(), None)
            .verify(CHAIN, &servers, shape(SLOT_MS))
            .unwrap(),
        Status::default()
    );
    let blocks_at_genesis = Status {
        height: 1_000,
        ..Status::default()
    };
    assert!(
        refused(claim(blocks_at_genesis, None))
            .contains("a status of slot 0 vouches for no block, and claims height 1000")
    );
    // Truncated bytes refuse; a status alone decodes with no certificate.
    assert!(CertifiedStatus::decode(&bytes[..79], 3).is_err());
    assert!(CertifiedStatus::decode(&bytes[..100], 3).is_err());
    assert_eq!(
        CertifiedStatus::decode(&bytes[..80], 3).unwrap(),
        claim(status, None)
    );
}
