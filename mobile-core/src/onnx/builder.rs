//! A small ONNX graph builder that writes the same network in fp32 or in int8 QDQ form.
//!
//! The int8 form is what ONNX Runtime's quantisation tools call QDQ: every activation tensor is followed by
//! a QuantizeLinear/DequantizeLinear pair (uint8, asymmetric, range from calibration), weights are stored
//! as int8 with one symmetric scale per output channel and dequantised in the graph, biases as int32 with
//! scale `x_scale · w_scale`. ONNX Runtime's QDQ fusions (optimisation level All) turn each
//! DQ → Conv → [Relu] → Q group into one QLinearConv, Add into QLinearAdd, the pool into
//! QLinearGlobalAveragePool and the classifier into QGemm (whose logits stay float). Because both forms come from the same calls,
//! the activation names of an fp32 graph are exactly those the int8 graph needs ranges for.

use std::collections::HashMap;

use super::Dtype;
use super::proto::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor,
    ValueInfoProto, attribute_type, data_type,
};
use crate::error::{Error, Result};

/// Observed (min, max) of every activation tensor, by name: the result of a calibration run.
pub type Ranges = HashMap<String, (f32, f32)>;

/// The ONNX opset the graphs use.
pub const OPSET: i64 = 17;
/// The ONNX IR version that goes with opset 17.
pub const IR_VERSION: i64 = 8;

/// uint8 quantisation parameters of an activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: u8,
}

impl QParams {
    /// Asymmetric uint8 parameters covering `[lo, hi]` (always including 0, so zero is exact and a ReLU
    /// output gets zero point 0, which lets ONNX Runtime drop the ReLU).
    pub fn from_range(lo: f32, hi: f32) -> QParams {
        let lo = lo.min(0.0);
        let hi = hi.max(0.0);
        let scale = ((hi - lo) / 255.0).max(1e-8);
        let zero_point = (-lo / scale).round().clamp(0.0, 255.0) as u8;
        QParams { scale, zero_point }
    }
}

/// Builds one graph. Activation names are stable so calibration ranges can be matched to them.
pub struct GraphBuilder<'r> {
    dtype: Dtype,
    ranges: Option<&'r Ranges>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    /// Activation tensors in creation order (the outputs a calibration run needs).
    activations: Vec<String>,
    /// Quantisation parameters of each dequantised activation, by the name consumers use.
    qparams: HashMap<String, QParams>,
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        r#type: attribute_type::INT,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: ints.to_vec(),
        r#type: attribute_type::INTS,
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[usize], data_type: i32, raw_data: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type,
        name: name.into(),
        raw_data,
    }
}

fn value_info(name: &str, elem_type: i32, shape: Option<&[usize]>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type,
                shape: shape.map(|s| TensorShapeProto {
                    dim: s
                        .iter()
                        .map(|&d| Dimension {
                            dim_value: Some(d as i64),
                            dim_param: None,
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

/// Per-output-channel symmetric int8 quantisation of a weight whose first axis is the output channel.
fn quantize_per_channel(w: &[f32], channels: usize) -> (Vec<i8>, Vec<f32>) {
    let per = w.len() / channels;
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(channels);
    for c in 0..channels {
        let row = &w[c * per..(c + 1) * per];
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        scales.push(scale);
        q.extend(
            row.iter()
                .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

/// Weights handed in by a [`super::WeightSource`] must have the shape the graph needs.
fn check_len(layer: &str, what: &str, got: usize, expected: usize) -> Result<()> {
    if got != expected {
        return Err(Error::invalid(format!(
            "`{layer}`: {what} has {got} values, the graph needs {expected}"
        )));
    }
    Ok(())
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl<'r> GraphBuilder<'r> {
    /// A builder for `dtype`. An int8 graph needs the ranges of every activation (from a calibration run
    /// of the fp32 graph built by the same code).
    pub fn new(dtype: Dtype, ranges: Option<&'r Ranges>) -> Result<Self> {
        if dtype == Dtype::Int8 && ranges.is_none() {
            return Err(Error::invalid("an int8 graph needs calibration ranges"));
        }
        Ok(GraphBuilder {
            dtype,
            ranges,
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            activations: Vec::new(),
            qparams: HashMap::new(),
        })
    }

    fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: output.to_string(),
            op_type: op_type.into(),
            attribute,
            domain: String::new(),
        });
    }

    fn init(&mut self, t: TensorProto) -> String {
        let name = t.name.clone();
        self.initializers.push(t);
        name
    }

    /// Declares a float graph input of `shape` and returns the name its consumers read.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> Result<String> {
        self.inputs
            .push(value_info(name, data_type::FLOAT, Some(shape)));
        self.activation(name)
    }

    /// Registers `name` as an activation. In int8 form it is quantised with its calibrated range and the
    /// dequantised name is returned; in fp32 form the name itself.
    pub fn activation(&mut self, name: &str) -> Result<String> {
        self.activations.push(name.to_string());
        if self.dtype == Dtype::Fp32 {
            return Ok(name.to_string());
        }
        let &(lo, hi) = self.ranges.and_then(|r| r.get(name)).ok_or_else(|| {
            Error::invalid(format!("no calibration range for activation `{name}`"))
        })?;
        Ok(self.quantize(name, QParams::from_range(lo, hi)))
    }

    /// Inserts the Q/DQ pair for `name` with given parameters and returns the dequantised name.
    fn quantize(&mut self, name: &str, q: QParams) -> String {
        let scale = self.init(tensor(
            &format!("{name}/scale"),
            &[],
            data_type::FLOAT,
            f32_bytes(&[q.scale]),
        ));
        let zp = self.init(tensor(
            &format!("{name}/zp"),
            &[],
            data_type::UINT8,
            vec![q.zero_point],
        ));
        let quantized = format!("{name}/q");
        let dequantized = format!("{name}/dq");
        self.node("QuantizeLinear", &[name, &scale, &zp], &quantized, vec![]);
        self.node(
            "DequantizeLinear",
            &[&quantized, &scale, &zp],
            &dequantized,
            vec![],
        );
        self.qparams.insert(dequantized.clone(), q);
        dequantized
    }

    /// A weight initializer: plain float, or int8 per channel (axis 0) behind a DequantizeLinear.
    /// Returns the consumer name and, for int8, the per-channel scales.
    fn weight(
        &mut self,
        name: &str,
        dims: &[usize],
        w: &[f32],
        per_channel: bool,
    ) -> (String, Vec<f32>) {
        if self.dtype == Dtype::Fp32 {
            return (
                self.init(tensor(name, dims, data_type::FLOAT, f32_bytes(w))),
                vec![],
            );
        }
        let channels = if per_channel { dims[0] } else { 1 };
        let (q, scales) = quantize_per_channel(w, channels);
        let q_name = self.init(tensor(
            &format!("{name}/q"),
            dims,
            data_type::INT8,
            q.iter().map(|&v| v as u8).collect(),
        ));
        let scale_dims: &[usize] = if per_channel { &[channels] } else { &[] };
        let scale = self.init(tensor(
            &format!("{name}/scale"),
            scale_dims,
            data_type::FLOAT,
            f32_bytes(&scales),
        ));
        let zp = self.init(tensor(
            &format!("{name}/zp"),
            scale_dims,
            data_type::INT8,
            vec![0; scales.len()],
        ));
        let out = format!("{name}/dq");
        let attrs = if per_channel {
            vec![attr_int("axis", 0)]
        } else {
            vec![]
        };
        self.node("DequantizeLinear", &[&q_name, &scale, &zp], &out, attrs);
        (out, scales)
    }

    /// A bias: float, or int32 with scale `x_scale · w_scale[c]` behind a DequantizeLinear.
    fn bias(&mut self, name: &str, b: &[f32], x: &str, w_scales: &[f32]) -> Result<String> {
        if self.dtype == Dtype::Fp32 {
            return Ok(self.init(tensor(name, &[b.len()], data_type::FLOAT, f32_bytes(b))));
        }
        let xq = *self
            .qparams
            .get(x)
            .ok_or_else(|| Error::invalid(format!("`{x}` is not a quantised activation")))?;
        let scales: Vec<f32> = (0..b.len())
            .map(|c| xq.scale * w_scales[if w_scales.len() == 1 { 0 } else { c }])
            .collect();
        let q: Vec<i32> = b
            .iter()
            .zip(&scales)
            .map(|(v, s)| (v / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32)
            .collect();
        let q_name = self.init(tensor(
            &format!("{name}/q"),
            &[b.len()],
            data_type::INT32,
            i32_bytes(&q),
        ));
        let scale = self.init(tensor(
            &format!("{name}/scale"),
            &[b.len()],
            data_type::FLOAT,
            f32_bytes(&scales),
        ));
        let zp = self.init(tensor(
            &format!("{name}/zp"),
            &[b.len()],
            data_type::INT32,
            vec![0; 4 * b.len()],
        ));
        let out = format!("{name}/dq");
        self.node(
            "DequantizeLinear",
            &[&q_name, &scale, &zp],
            &out,
            vec![attr_int("axis", 0)],
        );
        Ok(out)
    }

    /// Convolution with folded BN (weight `[cout, cin/groups, k, k]`, bias `[cout]`), "same" padding,
    /// optionally followed by ReLU; the result is registered as activation `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        x: &str,
        out: &str,
        w: &[f32],
        b: &[f32],
        dims: [usize; 4],
        stride: usize,
        groups: usize,
        relu: bool,
    ) -> Result<String> {
        if stride == 0 || groups == 0 || dims[1] == 0 {
            return Err(Error::invalid(format!(
                "`{out}`: stride {stride}, groups {groups} and input channels per group {} must be positive",
                dims[1]
            )));
        }
        check_len(out, "weight", w.len(), dims.iter().product())?;
        check_len(out, "bias", b.len(), dims[0])?;
        let (w_name, w_scales) = self.weight(&format!("{out}/w"), &dims, w, true);
        let b_name = self.bias(&format!("{out}/b"), b, x, &w_scales)?;
        let k = dims[2];
        let p = (k / 2) as i64;
        let conv_out = if relu {
            format!("{out}/conv")
        } else {
            out.to_string()
        };
        self.node(
            "Conv",
            &[x, &w_name, &b_name],
            &conv_out,
            vec![
                attr_ints("kernel_shape", &[k as i64, k as i64]),
                attr_ints("strides", &[stride as i64, stride as i64]),
                attr_ints("pads", &[p, p, p, p]),
                attr_int("group", groups as i64),
            ],
        );
        if relu {
            self.node("Relu", &[&conv_out], out, vec![]);
        }
        self.activation(out)
    }

    /// Element-wise sum (the residual connection).
    pub fn add(&mut self, a: &str, b: &str, out: &str) -> Result<String> {
        self.node("Add", &[a, b], out, vec![]);
        self.activation(out)
    }

    /// Reorders channels (axis 1) by `indices` with one Gather: the channel shuffle. A reshape/transpose
    /// shuffle would keep ONNX Runtime's uint8 path from fusing around it. The output keeps the input's
    /// quantisation (a permutation cannot change the range).
    pub fn gather_channels(&mut self, x: &str, indices: &[usize], out: &str) -> Result<String> {
        let idx: Vec<u8> = indices
            .iter()
            .flat_map(|&i| (i as i64).to_le_bytes())
            .collect();
        let idx_name = self.init(tensor(
            &format!("{out}/indices"),
            &[indices.len()],
            data_type::INT64,
            idx,
        ));
        self.node("Gather", &[x, &idx_name], out, vec![attr_int("axis", 1)]);
        self.same_quantization(x, out)
    }

    /// Global average pooling to 1x1.
    pub fn global_avg_pool(&mut self, x: &str, out: &str) -> Result<String> {
        self.node("GlobalAveragePool", &[x], out, vec![]);
        self.activation(out)
    }

    /// Flattens `[n, c, 1, 1]` to `[n, c]`, keeping the quantisation.
    pub fn flatten(&mut self, x: &str, out: &str) -> Result<String> {
        self.node("Flatten", &[x], out, vec![attr_int("axis", 1)]);
        self.same_quantization(x, out)
    }

    /// Fully connected layer `y = x Wᵀ + b` with `W` of `[out, in]`: the classifier. Its output stays
    /// float in both forms (int8 weights and input, float logits; ONNX Runtime runs it as a QGemm with
    /// float output): quantising ten logits to uint8 saves nothing and makes classes tie, which made
    /// int8 top-1 depend on how ties were counted.
    pub fn gemm(
        &mut self,
        x: &str,
        out: &str,
        w: &[f32],
        b: &[f32],
        dims: [usize; 2],
    ) -> Result<String> {
        check_len(out, "weight", w.len(), dims[0] * dims[1])?;
        check_len(out, "bias", b.len(), dims[0])?;
        let (w_name, w_scales) = self.weight(&format!("{out}/w"), &dims, w, false);
        let b_name = self.bias(&format!("{out}/b"), b, x, &w_scales)?;
        self.node(
            "Gemm",
            &[x, &w_name, &b_name],
            out,
            vec![attr_int("transB", 1)],
        );
        self.activations.push(out.to_string());
        Ok(out.to_string())
    }

    /// A data-movement op's output: in int8 it is requantised with its input's parameters, so ONNX
    /// Runtime sees matching Q/DQ around it and moves the op into the integer domain.
    fn same_quantization(&mut self, x: &str, out: &str) -> Result<String> {
        if self.dtype == Dtype::Fp32 {
            self.activations.push(out.to_string());
            return Ok(out.to_string());
        }
        let q = *self
            .qparams
            .get(x)
            .ok_or_else(|| Error::invalid(format!("`{x}` is not a quantised activation")))?;
        Ok(self.quantize(out, q))
    }

    /// Activation names in creation order.
    pub fn activations(&self) -> &[String] {
        &self.activations
    }

    /// Finishes the model with `outputs` as float graph outputs (shape left to inference).
    pub fn finish(
        self,
        name: &str,
        outputs: &[String],
        metadata: &[(String, String)],
    ) -> ModelProto {
        let opset_import = vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }];
        ModelProto {
            ir_version: IR_VERSION,
            producer_name: "fbnet".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: name.into(),
                initializer: self.initializers,
                input: self.inputs,
                output: outputs
                    .iter()
                    .map(|o| value_info(o, data_type::FLOAT, None))
                    .collect(),
                ..Default::default()
            }),
            opset_import,
            metadata_props: metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qparams_cover_the_range_and_keep_zero_exact() {
        let q = QParams::from_range(0.0, 6.0);
        assert_eq!(q.zero_point, 0);
        assert!((q.scale - 6.0 / 255.0).abs() < 1e-7);
        let q = QParams::from_range(-1.0, 3.0);
        assert_eq!(q.zero_point, 64);
        // 0 is a grid point (the zero point), and the grid still covers the range after the zero point
        // was rounded: the lowest and highest codes reach −1 and 3 within half a step
        let lowest = (0.0 - q.zero_point as f32) * q.scale;
        let highest = (255.0 - q.zero_point as f32) * q.scale;
        assert!(
            lowest <= -1.0 + q.scale / 2.0 && highest >= 3.0 - q.scale / 2.0,
            "{q:?}"
        );
        // -1 maps to 0, 3 maps to 255 (within rounding)
        assert_eq!(((-1.0 / q.scale).round() as i32 + q.zero_point as i32), 0);
        assert_eq!(((3.0 / q.scale).round() as i32 + q.zero_point as i32), 255);
    }

    #[test]
    fn per_channel_weights_use_their_own_scale() {
        let w = [1.0, -0.5, 0.25, 100.0, 50.0, -25.0];
        let (q, s) = quantize_per_channel(&w, 2);
        assert_eq!(q[0], 127);
        assert_eq!(q[3], 127);
        assert!((s[0] - 1.0 / 127.0).abs() < 1e-9);
        assert!((s[1] - 100.0 / 127.0).abs() < 1e-6);
        // each value reconstructs within half a step of its own channel's scale
        for (i, v) in w.iter().enumerate() {
            let c = i / 3;
            assert!((q[i] as f32 * s[c] - v).abs() <= s[c] / 2.0 + 1e-6);
        }
    }

    #[test]
    fn weights_of_the_wrong_size_are_refused() {
        let mut b = GraphBuilder::new(Dtype::Fp32, None).unwrap();
        let x = b.input("x", &[1, 4, 8, 8]).unwrap();
        let err = b
            .conv(&x, "c", &[0.0; 10], &[0.0; 8], [8, 4, 1, 1], 1, 1, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`c`: weight has 10 values, the graph needs 32"),
            "{err}"
        );
        let err = b
            .gemm(&x, "fc", &[0.0; 12], &[0.0; 2], [3, 4])
            .unwrap_err()
            .to_string();
        assert!(err.contains("bias has 2 values"), "{err}");
        let err = b
            .conv(&x, "dw", &[0.0; 36], &[0.0; 4], [4, 1, 3, 3], 0, 4, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`dw`: stride 0"), "{err}");
    }

    #[test]
    fn int8_needs_ranges_for_every_activation() {
        assert!(GraphBuilder::new(Dtype::Int8, None).is_err());
        let ranges = Ranges::new();
        let mut b = GraphBuilder::new(Dtype::Int8, Some(&ranges)).unwrap();
        let err = b.input("x", &[1, 3, 8, 8]).unwrap_err().to_string();
        assert!(err.contains("`x`"), "{err}");
    }
}
