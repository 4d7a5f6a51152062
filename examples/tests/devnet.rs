//! The examples as separate processes against three-node `kms devnet`s started here (anvil and
//! the nodes on free ports): the four actors in their order (each must exit 0, and Bob must print
//! what Enrico encrypted), and the group chat (which checks its own story).
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

/// A three-node devnet on a free port, its deployments file named after the port.
async fn start_devnet() -> Result<(devnet::Devnet, String)> {
    let port = free_port()?;
    let deployments_file = format!("deployments/test-examples-{port}.json");
    let devnet = devnet::start(&DevnetArgs {
        plain_http: false,
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
    Ok((devnet, deployments_file))
}

/// Runs example `name` with `args` against the devnet; returns its exit status, stdout and
/// stderr.
async fn run_example(
    name: &str,
    args: &[&str],
    devnet: &devnet::Devnet,
    deployments_file: &str,
    work: &std::path::Path,
) -> Result<(std::process::ExitStatus, String, String)> {
    let output = tokio::process::Command::new(example_binary(name)?)
        .args(args)
        .env("KMS_RPC_URL", devnet.chain.endpoint_url().as_str())
        .env("KMS_DEPLOYMENTS", deployments_file)
        .env("KMS_EXAMPLES_DIR", work)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("== {name}\n{stdout}");
    Ok((
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn examples_run_against_a_devnet() -> Result<()> {
    let (devnet, deployments_file) = start_devnet().await?;
    let work = tempfile::tempdir()?;
    let message = "from the examples' test";

    let mut outputs = Vec::new();
    for (name, args) in [
        ("staker", vec![]),
        ("alice_grant", vec![]),
        ("enrico_encrypt", vec![message]),
        ("bob_retrieve", vec![]),
    ] {
        let run = run_example(name, &args, &devnet, &deployments_file, work.path()).await;
        let failed = !run.as_ref().is_ok_and(|(status, _, _)| status.success());
        outputs.push((name, run));
        if failed {
            break;
        }
    }
    devnet.shutdown().await;
    let _ = std::fs::remove_file(kms_examples::repo_root().join(&deployments_file));

    let mut bob = None;
    for (name, run) in outputs.iter() {
        let (status, stdout, stderr) = run
            .as_ref()
            .map_err(|e| anyhow::anyhow!("example {name}: {e:#}"))?;
        ensure!(
            status.success(),
            "example {name}: {status}\n{stdout}\n{stderr}"
        );
        bob = Some(stdout.as_str());
    }
    ensure!(
        outputs.len() == 4 && bob.is_some_and(|out| out.contains(&format!("decrypted: {message}"))),
        "Bob did not decrypt Enrico's message: {bob:?}"
    );
    Ok(())
}

/// The group chat: grants, posts and reads, a member's removal, a forgery; the example checks
/// every step itself and exits non-zero otherwise.
#[tokio::test(flavor = "multi_thread")]
async fn the_chat_runs_against_a_devnet() -> Result<()> {
    let (devnet, deployments_file) = start_devnet().await?;
    let work = tempfile::tempdir()?;
    let run = run_example("chat", &[], &devnet, &deployments_file, work.path()).await;
    devnet.shutdown().await;
    let _ = std::fs::remove_file(kms_examples::repo_root().join(&deployments_file));
    let (status, stdout, stderr) = run?;
    ensure!(status.success(), "the chat: {status}\n{stdout}\n{stderr}");
    ensure!(
        stdout.contains("REFUSES") && stdout.contains("cannot open a session"),
        "the chat did not show the refusals:\n{stdout}"
    );
    Ok(())
}
