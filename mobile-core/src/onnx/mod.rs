//! ONNX graphs of single ops and whole networks, fp32 or int8 QDQ. This is the one code path for both
//! timing (the profiler builds each op with seeded random weights) and deployment (export passes trained
//! weights), so what the latency table measured is what ships.

pub mod builder;
pub mod network;
pub mod proto;
pub mod weights;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

pub use builder::{GraphBuilder, QParams, Ranges};
pub use network::{NetworkGraph, arch_graph, op_graph};
pub use proto::ModelProto;
pub use weights::{RandomWeights, WeightSource};

/// Numeric precision of a graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    Fp32,
    Int8,
}

impl Dtype {
    pub const ALL: [Dtype; 2] = [Dtype::Fp32, Dtype::Int8];

    pub fn name(self) -> &'static str {
        match self {
            Dtype::Fp32 => "fp32",
            Dtype::Int8 => "int8",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "fp32" => Ok(Dtype::Fp32),
            "int8" => Ok(Dtype::Int8),
            _ => Err(Error::invalid(format!(
                "unknown dtype `{s}` (expected fp32 or int8)"
            ))),
        }
    }
}
