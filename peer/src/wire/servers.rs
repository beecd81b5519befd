//! The trust list: the ordered servers of a chain, who may sign server
//! messages, and how many of them make a majority.
//!
//! A server's identifier is its position in the list, from 1. The majority
//! rule lives here once, as [`majority`] and [`ServerList::majority`]:
//! registration, the connector's hash comparison, liveness and the beta's
//! decision all count against it.

use super::Envelope;
use crate::error::{Error, Result};
use crate::signature;
use crate::types::{PublicKey, ServerId};

/// The number of servers out of `servers` that make a majority:
/// floor(N/2) + 1. For code that knows how many servers there are but holds
/// no list (the connector's state machine).
pub fn majority(servers: usize) -> usize {
    servers / 2 + 1
}

/// The ordered server list of a chain: who may sign peer messages, and the
/// identifier each server has (its position, from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerList {
    keys: Vec<PublicKey>,
}

impl ServerList {
    pub fn new(keys: Vec<PublicKey>) -> ServerList {
        ServerList { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The servers' keys, in list order.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The number of servers that make a majority: floor(N/2) + 1.
    pub fn majority(&self) -> usize {
        majority(self.keys.len())
    }

    pub fn id_of(&self, key: &PublicKey) -> Option<ServerId> {
        self.keys
            .iter()
            .position(|k| k == key)
            .map(ServerId::from_index)
    }

    pub fn key(&self, id: ServerId) -> Option<PublicKey> {
        self.keys.get(id.index()).copied()
    }

    pub fn ids(&self) -> impl Iterator<Item = ServerId> + '_ {
        (0..self.keys.len()).map(ServerId::from_index)
    }

    /// Checks that the envelope's signer is in the list and its signature
    /// verifies for `chain` (under the one signature rule of
    /// [`crate::signature`]); returns the signer's identifier.
    pub fn verify(&self, chain: &str, envelope: &Envelope) -> Result<ServerId> {
        let id = self.id_of(&envelope.signer).ok_or_else(|| {
            Error::Signature(format!(
                "{} signed by {}, which is not in this chain's server list",
                envelope.command.name(),
                envelope.signer
            ))
        })?;
        if !signature::is_signing_key(&envelope.signer.0) {
            return Err(Error::Signature(format!(
                "server key {} is not valid",
                envelope.signer
            )));
        }
        let signed =
            Envelope::signed_bytes(chain, envelope.command, envelope.slot, &envelope.payload);
        if !signature::verify(&envelope.signer.0, &signed, &envelope.signature) {
            return Err(Error::Signature(format!(
                "{} from server {id}: the signature does not verify",
                envelope.command.name()
            )));
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;
    use crate::types::Hash;
    use crate::wire::PeerMessage;

    const CHAIN: &str = "test";

    #[test]
    fn a_signer_outside_the_list_is_refused_by_name() {
        let stranger = Keypair::from_seed(&[7; 32]);
        let list = ServerList::new(vec![PublicKey([9; 32])]);
        let envelope = Envelope::sign(
            &stranger,
            CHAIN,
            1,
            &PeerMessage::Want {
                slot: 1,
                digest: Hash([2; 32]),
            },
        );
        let err = list.verify(CHAIN, &envelope).unwrap_err().to_string();
        assert!(err.contains("not in this chain's server list"), "{err}");
    }

    #[test]
    fn majority_is_more_than_half_of_all_servers() {
        let list = |n| ServerList::new(vec![PublicKey([0; 32]); n]);
        assert_eq!(list(1).majority(), 1);
        assert_eq!(list(2).majority(), 2);
        assert_eq!(list(3).majority(), 2);
        assert_eq!(list(4).majority(), 3);
        assert_eq!(list(5).majority(), 3);
    }

    #[test]
    fn the_free_majority_is_the_lists_majority() {
        for n in 1..=9 {
            let list = ServerList::new(vec![PublicKey([0; 32]); n]);
            assert_eq!(majority(n), list.majority());
        }
    }
}
