//! CPU accounting (Linux `/proc`; `None` elsewhere).

use serde::Serialize;

/// Clock ticks per second of `/proc` times (`USER_HZ`, 100 on every Linux architecture).
pub(crate) const USER_HZ: f64 = 100.0;

/// This process's CPU time and the whole machine's busy time, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSnapshot {
    pub(crate) process: u64,
    pub(crate) machine_busy: u64,
}

impl CpuSnapshot {
    pub(crate) fn take() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the `(comm)`, which may hold spaces: state is field 3, utime 14, stime 15.
        let after = stat.rsplit_once(')')?.1;
        let fields = after.split_whitespace().collect::<Vec<_>>();
        let process = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let machine = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu = machine.lines().next()?.strip_prefix("cpu ")?;
        // user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait.
        let ticks = cpu
            .split_whitespace()
            .map(|t| t.parse::<u64>().ok())
            .collect::<Option<Vec<_>>>()?;
        let machine_busy = ticks
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
            .map(|(_, t)| t)
            .sum();
        Some(Self {
            process,
            machine_busy,
        })
    }
}

/// Cores this process used and cores other processes used, between two snapshots.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct CpuUse {
    pub(crate) this_process_cores: f64,
    pub(crate) other_processes_cores: f64,
    /// CPU time of this process (node and clients) per cfrag, in microseconds: unlike the
    /// rates, barely moved by other processes taking cores.
    pub(crate) cpu_us_per_cfrag: f64,
}

pub(crate) fn cpu_use(
    before: Option<CpuSnapshot>,
    after: Option<CpuSnapshot>,
    wall: f64,
    cfrags: u64,
) -> Option<CpuUse> {
    let (before, after) = (before?, after?);
    let ours = after.process.saturating_sub(before.process) as f64 / USER_HZ;
    let busy = after.machine_busy.saturating_sub(before.machine_busy) as f64 / USER_HZ;
    Some(CpuUse {
        this_process_cores: ours / wall,
        other_processes_cores: (busy - ours).max(0.0) / wall,
        cpu_us_per_cfrag: ours * 1e6 / cfrags.max(1) as f64,
    })
}

/// The 1-minute load average.
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
