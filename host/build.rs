//! With the `cuda` feature, compiles `src/kernels/cuda/kernels.cu` to PTX for the GPU this build is for
//! (`CUDA_COMPUTE_CAP`, as candle's own kernels use, else what `nvidia-smi` reports) with the CUDA
//! toolkit's nvcc (`NVCC`, else `$CUDA_HOME/bin/nvcc`, else `nvcc` on the PATH). Without the feature it
//! does nothing, so CPU builds need no toolkit.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/kernels/cuda/kernels.cu");
    for var in ["NVCC", "CUDA_HOME", "CUDA_COMPUTE_CAP"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    if let Err(e) = build_ptx() {
        panic!("building the CUDA kernels (feature `cuda`): {e}");
    }
}

fn build_ptx() -> Result<(), String> {
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?)
        .join("fbnet_kernels.ptx");
    let cap = compute_cap()?;
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| match std::env::var("CUDA_HOME") {
        Ok(home) => format!("{home}/bin/nvcc"),
        Err(_) => "nvcc".into(),
    });
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", "-std=c++17"])
        .arg(format!("--gpu-architecture=sm_{cap}"))
        .arg("-o")
        .arg(&out)
        .arg("src/kernels/cuda/kernels.cu")
        .status()
        .map_err(|e| format!("could not run {nvcc}: {e} (set NVCC or CUDA_HOME)"))?;
    if !status.success() {
        return Err(format!(
            "{nvcc} failed on src/kernels/cuda/kernels.cu ({status})"
        ));
    }
    Ok(())
}

/// The compute capability as nvcc spells it (`90` for an H100 or H200).
fn compute_cap() -> Result<String, String> {
    if let Ok(cap) = std::env::var("CUDA_COMPUTE_CAP") {
        return Ok(cap.replace('.', ""));
    }
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=compute_cap", "--format=csv,noheader"])
        .output()
        .map_err(|e| {
            format!("no CUDA_COMPUTE_CAP and nvidia-smi could not run ({e}): set CUDA_COMPUTE_CAP, e.g. 90")
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().next().map(str::trim) {
        Some(cap) if !cap.is_empty() => Ok(cap.replace('.', "")),
        _ => Err("nvidia-smi reported no GPU: set CUDA_COMPUTE_CAP, e.g. 90".into()),
    }
}
