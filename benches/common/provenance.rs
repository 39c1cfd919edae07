//! Where a benchmark's figures come from, for its section of BENCHMARKS.md:
//! the command as typed, the commit, the machine.

use std::process::Command;

/// The command as typed, without what cargo adds.
pub fn command_line(bench: &str) -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() {
        format!("cargo bench --bench {bench}")
    } else {
        format!("cargo bench --bench {bench} -- {}", args.join(" "))
    }
}

/// `commit abc1234`, naming the files changed since (outside benches/ and
/// BENCHMARKS.md: changes to a benchmark do not change what it measures).
pub fn git_version() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_string())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown commit".into();
    };
    let status = git(&["status", "--porcelain"]).unwrap_or_default();
    let dirty: Vec<&str> = status
        .lines()
        .filter_map(|l| l.get(3..))
        .filter(|p| !p.starts_with("benches/") && !p.starts_with("BENCHMARKS.md"))
        .collect();
    if dirty.is_empty() {
        format!("commit {head}")
    } else {
        format!(
            "commit {head} with uncommitted changes to {}",
            dirty.join(", ")
        )
    }
}

/// The machine, then what runs on it.
pub fn machine(what_runs: &str) -> String {
    let (cpus, mem_gb, model) = crate::procfs::host();
    format!("{cpus} cores (nproc), {mem_gb:.1} GiB memory, {model}; {what_runs}")
}
