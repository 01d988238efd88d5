//! tract operators around our kernels, and the passes that put them into a model in place of
//! tract's own operators. The passes run on the decluttered typed model, before
//! `into_optimized`: tract then optimises everything around our operators, which it treats as
//! opaque.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::conv3x3_bf16::{self as bf16, Geometry, OutputPlanes, PackedWeights};
use super::depthwise::{self, DepthwiseWeights};

/// Position blocks per task when a convolution is split between threads: small enough to
/// balance two to a few cores, large enough that scheduling costs nothing.
const BLOCKS_PER_TASK: usize = 8;

/// A 3x3 convolution (stride 1, padding = dilation, NCHW, batch 1) on our bfloat16 kernel
/// (`conv3x3_bf16`), with the bias and optionally the following ReLU folded in.
#[derive(Debug, Clone)]
pub struct Bf16Conv3x3 {
    weights: Arc<PackedWeights>,
    dilation: usize,
    relu: bool,
}

impl PartialEq for Bf16Conv3x3 {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.weights, &other.weights)
            && self.dilation == other.dilation
            && self.relu == other.relu
    }
}

impl Eq for Bf16Conv3x3 {}

impl Op for Bf16Conv3x3 {
    fn name(&self) -> StaticName {
        "Bf16Conv3x3".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} -> {} channels, dilation {}, relu {}",
            self.weights.in_channels, self.weights.out_channels, self.dilation, self.relu
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for Bf16Conv3x3 {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let &[1, channels, height, width] = input.shape() else {
            bail!("Bf16Conv3x3 takes one NCHW image, not {:?}", input.shape());
        };
        ensure!(channels == self.weights.in_channels);
        let view = input.try_as_plain_ram()?;
        let g = Geometry::new(height, width, self.dilation);
        let packed = bf16::pack_input(view.as_slice::<f32>()?, channels, &g);
        let out_channels = self.weights.out_channels;
        // SAFETY: `convolve` writes every element of every output channel (the kernel's tests
        // check that no element is left as it was).
        let mut output =
            unsafe { Tensor::uninitialized::<f32>(&[1, out_channels, height, width])? };
        {
            let mut view = output.try_as_plain_ram_mut()?;
            let planes = OutputPlanes::new(view.as_slice_mut::<f32>()?);
            let blocks = bf16::position_blocks(&g);
            let run = |range: std::ops::Range<usize>| {
                bf16::convolve(&packed, &self.weights, &g, self.relu, range, &planes)
            };
            for_each_block_range(blocks, &run);
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Bf16Conv3x3 {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(shape.len() == 4 && inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(f32::fact([
            shape[0].clone(),
            self.weights.out_channels.to_dim(),
            shape[2].clone(),
            shape[3].clone(),
        ])))
    }
}

/// Runs `work` over `0..blocks` in ranges: on the current tract executor's threads when it has
/// several (the process-wide setting, or a scope's), else here. Each range is one task.
fn for_each_block_range(blocks: usize, work: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
    use tract_linalg::multithread::{Executor, current_tract_executor};
    let ranges = (0..blocks.div_ceil(BLOCKS_PER_TASK))
        .map(|task| task * BLOCKS_PER_TASK..((task + 1) * BLOCKS_PER_TASK).min(blocks));
    match current_tract_executor() {
        Executor::MultiThread(pool) => pool.install(|| {
            use rayon::prelude::*;
            ranges.collect::<Vec<_>>().into_par_iter().for_each(work);
        }),
        _ => ranges.for_each(work),
    }
}

/// A depthwise convolution with stride 2 (NCHW with a batch of 1, or CHW as tract lays out the
/// detector's; square kernel of odd side, explicit padding), on our kernel (`depthwise`):
/// tract's runs scalar code at stride 2.
#[derive(Debug, Clone)]
pub struct StridedDepthwise {
    weights: Arc<DepthwiseWeights>,
    /// The input has a leading batch axis (NCHW rather than CHW).
    batch_axis: bool,
}

impl PartialEq for StridedDepthwise {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.weights, &other.weights) && self.batch_axis == other.batch_axis
    }
}

impl Eq for StridedDepthwise {}

impl Op for StridedDepthwise {
    fn name(&self) -> StaticName {
        "StridedDepthwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let w = &self.weights;
        Ok(vec![format!(
            "{} channels, {}x{} kernel, stride 2, padding {:?}",
            w.channels, w.kernel, w.kernel, w.padding
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for StridedDepthwise {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (channels, height, width) = match (self.batch_axis, input.shape()) {
            (true, &[1, c, h, w]) | (false, &[c, h, w]) => (c, h, w),
            _ => bail!(
                "StridedDepthwise takes one NCHW or CHW image, not {:?}",
                input.shape()
            ),
        };
        ensure!(channels == self.weights.channels);
        let (out_height, out_width) = self.weights.output_size(height, width);
        let shape: &[usize] = if self.batch_axis {
            &[1, channels, out_height, out_width]
        } else {
            &[channels, out_height, out_width]
        };
        let mut output = Tensor::zero::<f32>(shape)?;
        {
            let view = input.try_as_plain_ram()?;
            let mut out = output.try_as_plain_ram_mut()?;
            depthwise::convolve(
                view.as_slice::<f32>()?,
                (height, width),
                &self.weights,
                out.as_slice_mut::<f32>()?,
            );
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for StridedDepthwise {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = inputs[0]
            .shape
            .as_concrete()
            .context("StridedDepthwise needs a concrete input shape")?;
        let batch = usize::from(self.batch_axis);
        ensure!(shape.len() == 3 + batch && shape[batch] == self.weights.channels);
        let (h, w) = self.weights.output_size(shape[batch + 1], shape[batch + 2]);
        Ok(tvec!(if self.batch_axis {
            f32::fact([1, shape[1], h, w])
        } else {
            f32::fact([shape[0], h, w])
        }))
    }
}

/// A float32 constant input of `node`, if it is one: a constant, or a constant cast to float32
/// (CSRNet's ONNX keeps its weights as float16 and casts them; tract leaves those casts in the
/// graph, to be run at every inference).
fn constant_input(model: &TypedModel, node: &TypedNode, slot: usize) -> Option<Arc<Tensor>> {
    let outlet = *node.inputs.get(slot)?;
    let fact = model.outlet_fact(outlet).ok()?;
    if let Some(tensor) = fact.konst.clone() {
        return (tensor.datum_type() == f32::datum_type()).then_some(tensor);
    }
    let producer = model.node(outlet.node);
    let cast = producer.op_as::<tract_onnx::tract_core::ops::cast::Cast>()?;
    if cast.to != f32::datum_type() {
        return None;
    }
    let source = model.outlet_fact(producer.inputs[0]).ok()?.konst.clone()?;
    Some(source.cast_to::<f32>().ok()?.into_owned().into_arc_tensor())
}

/// The bias of a convolution node as one value per output channel (tract may hold a scalar).
fn bias_of(model: &TypedModel, node: &TypedNode, channels: usize) -> Option<Vec<f32>> {
    let bias = constant_input(model, node, 2)?;
    let view = bias.try_as_plain_ram().ok()?;
    let values = view.as_slice::<f32>().ok()?;
    match values.len() {
        1 => Some(vec![values[0]; channels]),
        n if n == channels => Some(values.to_vec()),
        _ => None,
    }
}

/// Padding of a 2-D convolution as (top, left, bottom, right), if explicit or "same".
fn padding_of(conv: &Conv, kernel: usize, dilation: usize) -> Option<[usize; 4]> {
    match &conv.pool_spec.padding {
        PaddingSpec::Explicit(before, after) if before.len() == 2 && after.len() == 2 => {
            Some([before[0], before[1], after[0], after[1]])
        }
        PaddingSpec::SameUpper | PaddingSpec::SameLower if kernel % 2 == 1 => {
            let p = dilation * (kernel - 1) / 2;
            Some([p; 4])
        }
        _ => None,
    }
}

/// Padding of a stride-2 convolution of an input of `height` x `width`, as (top, left, bottom,
/// right): explicit, or "same" (output = ceil(input / 2), the extra row and column after the
/// input with SameUpper as ONNX defines it, before with SameLower).
fn stride_2_padding(
    conv: &Conv,
    kernel: usize,
    (height, width): (usize, usize),
) -> Option<[usize; 4]> {
    let same = |length: usize, upper: bool| {
        let total = ((length.div_ceil(2) - 1) * 2 + kernel).saturating_sub(length);
        let small = total / 2;
        if upper {
            (small, total - small)
        } else {
            (total - small, small)
        }
    };
    match &conv.pool_spec.padding {
        PaddingSpec::Explicit(before, after) if before.len() == 2 && after.len() == 2 => {
            Some([before[0], before[1], after[0], after[1]])
        }
        PaddingSpec::SameUpper | PaddingSpec::SameLower => {
            let upper = conv.pool_spec.padding == PaddingSpec::SameUpper;
            let (top, bottom) = same(height, upper);
            let (left, right) = same(width, upper);
            Some([top, left, bottom, right])
        }
        _ => None,
    }
}

/// Whether `node`'s only consumer is a ReLU (`max(x, 0)`, as tract declutters ONNX's `Relu`),
/// and that consumer's id.
fn relu_after(model: &TypedModel, node: &TypedNode) -> Option<usize> {
    let [successor] = &node.outputs[0].successors[..] else {
        return None;
    };
    let next = model.node(successor.node);
    let is_relu = next.op().name() == "Max"
        && next.inputs.len() == 2
        && next.inputs.iter().any(|input| {
            model
                .outlet_fact(*input)
                .ok()
                .and_then(|f| f.konst.clone())
                .is_some_and(|k| {
                    k.try_as_plain_ram()
                        .ok()
                        .and_then(|v| {
                            v.as_slice::<f32>()
                                .ok()
                                .map(|s| s.iter().all(|&x| x == 0.0))
                        })
                        .unwrap_or(false)
                })
        });
    (is_relu && node.outputs.len() == 1).then_some(next.id)
}

/// Replaces every 3x3, stride-1, "same"-padded, ungrouped float convolution with at least
/// `min_in_channels` input channels by [`Bf16Conv3x3`], folding a ReLU that follows it.
/// Returns how many were replaced. Does nothing on a CPU without AVX-512 BF16. The weights are
/// packed once per convolution (by node name) into `packed`, which later calls reuse: plans of
/// the same model for other input sizes then share them.
pub fn use_bf16_convolutions(
    model: &mut TypedModel,
    min_in_channels: usize,
    packed: &mut std::collections::HashMap<String, Arc<PackedWeights>>,
) -> TractResult<usize> {
    if !bf16::supported() {
        return Ok(0);
    }
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let spec = &conv.pool_spec;
        let dilation = spec.dilations()[..].first().copied().unwrap_or(1);
        let suitable = conv.group == 1
            && conv.q_params.is_none()
            && conv.kernel_fmt == KernelFormat::OIHW
            && spec.data_format == DataFormat::NCHW
            && spec.kernel_shape[..] == [3, 3]
            && spec.strides().iter().all(|&s| s == 1)
            && spec.dilations().iter().all(|&d| d == dilation)
            && padding_of(conv, 3, dilation) == Some([dilation; 4])
            && spec.input_channels >= min_in_channels
            && model.outlet_fact(node.inputs[0])?.datum_type == f32::datum_type()
            && model.outlet_fact(node.inputs[0])?.shape.len() == 4;
        if !suitable {
            continue;
        }
        let (in_channels, out_channels) = (spec.input_channels, spec.output_channels);
        let (Some(kernel), Some(bias)) = (
            constant_input(model, node, 1),
            bias_of(model, node, out_channels),
        ) else {
            continue;
        };
        let weights = match packed.get(&node.name) {
            Some(weights) => Arc::clone(weights),
            None => {
                let kernel = kernel.try_as_plain_ram()?;
                let kernel = kernel.as_slice::<f32>()?;
                ensure!(kernel.len() == out_channels * in_channels * 9);
                let weights =
                    Arc::new(PackedWeights::new(kernel, &bias, out_channels, in_channels));
                packed.insert(node.name.clone(), Arc::clone(&weights));
                weights
            }
        };
        ensure!(weights.in_channels == in_channels && weights.out_channels == out_channels);
        let relu = relu_after(model, node);
        let op = Bf16Conv3x3 {
            weights,
            dilation,
            relu: relu.is_some(),
        };
        let name = node.name.clone();
        let input = node.inputs[0];
        let replaced_outlet = OutletId::new(relu.unwrap_or(id), 0);
        let mut patch = TypedModelPatch::new(format!("bf16 convolution {name}"));
        let tapped = patch.tap_model(model, input)?;
        let wire = patch.wire_node(format!("{name}.bf16"), op, &[tapped])?[0];
        patch.shunt_outside(model, replaced_outlet, wire)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// Replaces every stride-2 depthwise float convolution (NCHW or CHW, odd square kernel,
/// dilation 1) by [`StridedDepthwise`]. Returns how many were replaced.
pub fn use_strided_depthwise(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let spec = &conv.pool_spec;
        let kernel = spec.kernel_shape.first().copied().unwrap_or(0);
        let channels = spec.input_channels;
        let input_fact = model.outlet_fact(node.inputs[0])?;
        let suitable = conv.group == channels
            && spec.output_channels == channels
            && conv.q_params.is_none()
            && conv.kernel_fmt == KernelFormat::OIHW
            && matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW)
            && spec.kernel_shape[..] == [kernel, kernel]
            && kernel % 2 == 1
            && spec.strides().iter().all(|&s| s == 2)
            && spec.dilations().iter().all(|&d| d == 1)
            && input_fact.datum_type == f32::datum_type();
        let batch_axis = spec.data_format == DataFormat::NCHW;
        let Some(shape) = input_fact.shape.as_concrete() else {
            continue;
        };
        let shape_fits = if batch_axis {
            shape.len() == 4 && shape[0] == 1
        } else {
            shape.len() == 3
        };
        if !suitable || !shape_fits {
            continue;
        }
        let (height, width) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        let Some(padding) = stride_2_padding(conv, kernel, (height, width)) else {
            continue;
        };
        let (Some(weights), Some(bias)) = (
            constant_input(model, node, 1),
            bias_of(model, node, channels),
        ) else {
            continue;
        };
        let weights = weights.try_as_plain_ram()?;
        let weights = weights.as_slice::<f32>()?;
        ensure!(weights.len() == channels * kernel * kernel);
        let op = StridedDepthwise {
            weights: Arc::new(DepthwiseWeights::new(
                weights, &bias, channels, kernel, padding,
            )),
            batch_axis,
        };
        let name = node.name.clone();
        let input = node.inputs[0];
        let mut patch = TypedModelPatch::new(format!("strided depthwise {name}"));
        let tapped = patch.tap_model(model, input)?;
        let wire = patch.wire_node(format!("{name}.strided_depthwise"), op, &[tapped])?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), wire)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}
