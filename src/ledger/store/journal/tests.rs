//! The journal's bytes: every record comes back as it went in, and every
//! damaged entry (short, long, oversized, unknown) is refused whole.
//!
//! The records are real: headers signed by the alpha of their slot, votes
//! by their servers, certificates assembled from those votes, payments
//! signed by their payers, and each decoded record still verifies.

use std::sync::Arc;

use rota_peer::block::merkle_root;
use rota_peer::keys::Keypair;
use rota_peer::transaction::{TX_LEN, Transaction, VerifiedTx};
use rota_peer::wire::ServerList;
use rota_peer::wire::consensus::{
    Base, Certificate, Certified, Evidence, Header, Kind, Precommit, Prevote, SignedHeader,
    Verified, Vote,
};
use rota_peer::{Hash, ServerId, Slot};

use super::{decode_record, encode_record};
use crate::ledger::consensus::Record;
use crate::ledger::core::Payments;

const CHAIN: &str = "journal";
const N: usize = 3;

struct Signers {
    keys: Vec<Keypair>,
}

impl Signers {
    fn new() -> Signers {
        Signers {
            keys: (0..N)
                .map(|i| Keypair::from_seed(&[i as u8 + 40; 32]))
                .collect(),
        }
    }

    fn list(&self) -> ServerList {
        ServerList::new(self.keys.iter().map(Keypair::public).collect())
    }

    /// `count` payments stamped in `slot`, signed by their payers.
    fn payments(&self, slot: Slot, count: usize) -> Payments {
        (0..count)
            .map(|i| {
                let payer = Keypair::from_seed(&[i as u8 + 1; 32]);
                let payee = Keypair::from_seed(&[i as u8 + 100; 32]).public();
                let tx = Transaction::sign(CHAIN, &payer, payee, 10 + i as u32, slot * 1000);
                VerifiedTx::from_trusted_store(tx)
            })
            .collect()
    }

    /// The header of `slot` on `base`, signed by the alpha of `slot`.
    fn header(
        &self,
        slot: Slot,
        base: Base,
        certificate: Option<Verified<Certificate>>,
        payments: &Payments,
    ) -> Verified<SignedHeader> {
        let ids: Vec<Hash> = payments.iter().map(|tx| tx.id()).collect();
        let root = merkle_root(&ids);
        let header = Header {
            slot,
            base,
            payments: root,
            result: Hash::of(&[base.balance.0, root.0].concat()),
            seal: None,
        };
        let alpha = &self.keys[slot as usize % N];
        Verified::sign_header(alpha, CHAIN, header, certificate)
    }

    fn vote(&self, who: usize, kind: Kind, header: &SignedHeader) -> Verified<Vote> {
        Verified::sign_vote(
            &self.keys[who],
            CHAIN,
            ServerId::from_index(who),
            kind,
            header.slot(),
            header.digest(),
        )
    }

    fn certificate(&self, kind: Kind, header: &SignedHeader, voters: &[usize]) -> Certificate {
        let votes: Vec<Verified<Vote>> = voters
            .iter()
            .map(|who| self.vote(*who, kind, header))
            .collect();
        Verified::assemble(&votes, self.list().majority())
            .expect("a majority of votes")
            .into_inner()
    }
}

fn anchor() -> Base {
    Base {
        digest: Hash::default(),
        slot: 0,
        balance: Hash([7; 32]),
        chain: Default::default(),
        sealed: 0,
    }
}

/// One record of every kind, and the cases inside each: marks set and
/// not, a round with no payments, a header whose base carries its
/// certificate.
fn records(s: &Signers) -> Vec<Record<Payments>> {
    let pay4 = s.payments(4, 3);
    let first = s.header(4, anchor(), None, &pay4);
    let prevotes = s.certificate(Kind::Prevote, &first, &[0, 2]);
    let base = Base {
        digest: first.digest(),
        slot: 4,
        balance: first.header.result,
        chain: Default::default(),
        sealed: 0,
    };
    let pay5 = s.payments(5, 2);
    let second = s.header(
        5,
        base,
        Some(
            Verified::assemble(
                &[
                    s.vote(0, Kind::Prevote, &first),
                    s.vote(2, Kind::Prevote, &first),
                ],
                2,
            )
            .expect("two prevotes"),
        ),
        &pay5,
    );
    let rival = s.header(4, anchor(), None, &s.payments(4, 1));
    let empty = s.header(6, anchor(), None, &Arc::from([]));
    vec![
        Record::Marks {
            voted: None,
            proposed: None,
        },
        Record::Marks {
            voted: Some(5),
            proposed: Some(u64::MAX),
        },
        Record::Proposal {
            header: first.clone().into_inner(),
            payments: pay4,
        },
        Record::Round {
            header: second.clone().into_inner(),
            payments: pay5,
        },
        Record::Round {
            header: empty.into_inner(),
            payments: Arc::from([]),
        },
        Record::Prevote(Prevote {
            vote: s.vote(1, Kind::Prevote, &second).into_inner(),
            header: second.clone().into_inner(),
        }),
        Record::Precommit(Precommit {
            vote: s.vote(1, Kind::Precommit, &first).into_inner(),
            header: first.clone().into_inner(),
            certificate: prevotes.clone(),
        }),
        Record::Lock(Certified {
            header: first.clone().into_inner(),
            certificate: prevotes,
        }),
        Record::Lock(Certified {
            header: second.clone().into_inner(),
            certificate: s.certificate(Kind::Precommit, &second, &[0, 1, 2]),
        }),
        Record::Evidence(Evidence {
            first: first.into_inner(),
            second: rival.into_inner(),
        }),
    ]
}

/// Checks every signature a record carries, as `Machine::restore` does.
fn verifies(record: &Record<Payments>, servers: &ServerList) -> bool {
    match record {
        Record::Marks { .. } => true,
        Record::Proposal { header, .. } | Record::Round { header, .. } => {
            header.verify(CHAIN, servers).is_ok()
        }
        Record::Prevote(p) => p.verify(CHAIN, servers).is_ok(),
        Record::Precommit(p) => p.verify(CHAIN, servers).is_ok(),
        Record::Lock(c) => c.verify(CHAIN, servers).is_ok(),
        Record::Evidence(e) => e.verify(CHAIN, servers).is_ok(),
    }
}

#[test]
fn every_record_comes_back_as_it_went_in_and_still_verifies() {
    let s = Signers::new();
    for record in records(&s) {
        let bytes = encode_record(&record);
        let back = decode_record(&bytes, N).expect("decodes");
        assert_eq!(back, record);
        assert!(verifies(&back, &s.list()), "{back:?} verifies");
        assert_eq!(encode_record(&back), bytes);
    }
}

#[test]
fn payments_come_back_with_their_bytes_and_ids() {
    let s = Signers::new();
    let payments = s.payments(9, 4);
    let header = s.header(9, anchor(), None, &payments).into_inner();
    let record = Record::Round {
        header,
        payments: payments.clone(),
    };
    let Record::Round { payments: back, .. } =
        decode_record(&encode_record(&record), N).expect("decodes")
    else {
        panic!("a round comes back a round");
    };
    for (a, b) in payments.iter().zip(back.iter()) {
        assert_eq!(a.bytes(), b.bytes());
        assert_eq!(a.id(), b.id());
    }
    assert_eq!(back.len(), 4);
}

/// The layout the module documentation gives, byte for byte.
#[test]
fn records_are_laid_out_as_documented() {
    let marks = encode_record(&Record::Marks {
        voted: Some(0x0102),
        proposed: None,
    });
    let mut expected = vec![1, 1, 0, 0, 0, 0, 0, 0, 1, 2, 0];
    expected.extend_from_slice(&[0; 8]);
    assert_eq!(marks, expected);

    let s = Signers::new();
    let payments = s.payments(4, 2);
    let header = s.header(4, anchor(), None, &payments).into_inner();
    let bytes = encode_record(&Record::Proposal {
        header: header.clone(),
        payments: payments.clone(),
    });
    let h = header.encode();
    assert_eq!(bytes[0], 2);
    assert_eq!(bytes[1..9], (h.len() as u64).to_be_bytes());
    assert_eq!(bytes[9..9 + h.len()], h[..]);
    let rest = &bytes[9 + h.len()..];
    assert_eq!(rest[..8], 2u64.to_be_bytes());
    assert_eq!(rest[8..8 + TX_LEN], payments[0].bytes()[..]);
    assert_eq!(rest.len(), 8 + 2 * TX_LEN);

    for (record, tag) in records(&s).iter().zip([1, 1, 2, 3, 3, 4, 5, 6, 6, 7]) {
        assert_eq!(encode_record(record)[0], tag, "{record:?}");
    }
}

#[test]
fn a_record_cut_short_anywhere_is_refused() {
    let s = Signers::new();
    for record in records(&s) {
        let bytes = encode_record(&record);
        for len in 0..bytes.len() {
            assert!(
                decode_record(&bytes[..len], N).is_err(),
                "{len} of {} bytes of {record:?} decoded",
                bytes.len()
            );
        }
    }
}

#[test]
fn bytes_after_a_record_are_refused() {
    let s = Signers::new();
    for record in records(&s) {
        let mut bytes = encode_record(&record);
        bytes.push(0);
        let err = decode_record(&bytes, N).expect_err("trailing byte");
        assert!(
            err.to_string().contains("1 bytes after the record"),
            "{err}"
        );
    }
}

/// A length that says one byte more than its field holds, with that byte
/// there: the field's own decoder refuses the byte left over.
#[test]
fn a_field_longer_than_its_contents_is_refused() {
    let s = Signers::new();
    for record in records(&s)
        .into_iter()
        .filter(|r| !matches!(r, Record::Marks { .. }))
    {
        let bytes = encode_record(&record);
        let len = u64::from_be_bytes(bytes[1..9].try_into().unwrap());
        let mut longer = vec![bytes[0]];
        longer.extend_from_slice(&(len + 1).to_be_bytes());
        longer.extend_from_slice(&bytes[9..9 + len as usize]);
        longer.push(0);
        longer.extend_from_slice(&bytes[9 + len as usize..]);
        assert!(decode_record(&longer, N).is_err(), "{record:?}");
    }
}

/// Lengths and counts larger than the bytes there are refused without
/// allocating for them.
#[test]
fn oversized_lengths_and_counts_are_refused() {
    let s = Signers::new();
    let prevote = records(&s)
        .into_iter()
        .find(|r| matches!(r, Record::Prevote(_)))
        .unwrap();
    let mut bytes = encode_record(&prevote);
    bytes[1..9].copy_from_slice(&u64::MAX.to_be_bytes());
    assert!(decode_record(&bytes, N).is_err());

    let payments = s.payments(4, 2);
    let header = s.header(4, anchor(), None, &payments).into_inner();
    let bytes = encode_record(&Record::Round { header, payments });
    let count_at = bytes.len() - 2 * TX_LEN - 8;
    for count in [3, u64::MAX / TX_LEN as u64 + 1, u64::MAX] {
        let mut bad = bytes.clone();
        bad[count_at..count_at + 8].copy_from_slice(&count.to_be_bytes());
        let err = decode_record(&bad, N).expect_err("too many payments");
        assert!(err.to_string().contains("payments need"), "{err}");
    }
    // A count of one fewer leaves a payment's bytes over.
    let mut bad = bytes.clone();
    bad[count_at..count_at + 8].copy_from_slice(&1u64.to_be_bytes());
    assert!(decode_record(&bad, N).is_err());
}

/// A certificate holds at most one signature a server: read with fewer
/// servers than it has signatures, it is refused.
#[test]
fn a_certificate_with_more_signatures_than_servers_is_refused() {
    let s = Signers::new();
    let lock = records(&s)
        .into_iter()
        .rfind(|r| matches!(r, Record::Lock(_)))
        .unwrap();
    let bytes = encode_record(&lock);
    assert!(decode_record(&bytes, N).is_ok());
    assert!(decode_record(&bytes, N - 1).is_err());
}

#[test]
fn unknown_tags_and_bad_marks_are_refused() {
    for tag in [0, 8, 255] {
        let err = decode_record(&[tag], N).expect_err("unknown tag");
        assert!(err.to_string().contains("tag is 1 to 7"), "{err}");
    }
    let marks = encode_record(&Record::Marks {
        voted: None,
        proposed: Some(3),
    });
    let mut flag = marks.clone();
    flag[1] = 2;
    assert!(decode_record(&flag, N).is_err());
    let mut slot = marks;
    slot[9] = 1;
    let err = decode_record(&slot, N).expect_err("a none with a slot");
    assert!(err.to_string().contains("not 0"), "{err}");
}
