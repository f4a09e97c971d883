//! The training device a user names (`--device cpu|cuda`), one parser for the command line and the
//! benchmarks.

use candle_core::Device;

/// `cpu`, or `cuda` (GPU 0; a build with `--features cuda` and a GPU).
pub fn by_name(name: &str) -> anyhow::Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).map_err(|e| {
            anyhow::anyhow!("--device cuda: no CUDA device (build with --features cuda): {e}")
        }),
        other => anyhow::bail!("--device {other}: expected cpu or cuda"),
    }
}
