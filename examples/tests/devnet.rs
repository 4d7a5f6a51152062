//! The four examples, run in their order as separate processes against a three-node
//! `kms devnet` started here (anvil and the nodes on free ports): each must exit 0, and Bob must
//! print what Enrico encrypted.
//!
//! The example programs are the ones `cargo test` builds next to this test
//! (`target/<profile>/examples/`); run alone, build them first:
//! `cargo build -p kms-examples --examples && cargo test -p kms-examples --test devnet`.

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use kms_cli::devnet::{self, DevnetArgs};

/// A port that was free a moment ago.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `target/<profile>/examples/<name>`, from this test's own path (`target/<profile>/deps/`).
fn example_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test binary outside target/<profile>/deps")?;
    let path = profile_dir.join("examples").join(name);
    ensure!(
        path.exists(),
        "{} is not built: cargo build -p kms-examples --examples",
        path.display()
    );
    Ok(path)
}

#[tokio::test(flavor = "multi_thread")]
async fn examples_run_against_a_devnet() -> Result<()> {
    let port = free_port()?;
    let deployments_file = format!("deployments/test-examples-{port}.json");
    let devnet = devnet::start(&DevnetArgs {
        port,
        nodes: 3,
        seconds_per_period: 3600,
        node_port: 0,
        deployments_file: deployments_file.clone(),
        dir: None,
        demo: false,
        faulty_node: false,
    })
    .await?;
    let work = tempfile::tempdir()?;
    let message = "from the examples' test";

    let mut outputs = Vec::new();
    for (name, args) in [
        ("staker", vec![]),
        ("alice_grant", vec![]),
        ("enrico_encrypt", vec![message]),
        ("bob_retrieve", vec![]),
    ] {
        let output = tokio::process::Command::new(example_binary(name)?)
            .args(args)
            .env("KMS_RPC_URL", devnet.chain.endpoint_url().as_str())
            .env("KMS_DEPLOYMENTS", &deployments_file)
            .env("KMS_EXAMPLES_DIR", work.path())
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        println!("== {name}\n{stdout}");
        outputs.push((name, output.status, stdout, output.stderr));
        if !output.status.success() {
            break;
        }
    }
    devnet.shutdown().await;
    let _ = std::fs::remove_file(kms_examples::repo_root().join(&deployments_file));

    for (name, status, stdout, stderr) in &outputs {
        ensure!(
            status.success(),
            "example {name}: {status}\n{stdout}\n{}",
            String::from_utf8_lossy(stderr)
        );
    }
    let bob = outputs.last().map(|(_, _, stdout, _)| stdout.as_str());
    ensure!(
        outputs.len() == 4 && bob.is_some_and(|out| out.contains(&format!("decrypted: {message}"))),
        "Bob did not decrypt Enrico's message: {bob:?}"
    );
    Ok(())
}
