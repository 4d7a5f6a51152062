//! The bench's command line: flags, defaults and where the JSON results go.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Result};

pub(crate) const USAGE: &str = "\
usage: cargo bench -p kms-node --bench throughput -- [options]
  --seconds N        seconds per measurement (default 5, or env KMS_BENCH_SECONDS)
  --clients LIST     concurrent clients, comma-separated (default 1,8,64)
  --batch LIST       capsules per request, comma-separated (default 1,16)
  --out PATH         JSON results (default <target>/bench/node-throughput.json)
  --inline-signing   clients sign each request inside the timed window (default: pre-signed)
  --min-ratio R      exit with an error if a level's node/raw ratio is below R (e.g. 0.8)
  --no-breakdown     skip the single-thread cost breakdown
  --pinned           the node as a process on core 0 (taskset), the clients on core 1, against
                     the one-core ceiling of the node's cryptography (default out: node-pinned.json)
  --scale            latency of a node holding --policies policies vs one holding 10, their
                     memory and store files (default out: node-scale.json)
  --policies N       policies of the large node of --scale (default 100000)
  --requests N       requests per series of --scale (default 3000)";

/// What the bench measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The node in this process, on every core, against the raw rate (the default).
    InProcess,
    /// `--pinned`.
    Pinned,
    /// `--scale`.
    Scale,
}

#[derive(Debug, Clone)]
pub(crate) struct Args {
    pub(crate) seconds: f64,
    pub(crate) clients: Vec<usize>,
    pub(crate) batches: Vec<usize>,
    pub(crate) out: PathBuf,
    pub(crate) inline_signing: bool,
    pub(crate) min_ratio: Option<f64>,
    pub(crate) breakdown: bool,
    pub(crate) mode: Mode,
    pub(crate) policies: usize,
    pub(crate) requests: usize,
}

pub(crate) fn parse_list(flag: &str, value: &str) -> Result<Vec<usize>> {
    let list = value
        .split(',')
        .map(|item| {
            item.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| anyhow!("{flag}: {item:?} is not a positive integer"))
        })
        .collect::<Result<Vec<_>>>()?;
    ensure!(!list.is_empty(), "{flag}: empty list");
    Ok(list)
}

pub(crate) fn parse_seconds(source: &str, value: &str) -> Result<f64> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .ok_or_else(|| anyhow!("{source}: {value:?} is not a positive number of seconds"))
}

pub(crate) fn parse_args() -> Result<Args> {
    let mut args = Args {
        seconds: match std::env::var("KMS_BENCH_SECONDS") {
            Ok(value) => parse_seconds("KMS_BENCH_SECONDS", &value)?,
            Err(_) => 5.0,
        },
        clients: vec![1, 8, 64],
        batches: vec![1, 16],
        out: PathBuf::new(),
        inline_signing: false,
        min_ratio: None,
        breakdown: true,
        mode: Mode::InProcess,
        policies: 100_000,
        requests: 3000,
    };
    let mut out = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.into())),
            _ => (arg.clone(), None),
        };
        let mut value = |flag: &str| -> Result<String> {
            match inline_value.clone() {
                Some(value) => Ok(value),
                None => it.next().ok_or_else(|| anyhow!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "--seconds" => args.seconds = parse_seconds("--seconds", &value("--seconds")?)?,
            "--clients" => args.clients = parse_list("--clients", &value("--clients")?)?,
            "--batch" => args.batches = parse_list("--batch", &value("--batch")?)?,
            "--out" => out = Some(resolve_out(Path::new(&value("--out")?))),
            "--pinned" => args.mode = Mode::Pinned,
            "--scale" => args.mode = Mode::Scale,
            "--policies" => args.policies = parse_count("--policies", &value("--policies")?)?,
            "--requests" => args.requests = parse_count("--requests", &value("--requests")?)?,
            "--min-ratio" => {
                let raw = value("--min-ratio")?;
                args.min_ratio = Some(
                    raw.parse::<f64>()
                        .ok()
                        .filter(|r| r.is_finite())
                        .ok_or_else(|| anyhow!("--min-ratio: {raw:?} is not a number"))?,
                );
            }
            "--inline-signing" => args.inline_signing = true,
            "--no-breakdown" => args.breakdown = false,
            // `cargo bench` passes `--bench` to every bench target.
            "--bench" => {}
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    args.out = out.unwrap_or_else(|| {
        default_out(match args.mode {
            Mode::InProcess => "node-throughput.json",
            Mode::Pinned => "node-pinned.json",
            Mode::Scale => "node-scale.json",
        })
    });
    Ok(args)
}

fn parse_count(flag: &str, value: &str) -> Result<usize> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| anyhow!("{flag}: {value:?} is not a positive integer"))
}

/// The workspace root (the bench runs with the package as its working directory).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `<target dir>/bench/<name>`: the target dir is found from this executable
/// (`<target>/<profile>/deps/throughput-*`), else the workspace's `target`.
pub(crate) fn default_out(name: &str) -> PathBuf {
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        let target = exe.parent()?.parent()?.parent()?.to_path_buf();
        target.join("CACHEDIR.TAG").exists().then_some(target)
    });
    from_exe
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("bench")
        .join(name)
}

pub(crate) fn resolve_out(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::var_os("KMS_BENCH_CWD")
        .map_or_else(workspace_root, PathBuf::from)
        .join(path)
}
