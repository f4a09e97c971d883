//! Latency lookup tables: the JSON file a profile produces and the search consumes.
//!
//! A table holds, for one device and one runtime configuration, the measured latency of every op of one
//! search space at each dtype. It embeds the space and its hash, so a table is never silently used with
//! another space, and it is written entry by entry, so an interrupted profile keeps what it measured.
//!
//! This module owns every type the file holds (the profiler's raw records and fit included), so the
//! format users keep for years changes only here, never as a side effect of a profiler refactor.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::device::DeviceInfo;
use crate::error::{Error, Result};
use crate::measure::{Stats, TimingConfig};
use crate::onnx::Dtype;
use crate::ops::Op;
use crate::runtime::SessionConfig;
use crate::space::Space;

/// Version of the table format written. Schema 2 added the speed reference and each covering
/// network's reference time; readers accept [`READABLE_SCHEMAS`] and refuse any other.
pub const LUT_SCHEMA: u32 = 2;

/// Schemas this release reads: 1 (no speed reference: its drift cannot be measured) and 2.
pub const READABLE_SCHEMAS: [u32; 2] = [1, 2];

/// The `op` name of a table's per-network overhead entries.
pub const NETWORK_OVERHEAD: &str = "network";

/// The runtime configuration the entries were measured with.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RuntimeDesc {
    /// `onnxruntime`.
    pub name: String,
    pub version: String,
    pub provider: String,
    pub optimization: String,
    pub execution: String,
    pub session: SessionConfig,
}

impl RuntimeDesc {
    /// ONNX Runtime on the CPU with optimisation level All and sequential execution.
    pub fn onnxruntime(version: &str, session: SessionConfig) -> Self {
        RuntimeDesc {
            name: "onnxruntime".into(),
            version: version.into(),
            provider: "cpu".into(),
            optimization: "all".into(),
            execution: "sequential".into(),
            session,
        }
    }
}

/// How op latencies are measured (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    #[default]
    InNetwork,
    Isolated,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::InNetwork => "in-network",
            Method::Isolated => "isolated",
        })
    }
}

impl FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "in-network" => Ok(Method::InNetwork),
            "isolated" => Ok(Method::Isolated),
            _ => Err(Error::invalid(format!(
                "unknown profiling method `{s}` (expected in-network or isolated)"
            ))),
        }
    }
}

/// Profiled kernel time of one op (or of the network's edges) in one network.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OpRecord {
    /// The op's key, or [`NETWORK_OVERHEAD`] for the edges.
    pub op: String,
    /// Kernels per run.
    pub kernels: usize,
    /// Profiled kernel time per run, µs.
    pub samples: Vec<f64>,
    /// The samples stayed too spread after a second measurement.
    #[serde(default)]
    pub noisy: bool,
}

/// The raw measurement of one covering network at one dtype.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NetworkRecord {
    pub dtype: Dtype,
    pub network: String,
    /// Wall time of a run without the profiler (trimmed mean), µs.
    pub wall: f64,
    /// Profiled time of all kernels of a run (trimmed mean), µs, and their number.
    pub kernel_time: f64,
    pub kernels: usize,
    pub edge: OpRecord,
    pub ops: Vec<OpRecord>,
    /// The speed reference's time around this network's measurement (the mean of its timings just
    /// before and just after), µs; 0 in records of schema 1, which are used as measured.
    #[serde(default)]
    pub reference_us: f64,
}

/// One timing of the speed reference.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReferenceTiming {
    pub dtype: Dtype,
    /// When in the profile: `start`, `after cover-3`, `end`.
    pub at: String,
    /// Trimmed mean of the reference's runs, µs.
    pub us: f64,
}

/// The speed reference of a table: one fixed network of the table's space, timed at the start of a
/// profile, after every covering network and at the end. The median of its timings is the device's
/// speed the table stands for; timing it again later says how much faster or slower the device runs
/// now (see [`crate::reference`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SpeedReference {
    /// The network, in the compact text form of the table's space.
    pub arch: String,
    /// Seed of its random weights and input.
    pub seed: u64,
    pub timings: Vec<ReferenceTiming>,
}

impl SpeedReference {
    /// The reference's time the table stands for at `dtype`: the median of its timings, µs.
    pub fn baseline(&self, dtype: Dtype) -> Option<f64> {
        crate::measure::median(
            self.timings
                .iter()
                .filter(|t| t.dtype == dtype)
                .map(|t| t.us)
                .collect(),
        )
    }
}

/// The fitted per-kernel correction of one dtype: `wall = kernel time + β·kernels`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Calibration {
    pub dtype: Dtype,
    /// β, µs per kernel (negative when the profiler's bookkeeping outweighs the executor's gaps).
    pub per_kernel_us: f64,
    pub networks: usize,
    /// Largest |model − wall| / wall over the networks.
    pub max_residual: f64,
}

/// The measured latency of one op at one dtype.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// The op's key ([`Op::key`]).
    pub op: String,
    pub dtype: Dtype,
    /// Distribution of single-run latencies, µs.
    #[serde(flatten)]
    pub stats: Stats,
    /// The spread stayed above the limit after a second measurement.
    #[serde(default)]
    pub noisy: bool,
}

/// A latency lookup table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lut {
    pub schema: u32,
    pub device: DeviceInfo,
    pub runtime: RuntimeDesc,
    pub space_hash: String,
    pub space: Space,
    /// UTC time of creation, ISO 8601.
    pub created: String,
    pub dtypes: Vec<Dtype>,
    pub timing: TimingConfig,
    /// How the entries were measured.
    pub method: Method,
    pub entries: Vec<Entry>,
    /// Time of a network run that belongs to no op (input quantisation, layout changes at the edges,
    /// time between kernels), one entry per dtype; measured by the in-network method, empty otherwise.
    #[serde(default)]
    pub overhead: Vec<Entry>,
    /// The in-network method's fit of kernel times to wall times, per dtype.
    #[serde(default)]
    pub calibration: Vec<Calibration>,
    /// Raw records of covering networks measured for a dtype whose fit is still to come (a partial
    /// table); empty in a finished table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<NetworkRecord>,
    /// The speed reference (schema 2); `None` in tables of schema 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<SpeedReference>,
}

/// UTC now as `YYYY-MM-DDTHH:MM:SSZ` (no date crate needed for one timestamp).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

impl Lut {
    /// An empty table for `space`.
    pub fn new(
        space: Space,
        dtypes: Vec<Dtype>,
        device: DeviceInfo,
        runtime: RuntimeDesc,
        timing: TimingConfig,
        method: Method,
    ) -> Lut {
        Lut {
            schema: LUT_SCHEMA,
            device,
            runtime,
            space_hash: space.hash(),
            space,
            created: utc_now(),
            dtypes,
            timing,
            method,
            entries: Vec::new(),
            overhead: Vec::new(),
            calibration: Vec::new(),
            pending: Vec::new(),
            reference: None,
        }
    }

    /// Parses and checks a table; `origin` names the file in errors. A partial table (missing entries) is
    /// accepted here, since a profile resumes from one; [`Lut::require_complete`] checks coverage.
    pub fn from_json(text: &str, origin: &Path) -> Result<Lut> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::bad_file(origin, format!("not JSON: {e}")))?;
        match value.get("schema").and_then(|s| s.as_u64()) {
            Some(v) if READABLE_SCHEMAS.iter().any(|&r| u64::from(r) == v) => {}
            Some(v) => {
                return Err(Error::bad_file(
                    origin,
                    format!(
                        "latency table schema {v} is not supported (this fbnet reads schemas {READABLE_SCHEMAS:?})"
                    ),
                ));
            }
            None => {
                return Err(Error::bad_file(
                    origin,
                    "no `schema` field: not an fbnet latency table",
                ));
            }
        }
        let lut: Lut = serde_json::from_value(value)
            .map_err(|e| Error::bad_file(origin, format!("malformed latency table: {e}")))?;
        lut.check(origin)?;
        Ok(lut)
    }

    /// Reads a table from `path`.
    pub fn load(path: &Path) -> Result<Lut> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Lut::from_json(&text, path)
    }

    fn check(&self, origin: &Path) -> Result<()> {
        let bad = |m: String| Err(Error::bad_file(origin, m));
        self.space
            .validate()
            .map_err(|e| Error::bad_file(origin, e.to_string()))?;
        let hash = self.space.hash();
        if hash != self.space_hash {
            return bad(format!(
                "space_hash {} does not match the embedded space (hash {hash}): the table was edited or mixes two spaces",
                self.space_hash
            ));
        }
        let known: BTreeMap<String, Op> = self
            .space
            .unique_ops()
            .into_iter()
            .map(|o| (o.key(), o))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for e in &self.entries {
            if !known.contains_key(&e.op) {
                return bad(format!(
                    "entry `{}` is not an op of space `{}`",
                    e.op, self.space.name
                ));
            }
            if !self.dtypes.contains(&e.dtype) {
                return bad(format!(
                    "entry `{}` has dtype {} which the table does not declare",
                    e.op, e.dtype
                ));
            }
            check_stats(&format!("entry `{}` ({})", e.op, e.dtype), &e.stats, false)
                .or_else(bad)?;
            if !seen.insert((e.op.clone(), e.dtype)) {
                return bad(format!("entry `{}` ({}) appears twice", e.op, e.dtype));
            }
        }
        for e in &self.overhead {
            if e.op != NETWORK_OVERHEAD || !self.dtypes.contains(&e.dtype) {
                return bad(format!(
                    "overhead entry `{}` ({}) is not a network overhead of a declared dtype",
                    e.op, e.dtype
                ));
            }
            check_stats(&format!("network overhead ({})", e.dtype), &e.stats, true).or_else(bad)?;
        }
        self.check_settings().or_else(bad)?;
        Ok(())
    }

    /// The table's settings and its fit: thread count, timing preset, calibration and the raw records
    /// of a partial table, each within bounds, so that a corrupt value is named here and not met later as
    /// a NaN in a search.
    fn check_settings(&self) -> std::result::Result<(), String> {
        let threads = self.runtime.session.threads;
        if threads == 0 || threads > MAX_THREADS {
            return Err(format!(
                "runtime.session.threads = {threads}: must be 1 to {MAX_THREADS}"
            ));
        }
        let t = &self.timing;
        let ms_ok = |v: f64| v.is_finite() && (0.0..=3.6e6).contains(&v);
        if t.min_runs == 0
            || t.min_runs > t.max_runs
            || t.max_runs > MAX_SAMPLES
            || t.warmup_runs > MAX_SAMPLES
            || !ms_ok(t.warmup_ms)
            || !ms_ok(t.min_ms)
            || !(t.max_spread.is_finite() && t.max_spread > 0.0)
        {
            return Err(format!("timing settings out of range: {t:?}"));
        }
        let mut dtypes = std::collections::BTreeSet::new();
        for c in &self.calibration {
            if !self.dtypes.contains(&c.dtype) || !dtypes.insert(c.dtype) {
                return Err(format!(
                    "calibration for {} is repeated or of a dtype the table does not declare",
                    c.dtype
                ));
            }
            if !(c.per_kernel_us.is_finite() && c.per_kernel_us.abs() <= MAX_LATENCY_US)
                || c.networks == 0
                || !(c.max_residual.is_finite() && c.max_residual >= 0.0)
            {
                return Err(format!(
                    "calibration for {} is out of range: {} µs per kernel over {} networks, residual {}",
                    c.dtype, c.per_kernel_us, c.networks, c.max_residual
                ));
            }
        }
        for r in &self.pending {
            let value_ok = |v: f64| v.is_finite() && (0.0..=MAX_LATENCY_US).contains(&v);
            let samples_ok =
                r.ops.iter().chain(std::iter::once(&r.edge)).all(|o| {
                    o.samples.len() <= MAX_SAMPLES && o.samples.iter().all(|&v| value_ok(v))
                });
            let fine = self.dtypes.contains(&r.dtype)
                && value_ok(r.reference_us)
                && value_ok(r.wall)
                && r.wall > 0.0
                && value_ok(r.kernel_time)
                && samples_ok;
            if !fine {
                return Err(format!(
                    "pending record of network `{}` ({}) has a dtype the table does not declare or a time out of range",
                    r.network, r.dtype
                ));
            }
        }
        if let Some(reference) = &self.reference {
            Arch::parse("reference", &self.space, &reference.arch)
                .map_err(|e| format!("speed reference: {e}"))?;
            if reference.timings.len() > MAX_SAMPLES {
                return Err(format!(
                    "speed reference: {} timings (at most {MAX_SAMPLES})",
                    reference.timings.len()
                ));
            }
            for t in &reference.timings {
                let fine = self.dtypes.contains(&t.dtype)
                    && t.us.is_finite()
                    && t.us > 0.0
                    && t.us <= MAX_LATENCY_US;
                if !fine {
                    return Err(format!(
                        "speed reference timing `{}` ({}) = {} µs: a dtype the table does not declare or a time out of range",
                        t.at, t.dtype, t.us
                    ));
                }
            }
        }
        Ok(())
    }

    /// The speed reference's time the table stands for at `dtype`, if it has one timed there.
    pub fn reference_time(&self, dtype: Dtype) -> Option<f64> {
        self.reference.as_ref()?.baseline(dtype)
    }

    /// The per-network overhead at `dtype`, if measured.
    pub fn overhead(&self, dtype: Dtype) -> Option<&Entry> {
        self.overhead.iter().find(|e| e.dtype == dtype)
    }

    /// JSON text of the table.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Writes the table atomically and durably (see [`crate::files`]), so neither a crash nor a power
    /// loss leaves half a table.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::files::write_atomic(path, self.to_json().as_bytes())
    }

    /// The entry of `op` at `dtype`.
    pub fn get(&self, op: &Op, dtype: Dtype) -> Option<&Entry> {
        let key = op.key();
        self.entries
            .iter()
            .find(|e| e.dtype == dtype && e.op == key)
    }

    /// Ops of the space with no entry at `dtype`.
    pub fn missing(&self, dtype: Dtype) -> Vec<Op> {
        self.space
            .unique_ops()
            .into_iter()
            .filter(|op| self.get(op, dtype).is_none())
            .collect()
    }

    /// Fails unless every op of the space has an entry at `dtype`.
    pub fn require_complete(&self, dtype: Dtype) -> Result<()> {
        let missing = self.missing(dtype);
        let overhead_missing = self.method == Method::InNetwork && self.overhead(dtype).is_none();
        if missing.is_empty() && !overhead_missing {
            return Ok(());
        }
        let names: Vec<String> = missing.iter().take(5).map(Op::key).collect();
        Err(Error::invalid(format!(
            "latency table for space `{}` lacks {} {dtype} ops (first: {}); finish it with `fbnet profile --resume`",
            self.space.name,
            missing.len(),
            names.join(", ")
        )))
    }

    /// Fails unless the table was measured for `space`.
    pub fn check_space(&self, space: &Space) -> Result<()> {
        let hash = space.hash();
        if hash != self.space_hash {
            return Err(Error::invalid(format!(
                "latency table is for space `{}` (hash {}), not for space `{}` (hash {hash})",
                self.space.name, self.space_hash, space.name
            )));
        }
        Ok(())
    }

    /// Latency of `op` at `dtype` in µs (its trimmed mean, see [`Stats::trimmed_mean`]); `skip` costs
    /// nothing.
    pub fn latency(&self, op: &Op, dtype: Dtype) -> Result<f64> {
        if op.is_identity() {
            return Ok(0.0);
        }
        self.get(op, dtype)
            .map(|e| e.stats.trimmed_mean)
            .ok_or_else(|| Error::invalid(format!("latency table has no {dtype} entry for `{op}`")))
    }

    /// Predicted latency of a whole architecture in µs: the sum of its ops' entries (paper eq. 3) plus
    /// the per-network overhead where the table has one.
    pub fn predict(&self, arch: &Arch, dtype: Dtype) -> Result<f64> {
        arch.check_space(&self.space_hash, "the latency table")?;
        let ops: f64 = arch
            .ops()
            .iter()
            .map(|op| self.latency(op, dtype))
            .sum::<Result<f64>>()?;
        Ok(ops + self.overhead(dtype).map_or(0.0, |e| e.stats.trimmed_mean))
    }
}

/// Largest plausible single latency, µs (100 s): anything above is a unit error or a corrupt file.
const MAX_LATENCY_US: f64 = 1e8;

/// Checks one latency distribution: every figure finite, positive (zero allowed for the network
/// overhead) and below [`MAX_LATENCY_US`], the percentiles in order, the trimmed mean (the figure every
/// prediction sums) inside the samples' bulk, and a sample count.
fn check_stats(what: &str, s: &Stats, zero_ok: bool) -> std::result::Result<(), String> {
    for (name, v) in [
        ("trimmed_mean", s.trimmed_mean),
        ("p10", s.p10),
        ("p50", s.p50),
        ("p90", s.p90),
        ("mean", s.mean),
    ] {
        let low_ok = if zero_ok { v >= 0.0 } else { v > 0.0 };
        if !(v.is_finite() && low_ok && v <= MAX_LATENCY_US) {
            return Err(format!(
                "{what} has {name} = {v} µs: latencies must be finite, {} and at most {MAX_LATENCY_US} µs",
                if zero_ok { "not negative" } else { "positive" }
            ));
        }
    }
    if !(s.p10 <= s.p50 && s.p50 <= s.p90) {
        return Err(format!(
            "{what} has percentiles out of order: p10 {} p50 {} p90 {}",
            s.p10, s.p50, s.p90
        ));
    }
    // The trimmed mean averages the samples between about the 10th and 90th percentiles; with few
    // samples its ends can step a little past them, never by a factor.
    if s.trimmed_mean < 0.5 * s.p10 || s.trimmed_mean > 2.0 * s.p90 {
        return Err(format!(
            "{what} has trimmed_mean {} outside its percentiles p10 {} … p90 {}",
            s.trimmed_mean, s.p10, s.p90
        ));
    }
    if !(s.std.is_finite() && s.std >= 0.0) || s.count == 0 || s.count > MAX_SAMPLES {
        return Err(format!(
            "{what} has no valid sample count (1 to {MAX_SAMPLES}) or spread: count {}, std {}",
            s.count, s.std
        ));
    }
    Ok(())
}

/// Most timed runs a table records for one figure (the standard timing stops at 2,000).
const MAX_SAMPLES: usize = 10_000_000;

/// Most intra-op threads a table can have been measured with.
pub const MAX_THREADS: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso8601() {
        let t = utc_now();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
