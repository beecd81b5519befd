//! The signed envelope that carries every server-to-server message, and the
//! bytes its signature covers.
//!
//! An [`Envelope`] is the parameters of a server command,
//! `[signer key 32][slot u64][payload][signature 64]`, as it travels in a
//! request or in a signed reply. It binds the chain, the command, the slot and
//! the payload (by its hash) so that a message cannot be replayed on another
//! chain, as another command or for another slot. Signing happens here;
//! checking a signature needs the trust list and happens once, in
//! [`ServerList::verify`](super::ServerList::verify).

use super::{PeerCommand, PeerMessage, expect_params};
use crate::error::{Error, Result};
use crate::keys::Keypair;
use crate::types::{Hash, PublicKey, Slot, be_u64, bytes32};

/// A signed server-to-server message, as it travels.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    pub command: PeerCommand,
    pub signer: PublicKey,
    pub slot: Slot,
    pub payload: Vec<u8>,
    pub signature: [u8; 64],
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Envelope({} slot {} from {}, {} bytes)",
            self.command.name(),
            self.slot,
            self.signer.to_string().get(..8).unwrap_or_default(),
            self.payload.len()
        )
    }
}

impl Envelope {
    /// The bytes a signer signs: a domain tag, the chain, the command, the
    /// slot and the SHA-256 of the payload.
    pub fn signed_bytes(chain: &str, command: PeerCommand, slot: Slot, payload: &[u8]) -> Vec<u8> {
        let name = command.name();
        let mut out = Vec::with_capacity(16 + chain.len() + name.len() + 8 + 32);
        out.extend_from_slice(b"rota peer v1");
        out.push(chain.len() as u8);
        out.extend_from_slice(chain.as_bytes());
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&slot.to_be_bytes());
        out.extend_from_slice(&Hash::of(payload).0);
        out
    }

    /// Signs `message` for `slot` on `chain`.
    pub fn sign(keypair: &Keypair, chain: &str, slot: Slot, message: &PeerMessage) -> Envelope {
        Envelope::sign_payload(keypair, chain, slot, message.command(), message.payload())
    }

    /// Signs an encoded payload; [`Envelope::sign`] for a decoded message.
    pub fn sign_payload(
        keypair: &Keypair,
        chain: &str,
        slot: Slot,
        command: PeerCommand,
        payload: Vec<u8>,
    ) -> Envelope {
        let signature = keypair.sign(&Envelope::signed_bytes(chain, command, slot, &payload));
        Envelope {
            command,
            signer: keypair.public(),
            slot,
            payload,
            signature,
        }
    }

    /// The frames after the command. A request puts the chain in front of
    /// the command and a signed reply does not; the rest is the same.
    pub(super) fn params(&self) -> Vec<Vec<u8>> {
        vec![
            self.signer.0.to_vec(),
            self.slot.to_be_bytes().to_vec(),
            self.payload.clone(),
            self.signature.to_vec(),
        ]
    }

    /// Reads the frames after `command`; the inverse of [`Envelope::params`].
    /// Checks lengths only: the signature is checked by the trust list.
    pub(super) fn decode(command: PeerCommand, params: &[&[u8]]) -> Result<Envelope> {
        let name = command.name();
        expect_params(
            name,
            params,
            &[
                "signer key, 32 bytes",
                "slot, 8 bytes",
                "payload",
                "signature, 64 bytes",
            ],
        )?;
        let signature: [u8; 64] = params[3].try_into().map_err(|_| {
            Error::Invalid(format!(
                "command {name}: the signature must be 64 bytes, got {}",
                params[3].len()
            ))
        })?;
        Ok(Envelope {
            command,
            signer: PublicKey(bytes32(
                params[0],
                &format!("command {name}: the signer key"),
            )?),
            slot: be_u64(params[1], &format!("command {name}: the slot"))?,
            payload: params[2].to_vec(),
            signature,
        })
    }

    /// The message inside, decoded from the payload, on a chain of
    /// `servers` servers (the most signatures a certificate may carry).
    pub fn message(&self, servers: usize) -> Result<PeerMessage> {
        PeerMessage::decode(self.command, &self.payload, servers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::Transaction;
    use crate::types::ServerId;
    use crate::wire::consensus::{Base, Header, SignedHeader, Verified};
    use crate::wire::{CertifiedStatus, Hello, Params, Reply, Request, ServerList, Status};

    const CHAIN: &str = "test";

    fn frames(v: &[Vec<u8>]) -> Vec<&[u8]> {
        v.iter().map(|f| f.as_slice()).collect()
    }

    #[test]
    fn every_peer_message_round_trips_and_verifies() {
        let key = Keypair::from_seed(&[1; 32]);
        let list = ServerList::new(vec![PublicKey([9; 32]), key.public()]);
        let tx = Transaction::sign(CHAIN, &key, PublicKey([2; 32]), 3, 4);
        let status = Status {
            slot: 5,
            balance_hash: Hash([6; 32]),
            height: 7,
            block_hash: Hash([8; 32]),
        };
        let header = Verified::<SignedHeader>::sign_header(
            &key,
            CHAIN,
            Header {
                slot: 1,
                base: Base {
                    digest: Hash::default(),
                    slot: 0,
                    balance: Hash([4; 32]),
                    chain: Default::default(),
                    sealed: 0,
                },
                payments: Hash([5; 32]),
                result: Hash([6; 32]),
                seal: None,
            },
            None,
        )
        .into_inner();
        // A hello's status is read only when its server count is the
        // receiver's.
        let params = Params::new(list.keys(), (2_000, 500, 250), 0, &Hash([7; 32]));
        let messages = vec![
            PeerMessage::Register(Hello {
                params,
                clock: 1_700_000_000_000,
                echo: 0,
                sitting_out: false,
                live: vec![ServerId(1), ServerId(2)],
                status: CertifiedStatus {
                    status,
                    certified: None,
                },
            }),
            PeerMessage::Heart(Hello {
                params,
                clock: 1_700_000_000_001,
                echo: 1_699_999_999_990,
                sitting_out: false,
                live: vec![ServerId(2)],
                status: CertifiedStatus {
                    status,
                    certified: None,
                },
            }),
            PeerMessage::Round {
                header: header.clone(),
                transactions: vec![tx, tx],
            },
            PeerMessage::Want {
                slot: 1,
                digest: header.digest(),
            },
            PeerMessage::Forward { transaction: tx },
        ];
        for message in messages {
            let envelope = Envelope::sign(&key, CHAIN, 42, &message);
            let request = Request::Peer(envelope.clone());
            let encoded = request.encode(CHAIN);
            let Request::Peer(back) = Request::decode(CHAIN, &frames(&encoded)).unwrap() else {
                panic!("not a peer request");
            };
            assert_eq!(list.verify(CHAIN, &back).unwrap(), ServerId(2));
            assert_eq!(back.message(list.len()).unwrap(), message);
            let reply = Reply::Signed(envelope);
            assert_eq!(Reply::decode(&frames(&reply.encode())).unwrap(), reply);
        }
    }

    #[test]
    fn a_signature_binds_chain_command_slot_and_payload() {
        let key = Keypair::from_seed(&[1; 32]);
        let list = ServerList::new(vec![key.public()]);
        let envelope = Envelope::sign(
            &key,
            CHAIN,
            42,
            &PeerMessage::Want {
                slot: 3,
                digest: Hash([2; 32]),
            },
        );
        assert!(list.verify("other", &envelope).is_err());
        let mut e = envelope.clone();
        e.slot = 41;
        assert!(list.verify(CHAIN, &e).is_err());
        let mut e = envelope.clone();
        e.payload[0] ^= 1;
        assert!(list.verify(CHAIN, &e).is_err());
        let mut e = envelope.clone();
        e.command = PeerCommand::Heart;
        assert!(list.verify(CHAIN, &e).is_err());
        assert!(list.verify(CHAIN, &envelope).is_ok());
    }
}
