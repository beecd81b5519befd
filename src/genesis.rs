//! The genesis file: the initial accounts of a chain, shared by all its
//! servers. JSON, so that it can be generated and read by scripts:
//!
//! ```json
//! { "chain": "local",
//!   "accounts": [ { "public_key": "<64 hex>", "balance": 1000000 } ] }
//! ```

use std::path::Path;

use rota_peer::balances::Balances;
use rota_peer::{Amount, PublicKey};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The contents of a genesis file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain: String,
    pub accounts: Vec<GenesisAccount>,
}

/// One initial account.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub public_key: PublicKey,
    pub balance: Amount,
}

impl Genesis {
    /// Reads a genesis file and checks it belongs to `chain`.
    pub fn load(path: &Path, chain: &str) -> Result<Genesis> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let genesis: Genesis = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: not a genesis file: {e}", path.display())))?;
        if genesis.chain != chain {
            return Err(Error::Config(format!(
                "{}: the genesis is for chain {:?}, the conf for {chain:?}",
                path.display(),
                genesis.chain
            )));
        }
        Ok(genesis)
    }

    /// The initial balance database.
    pub fn balances(&self) -> Result<Balances> {
        let accounts: Vec<(PublicKey, Amount)> = self
            .accounts
            .iter()
            .map(|a| (a.public_key, a.balance))
            .collect();
        Ok(Balances::from_accounts(&accounts)?)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("genesis serializes");
        std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_genesis_for_another_chain_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("genesis.json");
        let genesis = Genesis {
            chain: "one".into(),
            accounts: vec![GenesisAccount {
                public_key: PublicKey([1; 32]),
                balance: 5,
            }],
        };
        genesis.write(&path).unwrap();
        assert_eq!(Genesis::load(&path, "one").unwrap(), genesis);
        let err = Genesis::load(&path, "two").unwrap_err().to_string();
        assert!(err.contains("for chain \"one\""), "{err}");
        assert_eq!(
            genesis.balances().unwrap().get(&PublicKey([1; 32])),
            Some(5)
        );
    }
}
