//! The network scenarios, `echo` and `http`, their peer servers, and `setup`.

use anyhow::{bail, Result};

use crate::report::Report;
use crate::Opts;

/// The `echo` scenario.
pub fn echo(_opts: &Opts) -> Result<Report> {
    bail!("the echo scenario is not built yet")
}

/// The `http` scenario.
pub fn http(_opts: &Opts) -> Result<Report> {
    bail!("the http scenario is not built yet")
}

/// Runs one peer server until killed.
pub fn peer(kind: &str, _addr: &str) -> Result<()> {
    bail!("unknown peer {kind:?}")
}

/// Installs the optional peers.
pub fn setup() -> Result<()> {
    bail!("setup is not built yet")
}
