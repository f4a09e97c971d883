//! What an exported model carries about itself, inside the ONNX file (one `metadata_props` entry holding
//! JSON): everything an app needs to run it (labels, input shape, normalisation) and to judge it (the
//! architecture, the space, the latency its table predicted). A model file is then self-contained.

use std::path::Path;

use prost::Message;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::onnx::Dtype;
use crate::onnx::proto::{ModelProto, StringStringEntryProto};

/// The `metadata_props` key of the JSON.
pub const META_KEY: &str = "fbnet";
/// Version of the JSON's layout.
pub const META_FORMAT: u32 = 1;

/// The latency table an architecture was searched (or judged) with, and what it predicted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The table's file name.
    pub lut: String,
    /// The device the table was measured on (`model`, `cpu`).
    pub device: String,
    /// Threads of the table's measurements.
    pub threads: usize,
    /// Predicted latency in µs per dtype the table has.
    pub latency_us: Vec<(Dtype, f64)>,
}

/// The description an exported model carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMeta {
    pub format: u32,
    /// The architecture's name and its text (`k3_e6 | skip k5_e3 … | …`).
    pub name: String,
    pub arch: String,
    /// The space's name and hash: a table for the same hash can predict this model's latency.
    pub space: String,
    pub space_hash: String,
    /// Precision of the graph.
    pub dtype: Dtype,
    /// Class names by output index.
    pub labels: Vec<String>,
    /// Input shape `[1, channels, height, width]`.
    pub input_shape: Vec<usize>,
    /// Per-channel mean and standard deviation in pixel/255 units: the input is `(pixel/255 − mean) / std`,
    /// planar, after the largest central square of the image is resized to `height × width`.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// The training data (`fashion-mnist`, an image folder) and the top-1 accuracy the host measured on
    /// its test split with this very graph, when known.
    pub dataset: String,
    pub accuracy: Option<f64>,
    /// What the table the architecture was searched with predicts.
    pub prediction: Option<Prediction>,
}

impl ModelMeta {
    /// The `metadata_props` entries to write into the ONNX file.
    pub fn to_props(&self) -> Vec<(String, String)> {
        vec![(
            META_KEY.to_string(),
            serde_json::to_string(self).unwrap_or_default(),
        )]
    }

    /// Reads the description from a model's metadata; `origin` names the file in errors.
    pub fn from_model(model: &ModelProto, origin: &Path) -> Result<ModelMeta> {
        let entry = model
            .metadata_props
            .iter()
            .find(|e: &&StringStringEntryProto| e.key == META_KEY)
            .ok_or_else(|| {
                Error::bad_file(
                    origin,
                    "an ONNX model without fbnet metadata: export it with `fbnet export`",
                )
            })?;
        let meta: ModelMeta = serde_json::from_str(&entry.value)
            .map_err(|e| Error::bad_file(origin, format!("fbnet metadata is not readable: {e}")))?;
        if meta.format != META_FORMAT {
            return Err(Error::bad_file(
                origin,
                format!(
                    "fbnet metadata format {} is not supported (expected {META_FORMAT})",
                    meta.format
                ),
            ));
        }
        let l = &crate::space::LIMITS;
        let shape = &meta.input_shape;
        if shape.len() != 4
            || shape[0] != 1
            || !(1..=l.input_channels).contains(&shape[1])
            || !(1..=l.resolution).contains(&shape[2])
            || !(1..=l.resolution).contains(&shape[3])
            || meta.labels.len() > l.classes
            || meta.labels.iter().any(|s| s.len() > MAX_LABEL_BYTES)
        {
            return Err(Error::bad_file(
                origin,
                format!(
                    "fbnet metadata asks for input {shape:?} and {} labels: the input must be [1, C, H, W] with C at most {}, H and W at most {}, and at most {} labels of {MAX_LABEL_BYTES} bytes",
                    meta.labels.len(),
                    l.input_channels,
                    l.resolution,
                    l.classes
                ),
            ));
        }
        if meta.mean.len() != meta.input_shape[1]
            || meta.std.len() != meta.input_shape[1]
            || meta.std.iter().any(|s| !s.is_finite() || *s <= 0.0)
            || meta.mean.iter().any(|m| !m.is_finite())
            || meta.labels.is_empty()
        {
            return Err(Error::bad_file(
                origin,
                format!(
                    "fbnet metadata is inconsistent: input {:?}, {} means, {} stds, {} labels",
                    meta.input_shape,
                    meta.mean.len(),
                    meta.std.len(),
                    meta.labels.len()
                ),
            ));
        }
        Ok(meta)
    }
}

/// Longest class label accepted in a model's metadata.
pub const MAX_LABEL_BYTES: usize = 1024;

/// Decodes an ONNX file's bytes; `origin` names the file in errors.
pub fn decode_model(bytes: &[u8], origin: &Path) -> Result<ModelProto> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| Error::bad_file(origin, format!("not an ONNX model: {e}")))?;
    if model.graph.is_none() {
        return Err(Error::bad_file(
            origin,
            "not an ONNX model: it has no graph",
        ));
    }
    Ok(model)
}
