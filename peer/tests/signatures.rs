//! Payment signatures under the ZIP 215 rules: crafted signatures with
//! small-order, mixed-order and non-canonical parts get the same verdict
//! from a single check and from a batch check, whatever else is in the
//! batch. Without that, two servers could disagree about one payment.
//!
//! The vectors are built here from first principles (the curve arithmetic of
//! the signature scheme), and each checks its own premise (a point said to
//! be of small order is; a key derived by hand matches the one the seed
//! gives), so the test cannot pass on a wrong fixture.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use rota_peer::PublicKey;
use rota_peer::keys::Keypair;
use rota_peer::transaction::{SIGNED_LEN, TX_LEN, Transaction, Verifier, signed_message};
use sha2::{Digest, Sha512};

const CHAIN: &str = "zip215";

/// The eight points of small order, as their canonical encodings.
const SMALL_ORDER: [&str; 8] = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
];

/// A non-canonical encoding of the identity: y = p + 1.
const IDENTITY_NON_CANONICAL: &str =
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";

/// The group order l, little-endian.
const ORDER: &str = "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010";

fn bytes32(text: &str) -> [u8; 32] {
    hex::decode(text).unwrap().try_into().unwrap()
}

fn point(bytes: [u8; 32]) -> EdwardsPoint {
    CompressedEdwardsY(bytes)
        .decompress()
        .expect("a curve point")
}

fn wide(parts: &[&[u8]]) -> Scalar {
    let mut hasher = Sha512::new();
    for part in parts {
        hasher.update(part);
    }
    let digest: [u8; 64] = hasher.finalize().into();
    Scalar::from_bytes_mod_order_wide(&digest)
}

/// The secret scalar of the key pair a seed gives, checked against it.
fn secret(seed: [u8; 32]) -> (Scalar, [u8; 32]) {
    let digest: [u8; 64] = Sha512::digest(seed).into();
    let mut lower: [u8; 32] = digest[..32].try_into().unwrap();
    lower[0] &= 248;
    lower[31] &= 127;
    lower[31] |= 64;
    let a = Scalar::from_bytes_mod_order(lower);
    let public = (B * a).compress().to_bytes();
    assert_eq!(PublicKey(public), Keypair::from_seed(&seed).public());
    (a, public)
}

/// The 76-byte prefix of a payment from `payer`.
fn prefix(payer: [u8; 32], n: u8) -> [u8; SIGNED_LEN] {
    let mut bytes = [0u8; SIGNED_LEN];
    bytes[..8].copy_from_slice(&(1_700_000_000_000 + n as u64).to_be_bytes());
    bytes[8..12].copy_from_slice(&7u32.to_be_bytes());
    bytes[12..44].copy_from_slice(&[n; 32]);
    bytes[44..76].copy_from_slice(&payer);
    bytes
}

fn transaction(prefix: [u8; SIGNED_LEN], r: [u8; 32], s: [u8; 32]) -> Transaction {
    let mut bytes = [0u8; TX_LEN];
    bytes[..SIGNED_LEN].copy_from_slice(&prefix);
    bytes[SIGNED_LEN..SIGNED_LEN + 32].copy_from_slice(&r);
    bytes[SIGNED_LEN + 32..].copy_from_slice(&s);
    Transaction::decode(&bytes).unwrap()
}

/// Signs by hand: `R = rB + torsion`, `s = r + k a`, with `k` over the
/// encoding of `R` given (canonical or not) and the key `public`.
fn sign(
    a: Scalar,
    public: [u8; 32],
    n: u8,
    r_encoding: Option<[u8; 32]>,
    torsion: EdwardsPoint,
) -> Transaction {
    let prefix = prefix(public, n);
    let r = wide(&[b"nonce", &[n]]);
    let r_bytes = r_encoding.unwrap_or_else(|| (B * r + torsion).compress().to_bytes());
    let message = signed_message(CHAIN, &prefix);
    let k = wide(&[&r_bytes, &public, &message]);
    let s = if r_encoding.is_some() {
        k * a
    } else {
        r + k * a
    };
    transaction(prefix, r_bytes, s.to_bytes())
}

/// A crafted payment and the verdict ZIP 215 (with rota's refusal of
/// small-order signers) gives it.
struct Vector {
    name: String,
    tx: Transaction,
    valid: bool,
}

fn vectors() -> Vec<Vector> {
    let mut out = Vec::new();
    let seed = [42u8; 32];
    let (a, public) = secret(seed);
    let identity = EdwardsPoint::default();
    for (i, text) in SMALL_ORDER.iter().enumerate() {
        let t = point(bytes32(text));
        assert!(t.is_small_order(), "{text} is of small order");
        // A small-order key with a small-order R and s = 0 satisfies the
        // cofactored equation for every message: refused as a signer.
        out.push(Vector {
            name: format!("small-order key {i}, small-order R, s = 0"),
            tx: transaction(
                prefix(bytes32(text), i as u8),
                bytes32(SMALL_ORDER[(i + 3) % 8]),
                [0; 32],
            ),
            valid: false,
        });
        // R with a small-order component: passes the cofactored check,
        // while the cofactorless one depends on the torsion point.
        out.push(Vector {
            name: format!("mixed-order R (torsion {i})"),
            tx: sign(a, public, 10 + i as u8, None, t),
            valid: true,
        });
        // A key with a small-order component: not itself of small order.
        if i > 0 {
            let mixed = (point(public) + t).compress().to_bytes();
            let n = 20 + i as u8;
            let prefix = prefix(mixed, n);
            let r = wide(&[b"mixed key", &[n]]);
            let r_bytes = (B * r).compress().to_bytes();
            let k = wide(&[&r_bytes, &mixed, &signed_message(CHAIN, &prefix)]);
            out.push(Vector {
                name: format!("mixed-order key (torsion {i})"),
                tx: transaction(prefix, r_bytes, (r + k * a).to_bytes()),
                valid: true,
            });
        }
    }
    assert_eq!(point(bytes32(IDENTITY_NON_CANONICAL)), identity);
    out.push(Vector {
        name: "R the identity, non-canonically encoded".into(),
        tx: sign(
            a,
            public,
            40,
            Some(bytes32(IDENTITY_NON_CANONICAL)),
            identity,
        ),
        valid: true,
    });
    out.push(Vector {
        name: "small-order key, non-canonically encoded".into(),
        tx: transaction(
            prefix(
                bytes32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
                41,
            ),
            bytes32(SMALL_ORDER[0]),
            [0; 32],
        ),
        valid: false,
    });
    let honest = Transaction::sign(CHAIN, &Keypair::from_seed(&seed), PublicKey([3; 32]), 9, 5);
    let mut s = honest.bytes()[SIGNED_LEN + 32..].to_vec();
    add_order(&mut s);
    out.push(Vector {
        name: "s not reduced (s + l)".into(),
        tx: transaction(
            honest.bytes()[..SIGNED_LEN].try_into().unwrap(),
            honest.bytes()[SIGNED_LEN..SIGNED_LEN + 32]
                .try_into()
                .unwrap(),
            s.try_into().unwrap(),
        ),
        valid: false,
    });
    out.push(Vector {
        name: "an honest payment".into(),
        tx: honest,
        valid: true,
    });
    out
}

/// Adds the group order to a little-endian scalar.
fn add_order(s: &mut [u8]) {
    let order = bytes32(ORDER);
    let mut carry = 0u16;
    for (byte, add) in s.iter_mut().zip(order) {
        let sum = *byte as u16 + add as u16 + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
}

fn honest_payments(count: u8) -> Vec<Transaction> {
    (0..count)
        .map(|i| {
            Transaction::sign(
                CHAIN,
                &Keypair::from_seed(&[i; 32]),
                PublicKey([i; 32]),
                1,
                i as u64,
            )
        })
        .collect()
}

#[test]
fn each_crafted_signature_gets_the_zip215_verdict_alone() {
    let mut verifier = Verifier::new(CHAIN);
    for vector in vectors() {
        assert_eq!(
            verifier.verify(vector.tx).is_ok(),
            vector.valid,
            "{}",
            vector.name
        );
    }
}

#[test]
fn single_and_batch_checks_agree_whatever_the_batch() {
    let vectors = vectors();
    let honest = honest_payments(5);
    let mut verifier = Verifier::new(CHAIN);
    for vector in &vectors {
        let single = verifier.verify(vector.tx).is_ok();
        // Alone, among honest payments before and after, and beside every
        // other crafted payment.
        let mut batches: Vec<Vec<Transaction>> = vec![vec![vector.tx]];
        let mut surrounded = honest.clone();
        surrounded.insert(2, vector.tx);
        batches.push(surrounded);
        for other in &vectors {
            batches.push(vec![other.tx, vector.tx]);
            batches.push(vec![vector.tx, other.tx, honest[0]]);
        }
        for batch in batches {
            let at = batch.iter().position(|tx| *tx == vector.tx).unwrap();
            let verdicts = verifier.verify_batch(&batch);
            assert_eq!(
                verdicts[at].is_ok(),
                single,
                "{} in a batch of {}",
                vector.name,
                batch.len()
            );
            for (tx, verdict) in batch.iter().zip(&verdicts) {
                assert_eq!(verdict.is_ok(), Verifier::new(CHAIN).verify(*tx).is_ok());
            }
        }
    }
}

#[test]
fn all_the_crafted_vectors_in_one_batch_get_their_single_verdicts() {
    let vectors = vectors();
    assert!(vectors.len() >= 20, "{} vectors", vectors.len());
    let batch: Vec<Transaction> = vectors.iter().map(|v| v.tx).collect();
    let verdicts = Verifier::new(CHAIN).verify_batch(&batch);
    for (vector, verdict) in vectors.iter().zip(verdicts) {
        assert_eq!(verdict.is_ok(), vector.valid, "{}", vector.name);
    }
    let valid: Vec<Transaction> = vectors.iter().filter(|v| v.valid).map(|v| v.tx).collect();
    assert!(
        Verifier::new(CHAIN)
            .verify_batch(&valid)
            .iter()
            .all(|v| v.is_ok())
    );
}
