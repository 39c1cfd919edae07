//! Compiles `proto/` with protox (pure Rust: no `protoc` needed on the
//! machine) and generates the tonic server and client code from it. The
//! descriptor set is kept in OUT_DIR for gRPC server reflection.
use prost::Message;
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["affinity/v1/affinity.proto"];
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR not set")?);
    let descriptor = out.join("affinity_descriptor.bin");
    fs::write(&descriptor, fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .skip_protoc_run()
        .file_descriptor_set_path(&descriptor)
        .compile_protos(
            &protos.map(|p| format!("proto/{p}")),
            &["proto".to_string()],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
