//! A description of the device a table was measured on. On a phone the app fills it from the platform's
//! APIs; on a Linux host it is read from /proc and /etc.

use serde::{Deserialize, Serialize};

/// Device metadata stored in every latency table.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DeviceInfo {
    /// Phone or machine model (`Pixel 8`, or the DMI product name of a host).
    pub model: String,
    /// System on chip, where known (`Tensor G3`).
    #[serde(default)]
    pub soc: String,
    /// CPU model name.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// Operating system and version.
    pub os: String,
    /// Instruction set / ABI (`arm64-v8a`, `x86_64`).
    pub abi: String,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl DeviceInfo {
    /// The machine this process runs on (best effort: missing facts are left as "unknown").
    pub fn this_host() -> DeviceInfo {
        let cpu = read("/proc/cpuinfo")
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let os_name = read("/etc/os-release")
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        let kernel = read("/proc/sys/kernel/osrelease").unwrap_or_default();
        DeviceInfo {
            model: read("/sys/class/dmi/id/product_name").unwrap_or_else(|| "unknown".into()),
            soc: String::new(),
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: format!("{os_name} {kernel}").trim().to_string(),
            abi: std::env::consts::ARCH.to_string(),
        }
    }
}
