//! `cargo xtask deploy`: reserved so `--help` shows the whole command set; the deployment
//! task itself is built separately.

use anyhow::bail;

pub fn run() -> anyhow::Result<()> {
    bail!("deploy is not yet implemented")
}
