//! Writes the Adjudicator's test vectors (`test/fixtures/adjudicator/cases.json`, or `--out PATH`).
//!
//! ```sh
//! cargo run -p kms-crypto --bin gen-adjudicator-fixtures [-- --out PATH]
//! ```

use std::path::Path;
use std::process::ExitCode;

use kms_crypto::fixtures::{generate, FIXTURE_PATH};

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo_root = manifest_dir.ancestors().nth(2).unwrap_or(manifest_dir);
    let mut out = repo_root.join(FIXTURE_PATH);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next().ok_or("--out needs a path")?.into(),
            "-h" | "--help" => {
                println!("usage: gen-adjudicator-fixtures [--out PATH]  (default: <repo>/{FIXTURE_PATH})");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    let fixtures = generate()?;
    let json = fixtures.to_json()?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &json)?;
    println!(
        "{}: {} cases, {} bytes",
        out.display(),
        fixtures.cases.len(),
        json.len()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gen-adjudicator-fixtures: {err}");
            ExitCode::FAILURE
        }
    }
}
