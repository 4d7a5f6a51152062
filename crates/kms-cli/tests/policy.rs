//! Alice, Enrico and Bob through the real `kms` binary against a `kms devnet` (anvil, the
//! contracts, three staked miners and their nodes, one of them faulty): every command's happy
//! path and its main failures.

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use support::{free_port, repo_root, terminate, KMS};
/// anvil's well-known dev keys: with 3 miners, Alice is account 4 and Bob account 5.
const ALICE_KEY: &str = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a";
const BOB_KEY: &str = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba";

/// A `kms devnet` child process; stopped with SIGTERM (so that it stops anvil) on drop.
struct Devnet {
    child: Child,
    rpc: String,
    deployments: PathBuf,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(20));
        let _ = std::fs::remove_file(&self.deployments);
    }
}

fn start_devnet(faulty: bool) -> Result<Devnet> {
    let port = free_port();
    let file = format!("deployments/test-cli-{port}.json");
    let mut command = Command::new(KMS);
    command
        .current_dir(repo_root())
        .args([
            "devnet",
            "--nodes",
            "3",
            "--node-port",
            "0",
            "--seconds-per-period",
            "3600",
        ])
        .args(["--port", &port.to_string(), "--deployments-file", &file])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if faulty {
        command.arg("--faulty-node");
    }
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let devnet = Devnet {
        child,
        rpc: format!("http://127.0.0.1:{port}"),
        deployments: repo_root().join(&file),
    };
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = lines.next().context("kms devnet exited")??;
        if line.contains("devnet running") {
            break;
        }
        ensure!(Instant::now() < deadline, "kms devnet did not start");
    }
    // Keep draining stdout so the devnet never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(devnet)
}

struct Run<'a> {
    devnet: &'a Devnet,
    dir: &'a Path,
}

impl Run<'_> {
    fn kms(&self, args: &[&str]) -> Output {
        Command::new(KMS)
            .current_dir(self.dir)
            .args(args)
            .env("ETH_RPC_URL", &self.devnet.rpc)
            .env("KMS_DEPLOYMENTS", &self.devnet.deployments)
            .env("KMS_PASSWORD", "pw")
            .env_remove("ETH_PRIVATE_KEY")
            .env_remove("ETH_KEYSTORE")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kms(args);
        assert!(
            out.status.success(),
            "kms {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str], code: i32, reason: &str) {
        let out = self.kms(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "kms {args:?}: {stderr}");
        assert!(stderr.contains(reason), "kms {args:?}: {stderr}");
    }
}

fn keys(run: &Run<'_>, who: &str) -> Value {
    run.ok(&["keys", "new", "--umbral-only", "--dir", who]);
    serde_json::from_str(&run.ok(&[
        "keys",
        "show",
        "--json",
        "--umbral",
        &format!("{who}/umbral.json"),
    ]))
    .unwrap()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn grant_encrypt_retrieve_revoke_and_their_failures() -> Result<()> {
    let devnet = start_devnet(false)?;
    let dir = tempfile::tempdir()?;
    let run = Run {
        devnet: &devnet,
        dir: dir.path(),
    };
    keys(&run, "alice");
    let bob = keys(&run, "bob");
    let bob_key = bob["receivingKey"].as_str().unwrap();
    let grant = |shares: &str, out: &str| -> Vec<String> {
        [
            "policy",
            "grant",
            "--umbral",
            "alice/umbral.json",
            "--label",
            "photos",
            "--bob",
            bob_key,
            "--threshold",
            "2",
            "--shares",
            shares,
            "--expires",
            "5",
            "--fee-rate",
            "1gwei",
            "--out",
            out,
            "--yes",
            "--private-key",
            ALICE_KEY,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    // More shares than nodes: exit 4, nothing paid.
    let too_many = grant("5", "never.json");
    run.fails(&args(&too_many), 4, "");
    ensure!(!dir.path().join("never.json").exists());
    // 2-of-3.
    run.ok(&args(&grant("3", "policy.json")));

    // Enrico encrypts; Bob retrieves and decrypts.
    let plaintext: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("photo.raw"), &plaintext)?;
    // Alice's grant lists her own sender key by default: she is Enrico here.
    run.ok(&[
        "encrypt",
        "--policy-key",
        "policy.json",
        "--umbral",
        "alice/umbral.json",
        "photo.raw",
        "photo.kms",
    ]);
    run.ok(&[
        "retrieve",
        "--policy",
        "policy.json",
        "--umbral",
        "bob/umbral.json",
        "photo.kms",
        "photo.out",
    ]);
    ensure!(std::fs::read(dir.path().join("photo.out"))? == plaintext);

    // Signed by a sender the policy does not list: refused before any node is asked, unless Bob
    // trusts that key himself.
    run.ok(&[
        "encrypt",
        "--policy-key",
        "policy.json",
        "--umbral",
        "bob/umbral.json",
        "--segment-chunks",
        "1",
        "photo.raw",
        "other.kms",
    ]);
    let retrieve_other = |extra: &[&str], out: &str| -> Vec<String> {
        let mut args = vec![
            "retrieve",
            "--policy",
            "policy.json",
            "--umbral",
            "bob/umbral.json",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["other.kms", out]);
        args.iter().map(|s| s.to_string()).collect()
    };
    let other_args = retrieve_other(&[], "other.out");
    run.fails(&args(&other_args), 1, "not among the trusted senders");
    // An unsigned KMSENC01 file (the previous version's test vector): refused, saying how to
    // read or convert it, before any node is asked.
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../kms-client/tests/fixtures/stream/v1.kms"
        ),
        dir.path().join("old.kms"),
    )?;
    run.fails(
        &[
            "retrieve",
            "--policy",
            "policy.json",
            "--umbral",
            "bob/umbral.json",
            "old.kms",
            "old.out",
        ],
        1,
        "--allow-unsigned",
    );
    let bob_sender = bob["senderKey"].as_str().unwrap();
    let trusting = retrieve_other(&["--sender", bob_sender], "other.out");
    run.ok(&args(&trusting));
    ensure!(std::fs::read(dir.path().join("other.out"))? == plaintext);

    // Wrong key, bad file.
    run.fails(
        &[
            "retrieve",
            "--policy",
            "policy.json",
            "--umbral",
            "alice/umbral.json",
            "photo.kms",
            "x.out",
        ],
        1,
        "not the policy's receiving key",
    );
    run.fails(
        &[
            "retrieve",
            "--policy",
            "policy.json",
            "--umbral",
            "bob/umbral.json",
            "photo.raw",
            "x.out",
        ],
        1,
        "not a KMS-encrypted file",
    );
    run.fails(
        &[
            "retrieve",
            "--policy",
            "photo.raw",
            "--umbral",
            "bob/umbral.json",
            "photo.kms",
            "x.out",
        ],
        1,
        "photo.raw",
    );
    ensure!(!dir.path().join("x.out").exists(), "no partial output");

    // Messages: Alice (the policy's listed sender) seals three lines, two per session; Bob reads
    // them through the nodes, Alice as the owner without them.
    std::fs::write(dir.path().join("lines.txt"), "first\nsecond\n\nfourth\n")?;
    let seal = |umbral: &str| {
        run.ok(&[
            "message",
            "seal",
            "--policy-key",
            "policy.json",
            "--umbral",
            umbral,
            "--max-messages",
            "2",
            "--append",
            "room.feed",
            "lines.txt",
        ])
    };
    seal("alice/umbral.json");
    let feed = std::fs::read_to_string(dir.path().join("room.feed"))?;
    ensure!(
        feed.lines().count() == 6,
        "2 sessions and 4 messages:\n{feed}"
    );
    let read = |umbral: &str, extra: &[&str]| -> Vec<String> {
        let mut args = vec![
            "message",
            "read",
            "--policy",
            "policy.json",
            "--umbral",
            umbral,
        ];
        args.extend_from_slice(extra);
        args.push("room.feed");
        args.iter().map(|s| s.to_string()).collect()
    };
    let lines = "first\nsecond\n\nfourth\n";
    ensure!(run.ok(&args(&read("bob/umbral.json", &[]))) == lines);
    ensure!(run.ok(&args(&read("alice/umbral.json", &["--owner"]))) == lines);
    let json = run.ok(&args(&read("bob/umbral.json", &["--json"])));
    let first: Value = serde_json::from_str(json.lines().next().unwrap())?;
    ensure!(
        first["text"] == "first" && first["seq"] == 0 && first["line"] == 2,
        "{first}"
    );
    run.fails(
        &args(&read("bob/umbral.json", &["--owner"])),
        1,
        "is not the policy's owner's key",
    );
    // A sender the policy does not list: the good lines still print, the others are refused.
    seal("bob/umbral.json");
    let out = run.kms(&args(&read("bob/umbral.json", &[])));
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1), "{stderr}");
    ensure!(String::from_utf8_lossy(&out.stdout) == lines);
    ensure!(
        stderr.contains("not a trusted sender") && stderr.contains("6 of 12 lines were refused"),
        "{stderr}"
    );
    std::fs::write(dir.path().join("bad.feed"), "not json\n")?;
    run.fails(
        &[
            "message",
            "read",
            "--policy",
            "policy.json",
            "--umbral",
            "bob/umbral.json",
            "bad.feed",
        ],
        1,
        "line 1 refused: bad feed line",
    );

    // Extended by two periods: paid, and the policy file now says the new end.
    let end_of = || -> u64 {
        let file: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("policy.json")).unwrap())
                .unwrap();
        file["endTimestamp"].as_u64().unwrap()
    };
    let first_end = end_of();
    let out = run.ok(&[
        "policy",
        "extend",
        "--policy",
        "policy.json",
        "--by",
        "2",
        "--private-key",
        ALICE_KEY,
    ]);
    ensure!(
        out.contains("extended") && out.contains("paid 0.000000006"),
        "{out}"
    );
    ensure!(end_of() == first_end + 2 * 3600);
    run.fails(
        &[
            "policy",
            "extend",
            "--policy",
            "policy.json",
            "--private-key",
            ALICE_KEY,
        ],
        1,
        "pass --by PERIODS",
    );

    // One node's part revoked: refunded, that node refuses, the other two still serve Bob.
    let policy_file: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("policy.json"))?)?;
    let first_node = policy_file["nodes"][0]["staker"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoke_as = |key: &str, extra: &[&str]| -> Vec<String> {
        [
            "policy",
            "revoke",
            "--policy",
            "policy.json",
            "--private-key",
            key,
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    };
    let revoke_node = |node: &str| revoke_as(ALICE_KEY, &["--node", node]);
    let out = run.ok(&args(&revoke_node(&first_node)));
    ensure!(
        out.contains("revoked node") && out.contains("refused by node"),
        "{out}"
    );
    run.ok(&[
        "retrieve",
        "--policy",
        "policy.json",
        "--umbral",
        "bob/umbral.json",
        "photo.kms",
        "photo.out2",
    ]);
    ensure!(std::fs::read(dir.path().join("photo.out2"))? == plaintext);
    run.fails(
        &args(&revoke_node("0x0707070707070707070707070707070707070707")),
        3,
        "not one of the policy's nodes",
    );
    run.fails(&args(&revoke_node(&first_node)), 3, "already revoked");

    // The second node's part by a signed order: no transaction; that node refuses at once, and
    // Bob, with one node left of the two he needs, is refused. Bob's own account then carries
    // out the order the node hands out; the refund goes to Alice.
    let second_node = policy_file["nodes"][1]["staker"]
        .as_str()
        .unwrap()
        .to_owned();
    run.fails(
        &args(&revoke_as(BOB_KEY, &["--offline"])),
        1,
        "sign with the owner's key",
    );
    let offline = run.ok(&args(&revoke_as(
        ALICE_KEY,
        &[
            "--offline",
            "--node",
            &second_node,
            "--save-order",
            "order.json",
        ],
    )));
    ensure!(
        offline.contains("refused by 1 of 1 node(s), with no transaction"),
        "{offline}"
    );
    run.fails(
        &[
            "retrieve",
            "--policy",
            "policy.json",
            "--umbral",
            "bob/umbral.json",
            "photo.kms",
            "photo.out3",
        ],
        4,
        "signed order",
    );
    // No order for the whole policy: a stranger is told what to do.
    run.fails(
        &args(&revoke_as(BOB_KEY, &[])),
        1,
        "ask the owner to sign one",
    );
    let settled = run.ok(&args(&revoke_as(BOB_KEY, &["--node", &second_node])));
    ensure!(
        settled.contains("by the owner's signed order") && settled.contains("refused by node"),
        "{settled}"
    );
    // The same order from its file: spent.
    run.fails(
        &args(&revoke_as(
            BOB_KEY,
            &["--node", &second_node, "--order", "order.json"],
        )),
        3,
        "already revoked",
    );

    // Listed as active, then revoked: Bob is refused (exit 4), the list says so.
    let list = |run: &Run<'_>| -> Value {
        serde_json::from_str(&run.ok(&["policy", "list", "--json", "--private-key", ALICE_KEY]))
            .unwrap()
    };
    ensure!(list(&run)[0]["state"] == "active", "{}", list(&run));
    run.ok(&[
        "policy",
        "revoke",
        "--policy",
        "policy.json",
        "--private-key",
        ALICE_KEY,
    ]);
    run.fails(
        &[
            "retrieve",
            "--policy",
            "policy.json",
            "--umbral",
            "bob/umbral.json",
            "photo.kms",
            "y.out",
        ],
        4,
        "revoked",
    );
    ensure!(list(&run)[0]["state"] == "revoked");
    // A new reader of the feed opens no session any more (the owner still reads hers).
    run.fails(&args(&read("bob/umbral.json", &[])), 1, "cannot be opened");
    ensure!(run
        .ok(&args(&read(
            "alice/umbral.json",
            &["--owner", "--sender", bob_sender]
        )))
        .starts_with(lines));
    // Revoking twice: the contract's custom error, exit 3.
    run.fails(
        &[
            "policy",
            "revoke",
            "--policy",
            "policy.json",
            "--private-key",
            ALICE_KEY,
        ],
        3,
        "already revoked",
    );
    Ok(())
}

#[test]
fn a_faulty_node_is_reported_and_slashed() -> Result<()> {
    let devnet = start_devnet(true)?;
    let dir = tempfile::tempdir()?;
    let run = Run {
        devnet: &devnet,
        dir: dir.path(),
    };
    keys(&run, "alice");
    let bob = keys(&run, "bob");
    run.ok(&[
        "policy",
        "grant",
        "--umbral",
        "alice/umbral.json",
        "--label",
        "chat",
        "--bob",
        bob["receivingKey"].as_str().unwrap(),
        "--threshold",
        "2",
        "--shares",
        "3",
        "--expires",
        "5",
        "--fee-rate",
        "1gwei",
        "--out",
        "chat.json",
        "--yes",
        "--private-key",
        ALICE_KEY,
    ]);
    std::fs::write(dir.path().join("msg.txt"), b"meet at noon")?;
    run.ok(&[
        "encrypt",
        "--policy-key",
        "chat.json",
        "--umbral",
        "alice/umbral.json",
        "msg.txt",
        "msg.kms",
    ]);
    // Bob audits every node and reports the wrong cfrag: slashed, and he still decrypts.
    let out = run.kms(&[
        "retrieve",
        "--policy",
        "chat.json",
        "--umbral",
        "bob/umbral.json",
        "--report",
        "--private-key",
        BOB_KEY,
        "msg.kms",
        "msg.out",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "{stderr}");
    ensure!(stderr.contains("verdict WrongE"), "{stderr}");
    ensure!(std::fs::read(dir.path().join("msg.out"))? == b"meet at noon");
    // The saved evidence cannot slash twice.
    run.fails(
        &["report", "msg.out.fault-0.json", "--private-key", BOB_KEY],
        3,
        "already evaluated",
    );
    // A file that is no evidence.
    run.fails(
        &["report", "msg.txt", "--private-key", BOB_KEY],
        1,
        "msg.txt",
    );
    Ok(())
}
