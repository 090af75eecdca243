//! The in-process scenarios: `spawn`, `switch` and `memory`.

use anyhow::{bail, Result};

use crate::report::Report;
use crate::Opts;

/// The `spawn` scenario.
pub fn spawn(_opts: &Opts) -> Result<Report> {
    bail!("the spawn scenario is not built yet")
}

/// The `switch` scenario.
pub fn switch(_opts: &Opts) -> Result<Report> {
    bail!("the switch scenario is not built yet")
}

/// The `memory` scenario.
pub fn memory(_opts: &Opts) -> Result<Report> {
    bail!("the memory scenario is not built yet")
}

/// Holds `n` blocked green threads / tasks of runtime `kind` and reports RSS.
pub fn hold(kind: &str, _n: usize) -> Result<()> {
    bail!("unknown runtime {kind:?}")
}
