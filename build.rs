//! Compiles `proto/` without a system `protoc`: protox parses the files into a descriptor set,
//! tonic-prost-build generates the messages and the gRPC server/client code, and pbjson-build
//! generates the proto3 JSON mapping. The descriptor set is also written to `OUT_DIR` so the
//! server can embed it (reflection, route drift checks).

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new("proto");
    let mut files = Vec::new();
    collect_protos(&root.join("zitadel"), &mut files)?;
    collect_protos(&root.join("sessiond"), &mut files)?;
    files.sort();

    // As `protox::compile`, but the encoded set also keeps extension options (the
    // `google.api.http` rules), which `prost_types` drops.
    let mut compiler = protox::Compiler::new([root])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(&files)?;
    let fds = compiler.file_descriptor_set();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_bytes = compiler.encode_file_descriptor_set();
    std::fs::write(out_dir.join("sessiond_descriptor.bin"), &descriptor_bytes)?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_well_known_types(true)
        // Messages are encoded and decoded with buffers sized for them (see the codec).
        .codec_path("crate::faces::grpc::Codec")
        // Well-known types come from pbjson-types (they carry the proto3 JSON mapping),
        // except Timestamp, which needs RFC 3339 with a `Z` suffix: that one is ours.
        .extern_path(".google.protobuf", "::pbjson_types")
        .extern_path(
            ".google.protobuf.Timestamp",
            "crate::faces::pb::wkt::Timestamp",
        )
        .compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .ignore_unknown_fields()
        .build(&[".zitadel", ".sessiond"])?;

    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
