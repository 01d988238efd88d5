//! Rewrites of ONNX graph nodes into the same arithmetic in operators tract runs fast, applied
//! to the detector's graph before tract loads it (`examples/op_profile.rs` shows the effect),
//! and the initializer helpers the detector's person-only cut uses.
//!
//! - [`rewrite_linear_upsampling`]: `Resize` nodes that double height and width with linear
//!   interpolation and `asymmetric` coordinates. tract's `Resize` resamples one axis at a time,
//!   one output element at a time along the last axis: CenterNet's three upsamplings took
//!   16.5 ms of its 130 ms on one thread. With `asymmetric` coordinates, output `2i` along an
//!   axis is input `i` and output `2i + 1` is `(x[i] + x[i + 1]) / 2`, the last input repeated
//!   past the edge: the input shifted by one along the axis (its last row kept), added to the
//!   input, halved, and interleaved with the input by stacking on a new axis of two.
//!   The service now runs these upsamplings on our own operator (`kernels::ops::Upsample2x`,
//!   0.25 ms for the three on two threads against about 3 ms for this rewrite, whose concats
//!   and slices run on one thread); the rewrite stays for the detector on tract's kernels only
//!   (`Kernels::Tract`, the reference that tests and `op_profile ... tract` compare with).
//!
//! Tried and dropped: a stride-2 depthwise convolution as the stride-1 one followed by a slice of
//! every other row and column (tract's stride-1 depthwise kernel is several times faster);
//! tract's optimiser folds the slice back into the convolution's stride.

use anyhow::Context;
use tract_onnx::pb::{
    AttributeProto, GraphProto, NodeProto, TensorProto, attribute_proto, tensor_proto,
};

/// Rewrites every `Resize` of `graph` that doubles the last two axes of an NCHW tensor with
/// linear interpolation and `asymmetric` coordinates; returns how many it rewrote. Other
/// `Resize` nodes are left as they are.
pub fn rewrite_linear_upsampling(graph: &mut GraphProto) -> anyhow::Result<usize> {
    let mut rewritten = 0;
    let mut nodes = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        if !is_doubling_linear_resize(&node, &graph.initializer)? {
            nodes.push(node);
            continue;
        }
        let prefix = format!("{}/as_slices", node.name);
        let input = node.input[0].clone();
        let output = node
            .output
            .first()
            .context("a Resize without output")?
            .clone();
        let mut edit = Edit {
            prefix: &prefix,
            nodes: &mut nodes,
            initializers: &mut graph.initializer,
        };
        // [N, C, H, W] -> [N, C, H, W, 2] -> [N, C, H, 2, W, 2] -> [N, C, 2H, 2W].
        let columns = edit.interleave_halfway(&input, 3, "w");
        let both = edit.interleave_halfway(&columns, 2, "h");
        let shape = edit.node("Shape", &[&input], "shape", vec![]);
        let doubled = edit.constant_i64("doubling", &[1, 1, 2, 2]);
        let target = edit.node("Mul", &[&shape, &doubled], "target_shape", vec![]);
        edit.nodes.push(NodeProto {
            name: format!("{prefix}/reshape"),
            op_type: "Reshape".into(),
            input: vec![both, target],
            output: vec![output],
            ..Default::default()
        });
        rewritten += 1;
    }
    graph.node = nodes;
    Ok(rewritten)
}

/// A `Resize` with `mode = linear`, `coordinate_transformation_mode = asymmetric` and constant
/// scales `[1, 1, 2, 2]` (no `sizes`).
fn is_doubling_linear_resize(
    node: &NodeProto,
    initializers: &[TensorProto],
) -> anyhow::Result<bool> {
    if node.op_type != "Resize" {
        return Ok(false);
    }
    let text = |name: &str| {
        node.attribute
            .iter()
            .find(|a| a.name == name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    };
    // `nearest` is the ONNX default mode, `half_pixel` the default transformation.
    if text("mode").as_deref() != Some("linear")
        || text("coordinate_transformation_mode").as_deref() != Some("asymmetric")
        || node.input.get(3).is_some_and(|sizes| !sizes.is_empty())
    {
        return Ok(false);
    }
    let Some(scales) = node
        .input
        .get(2)
        .and_then(|name| initializers.iter().find(|i| &i.name == name))
    else {
        return Ok(false);
    };
    Ok(f32_values(scales)? == [1.0, 1.0, 2.0, 2.0])
}

/// Keeps `len` float32 values of an initializer from `start` (its dimensions are the caller's
/// to set).
pub(super) fn keep_f32_values(
    tensor: &mut TensorProto,
    start: usize,
    len: usize,
) -> anyhow::Result<()> {
    let values = f32_values(tensor)?;
    let kept = values
        .get(start..start + len)
        .with_context(|| format!("{} holds {} values", tensor.name, values.len()))?;
    tensor.float_data = kept.to_vec();
    tensor.raw_data.clear();
    Ok(())
}

/// An initializer's float32 values, wherever the file stores them (`raw_data`, little-endian,
/// or `float_data`).
fn f32_values(tensor: &TensorProto) -> anyhow::Result<Vec<f32>> {
    anyhow::ensure!(
        tensor.data_type == tensor_proto::DataType::Float as i32,
        "{} is not float32",
        tensor.name
    );
    if tensor.raw_data.is_empty() {
        return Ok(tensor.float_data.clone());
    }
    Ok(tensor
        .raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Appends nodes and constants whose names all start with `prefix`.
struct Edit<'a> {
    prefix: &'a str,
    nodes: &'a mut Vec<NodeProto>,
    initializers: &'a mut Vec<TensorProto>,
}

impl Edit<'_> {
    fn name(&self, suffix: &str) -> String {
        format!("{}/{suffix}", self.prefix)
    }

    /// Appends a node with one output, named after `suffix`; returns the output's name.
    fn node(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        suffix: &str,
        attribute: Vec<AttributeProto>,
    ) -> String {
        let output = self.name(suffix);
        self.nodes.push(NodeProto {
            name: output.clone(),
            op_type: op_type.into(),
            input: inputs.iter().map(|i| i.to_string()).collect(),
            output: vec![output.clone()],
            attribute,
            ..Default::default()
        });
        output
    }

    fn constant_i64(&mut self, suffix: &str, values: &[i64]) -> String {
        let name = self.name(suffix);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: vec![values.len() as i64],
            data_type: tensor_proto::DataType::Int64 as i32,
            int64_data: values.to_vec(),
            ..Default::default()
        });
        name
    }

    fn constant_f32_scalar(&mut self, suffix: &str, value: f32) -> String {
        let name = self.name(suffix);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: vec![],
            data_type: tensor_proto::DataType::Float as i32,
            float_data: vec![value],
            ..Default::default()
        });
        name
    }

    /// Along `axis` of `input`, each element followed by the mean of it and the next one (the
    /// last element's "next" being itself), on a new axis of two after `axis`.
    fn interleave_halfway(&mut self, input: &str, axis: i64, tag: &str) -> String {
        let name = |what: &str| format!("{tag}_{what}");
        let axes = self.constant_i64(&name("axes"), &[axis]);
        let one = self.constant_i64(&name("one"), &[1]);
        let last = self.constant_i64(&name("last"), &[-1]);
        let end = self.constant_i64(&name("end"), &[i64::MAX]);
        let half = self.constant_f32_scalar(&name("half"), 0.5);
        let new_axis = self.constant_i64(&name("new_axis"), &[axis + 1]);
        let after = self.node("Slice", &[input, &one, &end, &axes], &name("after"), vec![]);
        let edge = self.node("Slice", &[input, &last, &end, &axes], &name("edge"), vec![]);
        let next = self.node(
            "Concat",
            &[&after, &edge],
            &name("next"),
            vec![int_attribute("axis", axis)],
        );
        let sum = self.node("Add", &[input, &next], &name("sum"), vec![]);
        let mean = self.node("Mul", &[&sum, &half], &name("mean"), vec![]);
        let kept = self.node("Unsqueeze", &[input, &new_axis], &name("kept"), vec![]);
        let between = self.node("Unsqueeze", &[&mean, &new_axis], &name("between"), vec![]);
        self.node(
            "Concat",
            &[&kept, &between],
            &name("interleaved"),
            vec![int_attribute("axis", axis + 1)],
        )
    }
}

fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{
        ModelProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
        tensor_shape_proto, type_proto,
    };
    use tract_onnx::prelude::*;

    use crate::model::kernels::ops::use_own_upsampling;

    /// A model holding one `Resize` of a [1, 3, 5, 7] input, as tf2onnx writes CenterNet's.
    fn resize_model() -> ModelProto {
        let text = |name: &str, value: &str| AttributeProto {
            name: name.into(),
            r#type: attribute_proto::AttributeType::String as i32,
            s: value.as_bytes().to_vec(),
            ..Default::default()
        };
        let graph = GraphProto {
            node: vec![NodeProto {
                name: "upsample".into(),
                op_type: "Resize".into(),
                input: vec!["x".into(), "roi".into(), "scales".into()],
                output: vec!["y".into()],
                attribute: vec![
                    text("mode", "linear"),
                    text("coordinate_transformation_mode", "asymmetric"),
                    text("nearest_mode", "floor"),
                ],
                ..Default::default()
            }],
            initializer: vec![
                TensorProto {
                    name: "roi".into(),
                    dims: vec![0],
                    data_type: tensor_proto::DataType::Float as i32,
                    ..Default::default()
                },
                TensorProto {
                    name: "scales".into(),
                    dims: vec![4],
                    data_type: tensor_proto::DataType::Float as i32,
                    float_data: vec![1.0, 1.0, 2.0, 2.0],
                    ..Default::default()
                },
            ],
            input: vec![ValueInfoProto {
                name: "x".into(),
                r#type: Some(TypeProto {
                    value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                        elem_type: tensor_proto::DataType::Float as i32,
                        shape: Some(TensorShapeProto {
                            dim: [1, 3, 5, 7]
                                .into_iter()
                                .map(|d| tensor_shape_proto::Dimension {
                                    value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                                    ..Default::default()
                                })
                                .collect(),
                        }),
                    })),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            output: vec![ValueInfoProto {
                name: "y".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        ModelProto {
            ir_version: 7,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            graph: Some(graph),
            ..Default::default()
        }
    }

    /// `model` typed and decluttered for an input of `shape`.
    fn typed(model: &ModelProto, shape: &[usize]) -> TypedModel {
        tract_onnx::onnx()
            .model_for_proto_model(model)
            .unwrap()
            .with_input_fact(0, f32::fact(shape).into())
            .unwrap()
            .into_typed()
            .unwrap()
            .into_decluttered()
            .unwrap()
    }

    /// Runs `model` on tract; with `own`, its doubling `Resize` on our `Upsample2x`.
    fn run(model: &ModelProto, input: &Tensor, own: bool) -> Tensor {
        let mut graph = typed(model, input.shape());
        if own {
            assert_eq!(use_own_upsampling(&mut graph).unwrap(), 1);
        }
        let plan = graph.into_optimized().unwrap().into_runnable().unwrap();
        plan.run(tvec!(input.clone().into()))
            .unwrap()
            .remove(0)
            .into_tensor()
    }

    /// The [1, 3, 5, 7] input of [`resize_model`].
    fn resize_input() -> (Vec<f32>, Tensor) {
        let values: Vec<f32> = (0..3 * 5 * 7)
            .map(|i| ((i * 37) % 23) as f32 - 11.5)
            .collect();
        let input = Tensor::from_shape(&[1, 3, 5, 7], &values).unwrap();
        (values, input)
    }

    /// `found` is `expected` (what tract's `Resize` computes from `values`) within rounding,
    /// and a few of its values are as worked out by hand.
    fn assert_upsampled(values: &[f32], expected: Tensor, found: Tensor, label: &str) {
        assert_eq!(found.shape(), [1, 3, 10, 14]);
        assert_eq!(expected.shape(), found.shape());
        let expected = expected.try_as_plain_ram().unwrap();
        let found = found.try_as_plain_ram().unwrap();
        let (expected, found) = (
            expected.as_slice::<f32>().unwrap(),
            found.as_slice::<f32>().unwrap(),
        );
        for (i, (e, f)) in expected.iter().zip(found).enumerate() {
            assert!(
                (e - f).abs() <= 1e-5,
                "element {i}: Resize {e}, {label} {f}"
            );
        }
        // By hand, channel 0: row 0 is x[0][0], mean(x[0][0], x[0][1]), x[0][1], ...; the last
        // column repeats the last input column.
        let x = |r: usize, c: usize| values[r * 7 + c];
        assert_eq!(found[0], x(0, 0));
        assert_eq!(found[1], (x(0, 0) + x(0, 1)) / 2.0);
        assert_eq!(found[13], x(0, 6));
        assert_eq!(found[14 + 2], (x(0, 1) + x(1, 1)) / 2.0);
    }

    #[test]
    fn rewritten_upsampling_computes_what_resize_computes() {
        let original = resize_model();
        let mut rewritten = original.clone();
        let count = rewrite_linear_upsampling(rewritten.graph.as_mut().unwrap()).unwrap();
        assert_eq!(count, 1);
        assert!(
            rewritten
                .graph
                .as_ref()
                .unwrap()
                .node
                .iter()
                .all(|n| n.op_type != "Resize"),
            "the Resize is gone"
        );
        let (values, input) = resize_input();
        let expected = run(&original, &input, false);
        let found = run(&rewritten, &input, false);
        assert_upsampled(&values, expected, found, "rewritten");
    }

    #[test]
    fn our_upsampling_computes_what_resize_computes() {
        let model = resize_model();
        let (values, input) = resize_input();
        let expected = run(&model, &input, false);
        let found = run(&model, &input, true);
        assert_upsampled(&values, expected, found, "Upsample2x");
    }

    #[test]
    fn other_resizes_are_left_alone() {
        let mut nearest = resize_model();
        let graph = nearest.graph.as_mut().unwrap();
        graph.node[0].attribute[0].s = b"nearest".to_vec();
        assert_eq!(rewrite_linear_upsampling(graph).unwrap(), 0);
        assert_eq!(graph.node[0].op_type, "Resize");
        let shape = [1, 3, 5, 7];
        assert_eq!(use_own_upsampling(&mut typed(&nearest, &shape)).unwrap(), 0);

        let mut tripling = resize_model();
        let graph = tripling.graph.as_mut().unwrap();
        graph.initializer[1].float_data = vec![1.0, 1.0, 3.0, 3.0];
        assert_eq!(rewrite_linear_upsampling(graph).unwrap(), 0);
        assert_eq!(
            use_own_upsampling(&mut typed(&tripling, &shape)).unwrap(),
            0
        );
    }
}
