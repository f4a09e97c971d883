//! Attributing the time of whole-network runs to the network's ops, from ONNX Runtime's profiler output.
//!
//! ONNX Runtime's profiler (session option "enable profiling") writes a Chrome-trace JSON array: one
//! `model_run` event (category `Session`) per run, and one `<node>_kernel_time` event (category `Node`) per
//! node per run. Optimised nodes keep the name of the node they came from as a prefix (`l3.pw1/conv_token_5`,
//! `stem_nchwc`), so every kernel can be traced back to the layer that our graph builder named: `stem`,
//! `l{i}`, `head`, `classifier`. Kernels the optimiser inserted without such a prefix (the layout
//! transposes around a channel shuffle in the NHWC int8 graph, reorders between layouts) run for the op
//! that precedes them and are charged to it; those before the first op (the input's quantisation and
//! layout change) and the time between kernels belong to the network as a whole.

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    cat: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    ts: f64,
    #[serde(default)]
    dur: f64,
}

/// Per-run kernel time of each op of a network and of the network's edges, in µs.
#[derive(Clone, Debug, PartialEq)]
pub struct RunBreakdown {
    /// Wall time of the run as the profiler saw it (its own bookkeeping included).
    pub total: f64,
    /// Kernel time attributed to each op (index into the network's op list).
    pub ops: Vec<f64>,
    /// Kernels attributed to each op.
    pub kernels: Vec<usize>,
    /// Kernel time before the first op (the input's quantisation and layout change), and its kernels.
    pub edge: f64,
    pub edge_kernels: usize,
}

impl RunBreakdown {
    /// Time of all kernels of the run.
    pub fn kernel_time(&self) -> f64 {
        self.edge + self.ops.iter().sum::<f64>()
    }

    /// Number of kernels of the run.
    pub fn kernel_count(&self) -> usize {
        self.edge_kernels + self.kernels.iter().sum::<usize>()
    }
}

/// Index of the op that produced kernel `node` in a network of `n_ops` ops (stem, layers, head,
/// classifier), from the node-name prefix; `None` for kernels of the network's edges.
pub fn op_index(node: &str, n_ops: usize) -> Option<usize> {
    let prefix: String = node
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    match prefix.as_str() {
        "stem" => Some(0),
        "head" => Some(n_ops - 2),
        "classifier" => Some(n_ops - 1),
        p => {
            let i: usize = p.strip_prefix('l')?.parse().ok()?;
            (i + 1 < n_ops - 2).then_some(i + 1)
        }
    }
}

/// Splits a profiler trace into runs (the `model_run` events, in order) and sums each run's kernels by op.
pub fn breakdown(trace: &str, n_ops: usize) -> Result<Vec<RunBreakdown>> {
    let events: Vec<Event> = serde_json::from_str(trace)
        .map_err(|e| Error::Runtime(format!("unreadable ONNX Runtime profile: {e}")))?;
    let mut runs: Vec<(f64, f64)> = events
        .iter()
        .filter(|e| e.cat == "Session" && e.name == "model_run")
        .map(|e| (e.ts, e.ts + e.dur))
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<RunBreakdown> = runs
        .iter()
        .map(|(s, e)| RunBreakdown {
            total: e - s,
            ops: vec![0.0; n_ops],
            kernels: vec![0; n_ops],
            edge: 0.0,
            edge_kernels: 0,
        })
        .collect();
    let mut kernels: Vec<(&Event, &str)> = events
        .iter()
        .filter(|e| e.cat == "Node")
        .filter_map(|e| Some((e, e.name.strip_suffix("_kernel_time")?)))
        .collect();
    kernels.sort_by(|a, b| a.0.ts.total_cmp(&b.0.ts));
    let mut current: Option<(usize, usize)> = None; // (run, op) of the last named kernel
    for (e, node) in kernels {
        // the run whose window contains the kernel's start
        let pos = runs.partition_point(|r| r.0 <= e.ts);
        if pos == 0 || e.ts > runs[pos - 1].1 {
            continue;
        }
        let run = pos - 1;
        let op = match op_index(node, n_ops) {
            Some(i) => Some(i),
            None => current.filter(|(r, _)| *r == run).map(|(_, i)| i),
        };
        match op {
            Some(i) => {
                current = Some((run, i));
                out[run].ops[i] += e.dur;
                out[run].kernels[i] += 1;
            }
            None => {
                out[run].edge += e.dur;
                out[run].edge_kernels += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_are_traced_back_to_their_layers() {
        let n = 25; // stem + 22 layers + head + classifier
        assert_eq!(op_index("stem_nchwc", n), Some(0));
        assert_eq!(op_index("stem/conv_token_2", n), Some(0));
        assert_eq!(op_index("l0.add", n), Some(1));
        assert_eq!(op_index("l21.pw2_token_241", n), Some(22));
        assert_eq!(op_index("head/conv_token_245", n), Some(23));
        assert_eq!(op_index("classifier.fc/dq", n), Some(24));
        assert_eq!(op_index("input/q", n), None);
        assert_eq!(op_index("ReorderOutput", n), None);
        assert_eq!(op_index("Transpose_token_277", n), None);
        assert_eq!(op_index("l22.dw", n), None);
    }

    #[test]
    fn runs_are_split_and_summed_by_op() {
        // two runs; the second starts with an edge kernel (charged to the network) and has an unnamed
        // kernel after the stem (charged to the stem); a stray node outside any run is ignored
        let trace = r#"[
          {"cat":"Session","name":"model_run","ts":100,"dur":50},
          {"cat":"Node","name":"stem_kernel_time","ts":101,"dur":10},
          {"cat":"Node","name":"l0.dw_kernel_time","ts":112,"dur":5},
          {"cat":"Node","name":"l0.pw2_fence_before","ts":117,"dur":1},
          {"cat":"Node","name":"l0.pw2_kernel_time","ts":118,"dur":7},
          {"cat":"Session","name":"model_run","ts":200,"dur":60},
          {"cat":"Node","name":"Transpose_kernel_time","ts":201,"dur":4},
          {"cat":"Node","name":"stem/conv_kernel_time","ts":206,"dur":11},
          {"cat":"Node","name":"Transpose_token_9_kernel_time","ts":218,"dur":3},
          {"cat":"Node","name":"head_kernel_time","ts":230,"dur":20},
          {"cat":"Node","name":"classifier.fc_kernel_time","ts":300,"dur":9}
        ]"#;
        let runs = breakdown(trace, 4).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].ops, vec![10.0, 12.0, 0.0, 0.0]);
        assert_eq!(runs[0].kernels, vec![1, 2, 0, 0]);
        assert_eq!((runs[0].edge, runs[0].kernel_count()), (0.0, 3));
        assert_eq!(runs[1].ops, vec![14.0, 0.0, 20.0, 0.0]);
        assert_eq!(runs[1].kernels, vec![2, 0, 1, 0]);
        assert_eq!((runs[1].edge, runs[1].edge_kernels), (4.0, 1));
        assert_eq!(runs[1].kernel_time(), 38.0);
        assert!(breakdown("{not json", 4).is_err());
    }
}
