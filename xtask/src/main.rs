//! brummer's build and check helpers, run as `cargo xtask SUBCOMMAND` (alias in
//! `.cargo/config.toml`): `assets` (man pages and completions, `assets.rs`) and `layers`
//! (brummerd's module layering, `layers/`).

mod assets;
mod layers;

use anyhow::bail;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask assets OUT_DIR | cargo xtask layers [REPO]";

fn main() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    match args.as_slice() {
        [cmd, out] if cmd == "assets" => {
            assets::assets(&root, Path::new(out))?;
            Ok(ExitCode::SUCCESS)
        }
        [cmd] if cmd == "layers" => layers::run(&root),
        // Another checkout (a branch's tree, an export of a commit).
        [cmd, repo] if cmd == "layers" => layers::run(Path::new(repo)),
        _ => bail!(USAGE),
    }
}
