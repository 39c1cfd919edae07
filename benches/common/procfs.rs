//! What the kernel says: a process's CPU time and resident memory from
//! /proc, PostgreSQL's CPU time (the postmaster and its children), and the
//! machine. Shared by both benchmarks (`#[path]`-included).

use std::path::Path;

/// Fields of /proc/<pid>/stat after the command name: (ppid, utime, stime,
/// cutime, cstime) in clock ticks.
fn stat(pid: u32) -> Option<(u32, u64, u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: skip past the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, utime..cstime 14..17.
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let ppid = f.get(1).and_then(|v| v.parse::<u32>().ok())?;
    Some((ppid, num(11)?, num(12)?, num(13)?, num(14)?))
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        // Clock ticks per second: 100 on Linux, exact in f64.
        t as f64
    } else {
        100.0
    }
}

fn secs(ticks: u64) -> f64 {
    // Ticks of one run stay far below 2^52: exact in f64.
    ticks as f64 / ticks_per_sec()
}

/// User + system CPU seconds a process has used so far (its threads
/// included).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    stat(pid).map(|(_, u, s, _, _)| secs(u + s))
}

/// Resident memory: (VmRSS, VmHWM) in bytes.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|v| v * 1024)
    };
    Some((kb("VmRSS:")?, kb("VmHWM:")?))
}

/// The postmaster's pid, from the first line of `postmaster.pid`.
pub fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// CPU seconds of the whole PostgreSQL server so far: the postmaster, the
/// children it has reaped (cutime, cstime) and those alive now. A backend
/// alive at one reading and reaped by the next moves from the third term to
/// the second, so a difference of two readings counts it once.
pub fn postgres_cpu_secs(postmaster: u32) -> Option<f64> {
    let (_, u, s, cu, cs) = stat(postmaster)?;
    let mut ticks = u + s + cu + cs;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some((ppid, u, s, _, _)) = stat(pid) {
            if ppid == postmaster {
                ticks += u + s;
            }
        }
    }
    Some(secs(ticks))
}

/// CPU seconds so far of the PostgreSQL processes alive now that serve no
/// client (checkpointer, background writer, WAL writer, autovacuum,
/// statistics): what [`postgres_cpu_secs`] counts that no call asked for.
/// An autovacuum worker that exits between two readings is not counted.
pub fn postgres_background_cpu_secs(postmaster: u32) -> Option<f64> {
    const BACKGROUND: [&str; 6] = [
        "checkpointer",
        "background writer",
        "walwriter",
        "autovacuum",
        "stats",
        "logical replication",
    ];
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Some((ppid, u, s, _, _)) = stat(pid) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read_to_string(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if ppid == postmaster && BACKGROUND.iter().any(|b| cmdline.contains(b)) {
            ticks += u + s;
        }
    }
    Some(secs(ticks))
}

/// Megabytes (10^6 bytes), for the report.
pub fn mb(bytes: u64) -> f64 {
    // Bytes of a process's memory: exact enough in f64.
    bytes as f64 / 1e6
}

/// The machine as the reports describe it: CPUs, memory and CPU model
/// (e.g. `2 CPUs (nproc), 23.5 GiB memory, AMD EPYC`).
pub fn host() -> (usize, f64, String) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gb = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1_048_576.0);
    (cpus, mem_gb, model)
}
