//! The example clients of `examples/` as child processes: finding them
//! (installed by scripts/install-deps.sh, or a failure saying so), running
//! one to completion, reading its JSON.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

const INSTALL: &str = "run scripts/install-deps.sh: it installs the example clients' dependencies";

pub fn example_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// `node` and the BFF's installed packages, or a failure saying what to run.
pub fn bff_node() -> Command {
    let dir = example_dir("bff-node");
    for package in ["@grpc/grpc-js", "@grpc/proto-loader"] {
        let manifest = dir.join("node_modules").join(package).join("package.json");
        assert!(
            manifest.is_file(),
            "{} is missing: {INSTALL} (npm ci in examples/bff-node)",
            manifest.display()
        );
    }
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        matches!(&node, Ok(o) if o.status.success()),
        "`node` does not run ({node:?}): {INSTALL}"
    );
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("cli.js")).current_dir(&dir);
    cmd
}

/// The agent on its venv's python, or a failure saying what to run.
pub fn python_agent() -> Command {
    python_script("agent.py")
}

/// A script of examples/agent-python on its venv's python.
pub fn python_script(script: &str) -> Command {
    let dir = example_dir("agent-python");
    let python = dir.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: {INSTALL} (a venv with requirements.txt)",
        python.display()
    );
    let generated = dir.join("generated/affinity/v1/affinity_pb2_grpc.py");
    assert!(
        generated.is_file(),
        "{} is missing: {INSTALL} (it runs generate.py)",
        generated.display()
    );
    let mut cmd = Command::new(python);
    cmd.arg(dir.join(script)).current_dir(&dir);
    cmd
}

/// Runs an example to completion (180 s at most) and parses the one JSON
/// object it prints on stdout.
pub async fn run_json(mut cmd: Command, what: &str) -> Value {
    // The server is on 127.0.0.1: never through a proxy of the environment.
    for var in [
        "grpc_proxy",
        "https_proxy",
        "http_proxy",
        "HTTPS_PROXY",
        "HTTP_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The agent and the tour wait for the text model (up to 120 s by default).
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 180 s"))
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let line = stdout.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{what} printed no JSON object ({e}):\n{stdout}\n{stderr}"))
}

pub fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}

pub fn f64_of(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {v}"))
}

pub fn array_of<'a>(v: &'a Value, pointer: &str) -> &'a Vec<Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no array at {pointer} in {v}"))
}
