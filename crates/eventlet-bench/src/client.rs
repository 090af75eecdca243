//! The `client` scenario: 1,000 concurrent fetches, eventlet-http's client
//! against reqwest on tokio.

use anyhow::{bail, Result};

use crate::report::Report;
use crate::Opts;

/// The `client` scenario.
pub fn client(_opts: &Opts) -> Result<Report> {
    bail!("the client scenario is not built yet")
}

/// Whether `kind` names a peer of this module.
pub fn is_peer(_kind: &str) -> bool {
    false
}

/// Runs one of this module's peer servers until killed.
pub fn peer(kind: &str, _addr: &str) -> Result<()> {
    bail!("unknown peer {kind:?}")
}
