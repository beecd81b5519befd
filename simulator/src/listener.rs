//! What a receiving server's listener makes of a server message: decoded
//! from its bytes and every signature in it checked, as on the wire
//! ([`rota_listener::check_peer`]), once for all receivers.
//!
//! Checking signatures is nearly all of a run's work, and a broadcast
//! carries the same bytes to every server (relayed certificates and
//! duplicates too). The check is a pure function of the command, the slot
//! and the bytes, so [`Listener`] keeps each verdict by the SHA-256 of
//! those and hands the same one to every receiver. It is memoization, not a
//! shortcut: every message still goes through its bytes and the real
//! checks once, and a message whose bytes differ is checked anew. The
//! statuses answered to the connectors (each with its commit certificate)
//! are memoized the same way.

use std::collections::BTreeMap;

use rota_listener::PeerInput;
use rota_peer::transaction::{VerifiedTx, Verifier};
use rota_peer::wire::{CertifiedStatus, Greeting, Hello, PeerMessage, Status};
use rota_peer::{Hash, ServerId, Slot};

use crate::server::Setup;

/// The most verdicts kept; the memo is cleared when full.
const KEPT: usize = 4_096;

/// The receivers' listeners' checks, memoized. See the module documentation.
#[derive(Default)]
pub struct Listener {
    verdicts: BTreeMap<Hash, Result<PeerInput, String>>,
    /// The connectors' checks of the statuses answered to them, memoized
    /// the same way: every heartbeat answer carries a commit certificate.
    statuses: BTreeMap<Hash, Result<Status, String>>,
}

impl Listener {
    /// The verdict on `message`, sent for `slot`: the checked input, or the
    /// refusal the listener answers with.
    pub fn check(
        &mut self,
        setup: &Setup,
        from: ServerId,
        slot: Slot,
        message: &PeerMessage<VerifiedTx>,
    ) -> Result<PeerInput, String> {
        let command = message.command();
        // A status's verdict does not depend on the slot it was sent for, and
        // most heartbeats repeat the last status: it is kept by its bytes
        // alone, as the connector's is.
        match message {
            PeerMessage::Register(claim) => {
                return self
                    .status(setup, claim)
                    .map(PeerInput::Register)
                    .map_err(|e| format!("{}: {e}", command.name()));
            }
            PeerMessage::Heart(claim) => {
                return self
                    .status(setup, claim)
                    .map(PeerInput::Heart)
                    .map_err(|e| format!("{}: {e}", command.name()));
            }
            _ => {}
        }
        let payload = message.payload();
        let mut bytes = Vec::with_capacity(payload.len() + 16);
        bytes.extend_from_slice(command.name().as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&slot.to_be_bytes());
        bytes.extend_from_slice(&payload);
        let key = Hash::of(&bytes);
        if let Some(verdict) = self.verdicts.get(&key) {
            return verdict.clone();
        }
        let verdict = check(setup, from, slot, command, &payload);
        if self.verdicts.len() >= KEPT {
            self.verdicts.clear();
        }
        self.verdicts.insert(key, verdict.clone());
        verdict
    }
}

impl Listener {
    /// The verdict on a status, sent in a `register` or `heart` or answered
    /// to one: the status, once its commit certificate vouches for it
    /// ([`CertifiedStatus::verify`], which the listener's `check_peer` and
    /// the connector call).
    pub fn status(&mut self, setup: &Setup, hello: &Hello) -> Result<Greeting, String> {
        let status = self.certified(setup, &hello.status)?;
        Ok(Greeting {
            params: hello.params,
            clock: hello.clock,
            echo: hello.echo,
            sitting_out: hello.sitting_out,
            live: hello.live.clone(),
            status,
        })
    }

    /// The verdict on a certified status, kept by its bytes: the hello
    /// around it changes with every message (its clock), the status seldom.
    fn certified(&mut self, setup: &Setup, claim: &CertifiedStatus) -> Result<Status, String> {
        let bytes = claim.encode();
        let key = Hash::of(&bytes);
        if let Some(verdict) = self.statuses.get(&key) {
            return verdict.clone();
        }
        let verdict = CertifiedStatus::decode(&bytes, setup.servers.len())
            .and_then(|claim| claim.verify(&setup.chain, &setup.servers, setup.schedule.shape()))
            .map_err(|e| e.to_string());
        if self.statuses.len() >= KEPT {
            self.statuses.clear();
        }
        self.statuses.insert(key, verdict.clone());
        verdict
    }
}

/// A server message as the receiver's listener takes it: through its bytes
/// and every signature check.
fn check(
    setup: &Setup,
    from: ServerId,
    slot: Slot,
    command: rota_peer::wire::PeerCommand,
    payload: &[u8],
) -> Result<PeerInput, String> {
    let n = setup.servers.len();
    let decoded = PeerMessage::decode(command, payload, n).map_err(|e| e.to_string())?;
    let mut verifier = Verifier::new(&setup.chain);
    let door = rota_listener::Door {
        chain: &setup.chain,
        servers: &setup.servers,
        params: &setup.params,
    };
    rota_listener::check_peer(&door, from, &mut verifier, slot, decoded).map_err(|e| e.to_string())
}
