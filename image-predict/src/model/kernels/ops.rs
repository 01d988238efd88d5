//! tract operators around our kernels, and the passes that put them into a model in place of
//! tract's own operators. The passes run on the decluttered typed model, before
//! `into_optimized`: tract then optimises everything around our operators, which it treats as
//! opaque.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;

use super::OutputPlanes;
use super::conv1x1::{self, Activation};
use super::conv3x3::{self, Geometry, PackedWeights};
use super::depthwise::{self, ChannelAxis, DepthwiseWeights};
use super::max_pool;

/// Position blocks per task when a convolution is split between threads: small enough to
/// balance two to a few cores, large enough that scheduling costs nothing.
const BLOCKS_PER_TASK: usize = 8;

/// A 3x3 convolution (stride 1, padding = dilation, NCHW, batch 1) on our kernel (`conv3x3`,
/// with the products of its packed weights), with the bias and optionally the following ReLU
/// folded in.
#[derive(Debug, Clone)]
pub struct Conv3x3 {
    weights: Arc<PackedWeights>,
    dilation: usize,
    relu: bool,
}

impl PartialEq for Conv3x3 {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.weights, &other.weights)
            && self.dilation == other.dilation
            && self.relu == other.relu
    }
}

impl Eq for Conv3x3 {}

impl Op for Conv3x3 {
    fn name(&self) -> StaticName {
        "Conv3x3".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} -> {} channels, dilation {}, relu {}, {:?} products",
            self.weights.in_channels,
            self.weights.out_channels,
            self.dilation,
            self.relu,
            self.weights.products
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for Conv3x3 {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let &[1, channels, height, width] = input.shape() else {
            bail!("Conv3x3 takes one NCHW image, not {:?}", input.shape());
        };
        ensure!(channels == self.weights.in_channels);
        let view = input.try_as_plain_ram()?;
        let g = Geometry::new(height, width, self.dilation);
        let packed =
            conv3x3::pack_input(view.as_slice::<f32>()?, channels, &g, self.weights.products);
        let out_channels = self.weights.out_channels;
        // SAFETY: `convolve` writes every element of every output channel (the kernel's tests
        // check that no element is left as it was).
        let mut output =
            unsafe { Tensor::uninitialized::<f32>(&[1, out_channels, height, width])? };
        {
            let mut view = output.try_as_plain_ram_mut()?;
            let planes = OutputPlanes::new(view.as_slice_mut::<f32>()?);
            let blocks = conv3x3::position_blocks(&g);
            let run = |range: std::ops::Range<usize>| {
                conv3x3::convolve(&packed, &self.weights, &g, self.relu, range, &planes)
            };
            for_each_block_range(blocks, &run);
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Conv3x3 {
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

/// A 1x1 convolution on our float32 kernel (`conv1x1`): the matrix product of constant weights
/// `[out][in]` with an image, channels first (`[in][h][w]`) or last (`[1][h][w][in]`, transposed
/// first), into `[out][h][w]` (with a leading batch axis of 1 when `batch_out`), with the bias
/// and optionally the following ReLU folded in.
#[derive(Debug, Clone)]
pub struct Conv1x1 {
    weights: Arc<conv1x1::PackedWeights>,
    input_channels_last: bool,
    batch_out: bool,
    activation: Activation,
}

impl PartialEq for Conv1x1 {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.weights, &other.weights)
            && self.input_channels_last == other.input_channels_last
            && self.batch_out == other.batch_out
            && self.activation == other.activation
    }
}

impl Eq for Conv1x1 {}

impl Conv1x1 {
    fn input_format(&self) -> DataFormat {
        if self.input_channels_last {
            DataFormat::NHWC
        } else {
            DataFormat::CHW
        }
    }

    fn output_shape(&self, (height, width): (usize, usize)) -> TVec<usize> {
        let format = if self.batch_out {
            DataFormat::NCHW
        } else {
            DataFormat::CHW
        };
        channels_first_shape(format, self.weights.out_channels, (height, width))
    }
}

impl Op for Conv1x1 {
    fn name(&self) -> StaticName {
        "Conv1x1".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} -> {} channels, input {:?}, {:?}",
            self.weights.in_channels,
            self.weights.out_channels,
            self.input_format(),
            self.activation
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Conv1x1 {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let Some((channels, height, width)) = image_size(self.input_format(), input.shape()) else {
            bail!(
                "Conv1x1 takes one {:?} image, not {:?}",
                self.input_format(),
                input.shape()
            );
        };
        ensure!(channels == self.weights.in_channels);
        let positions = height * width;
        // SAFETY: `convolve` writes every position of every output channel (its test checks
        // every element against the definition).
        let mut output =
            unsafe { Tensor::uninitialized::<f32>(&self.output_shape((height, width)))? };
        {
            let view = input.try_as_plain_ram()?;
            let transposed;
            let source = if self.input_channels_last {
                transposed = channels_first(view.as_slice::<f32>()?, positions, channels);
                &transposed[..]
            } else {
                view.as_slice::<f32>()?
            };
            let mut view = output.try_as_plain_ram_mut()?;
            let planes = OutputPlanes::new(view.as_slice_mut::<f32>()?);
            let run = |range: std::ops::Range<usize>| {
                conv1x1::convolve(
                    source,
                    positions,
                    &self.weights,
                    self.activation,
                    range,
                    &planes,
                )
            };
            for_each_block_range(conv1x1::position_blocks(positions), &run);
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Conv1x1 {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = inputs[0]
            .shape
            .as_concrete()
            .context("Conv1x1 needs a concrete input shape")?;
        let (channels, height, width) = image_size(self.input_format(), shape)
            .with_context(|| format!("Conv1x1 on {shape:?}"))?;
        ensure!(channels == self.weights.in_channels);
        Ok(tvec!(f32::fact(self.output_shape((height, width)))))
    }
}

/// `[positions][channels]` as `[channels][positions]`.
fn channels_first(values: &[f32], positions: usize, channels: usize) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    for (position, pixel) in values.chunks_exact(channels).enumerate() {
        for (channel, &value) in pixel.iter().enumerate() {
            out[channel * positions + position] = value;
        }
    }
    out
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

/// Splits `output` into chunks of `chunk_len` and runs `work(index, chunk)` on each: on the current
/// tract executor's threads when it has several, else here.
fn for_each_chunk_mut(
    output: &mut [f32],
    chunk_len: usize,
    work: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    use tract_linalg::multithread::{Executor, current_tract_executor};
    let chunk_len = chunk_len.max(1);
    match current_tract_executor() {
        Executor::MultiThread(pool) => pool.install(|| {
            use rayon::prelude::*;
            output
                .par_chunks_mut(chunk_len)
                .enumerate()
                .for_each(|(index, chunk)| work(index, chunk));
        }),
        _ => output
            .chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(index, chunk)| work(index, chunk)),
    }
}

/// Multiply-adds per task of a depthwise convolution split between threads (its output channels,
/// or rows with channels last): a few tens of microseconds of work, so that a convolution of the
/// detector's last blocks (6 Mi multiply-adds) still gives every core several tasks.
const DEPTHWISE_MACS_PER_TASK: usize = 1 << 16;

/// Channels per task of a pooling split between threads.
const POOL_CHANNELS_PER_TASK: usize = 8;

/// A 2x2 max pooling of stride 2 without padding (NCHW with a batch of 1, or CHW), on our
/// kernel (`max_pool`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPool2x2 {
    format: DataFormat,
}

impl Op for MaxPool2x2 {
    fn name(&self) -> StaticName {
        "MaxPool2x2".into()
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPool2x2 {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let Some((channels, height, width)) = image_size(self.format, input.shape()) else {
            bail!(
                "MaxPool2x2 takes one {:?} image, not {:?}",
                self.format,
                input.shape()
            );
        };
        let (out_height, out_width) = max_pool::output_size(height, width);
        let shape = channels_first_shape(self.format, channels, (out_height, out_width));
        // SAFETY: `pool` writes every element of the output (its test checks it).
        let mut output = unsafe { Tensor::uninitialized::<f32>(&shape)? };
        {
            let view = input.try_as_plain_ram()?;
            let source = view.as_slice::<f32>()?;
            let mut out = output.try_as_plain_ram_mut()?;
            let out_area = out_height * out_width;
            for_each_chunk_mut(
                out.as_slice_mut::<f32>()?,
                POOL_CHANNELS_PER_TASK * out_area,
                &|task, chunk| {
                    let first = task * POOL_CHANNELS_PER_TASK;
                    let count = chunk.len() / out_area.max(1);
                    max_pool::pool(source, (height, width), first..first + count, chunk);
                },
            );
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for MaxPool2x2 {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = inputs[0]
            .shape
            .as_concrete()
            .context("MaxPool2x2 needs a concrete input shape")?;
        let (channels, height, width) =
            image_size(self.format, shape).with_context(|| format!("MaxPool2x2 on {shape:?}"))?;
        let size = max_pool::output_size(height, width);
        Ok(tvec!(f32::fact(channels_first_shape(
            self.format,
            channels,
            size
        ))))
    }
}

/// The shape of a channels-first image of `format`.
fn channels_first_shape(
    format: DataFormat,
    channels: usize,
    (height, width): (usize, usize),
) -> TVec<usize> {
    if format.has_n() {
        tvec![1, channels, height, width]
    } else {
        tvec![channels, height, width]
    }
}

/// Replaces every 2x2 float max pooling of stride 2 without padding, channels first, by
/// [`MaxPool2x2`]. Returns how many were replaced.
pub fn use_own_max_pools(model: &mut TypedModel) -> TractResult<usize> {
    use tract_onnx::tract_core::ops::cnn::MaxPool;
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(pool) = node.op_as::<MaxPool>() else {
            continue;
        };
        let spec = &pool.pool_spec;
        let unpadded = match &spec.padding {
            PaddingSpec::Valid => true,
            PaddingSpec::Explicit(before, after) => {
                before.iter().chain(after.iter()).all(|&p| p == 0)
            }
            _ => false,
        };
        let input_fact = model.outlet_fact(node.inputs[0])?;
        let suitable = pool.with_index_outputs.is_none()
            && !spec.data_format.c_is_last()
            && spec.kernel_shape[..] == [2, 2]
            && spec.strides().iter().all(|&s| s == 2)
            && spec.dilations().iter().all(|&d| d == 1)
            && unpadded
            && input_fact.datum_type == f32::datum_type()
            && input_fact
                .shape
                .as_concrete()
                .and_then(|shape| image_size(spec.data_format, shape))
                .is_some();
        if !suitable {
            continue;
        }
        let op = MaxPool2x2 {
            format: spec.data_format,
        };
        let name = node.name.clone();
        let input = node.inputs[0];
        let mut patch = TypedModelPatch::new(format!("own max pool {name}"));
        let tapped = patch.tap_model(model, input)?;
        let wire = patch.wire_node(format!("{name}.max_pool_2x2"), op, &[tapped])?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), wire)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// A depthwise convolution with stride 1 or 2 (channels first or last, with or without a batch
/// axis of 1; square kernel of odd side, explicit padding), on our kernel (`depthwise`): tract's
/// runs scalar code at stride 2 and has no vectorised kernel for channels last.
#[derive(Debug, Clone)]
pub struct OwnDepthwise {
    weights: Arc<DepthwiseWeights>,
    format: DataFormat,
}

impl PartialEq for OwnDepthwise {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.weights, &other.weights) && self.format == other.format
    }
}

impl Eq for OwnDepthwise {}

impl OwnDepthwise {
    fn channel_axis(&self) -> ChannelAxis {
        if self.format.c_is_last() {
            ChannelAxis::Last
        } else {
            ChannelAxis::First
        }
    }

    fn input_size(&self, shape: &[usize]) -> Option<(usize, usize, usize)> {
        image_size(self.format, shape)
    }

    fn output_shape(&self, (height, width): (usize, usize)) -> TVec<usize> {
        let c = self.weights.channels;
        let (h, w) = self.weights.output_size(height, width);
        let mut shape: TVec<usize> = if self.format.has_n() {
            tvec![1]
        } else {
            tvec![]
        };
        match self.channel_axis() {
            ChannelAxis::First => shape.extend([c, h, w]),
            ChannelAxis::Last => shape.extend([h, w, c]),
        }
        shape
    }
}

/// (channels, height, width) of an image of `format` with a batch of at most 1, if `shape` is one.
fn image_size(format: DataFormat, shape: &[usize]) -> Option<(usize, usize, usize)> {
    let shape = if format.has_n() {
        match shape {
            [1, rest @ ..] => rest,
            _ => return None,
        }
    } else {
        shape
    };
    match (format.c_is_last(), shape) {
        (false, &[c, h, w]) | (true, &[h, w, c]) => Some((c, h, w)),
        _ => None,
    }
}

impl Op for OwnDepthwise {
    fn name(&self) -> StaticName {
        "OwnDepthwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let w = &self.weights;
        Ok(vec![format!(
            "{} channels, {:?}, {}x{} kernel, stride {}, padding {:?}",
            w.channels, self.format, w.kernel, w.kernel, w.stride, w.padding
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for OwnDepthwise {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let Some((channels, height, width)) = self.input_size(input.shape()) else {
            bail!(
                "OwnDepthwise takes one {:?} image, not {:?}",
                self.format,
                input.shape()
            );
        };
        ensure!(channels == self.weights.channels);
        // SAFETY: `convolve` writes every output element (its test starts from NaN everywhere
        // and checks every element against the definition), so zeroing first was wasted work.
        let mut output =
            unsafe { Tensor::uninitialized::<f32>(&self.output_shape((height, width)))? };
        {
            let view = input.try_as_plain_ram()?;
            let source = view.as_slice::<f32>()?;
            let mut out = output.try_as_plain_ram_mut()?;
            let (axis, w) = (self.channel_axis(), &*self.weights);
            let part_len = w.part_len(axis, (height, width));
            let parts_per_task =
                (DEPTHWISE_MACS_PER_TASK / (part_len * w.kernel * w.kernel).max(1)).max(1);
            for_each_chunk_mut(
                out.as_slice_mut::<f32>()?,
                parts_per_task * part_len,
                &|task, chunk| {
                    let first = task * parts_per_task;
                    let parts = first..first + chunk.len() / part_len.max(1);
                    depthwise::convolve(source, (height, width), axis, w, parts, chunk);
                },
            );
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for OwnDepthwise {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = inputs[0]
            .shape
            .as_concrete()
            .context("OwnDepthwise needs a concrete input shape")?;
        let (channels, height, width) = self
            .input_size(shape)
            .with_context(|| format!("OwnDepthwise on {shape:?}"))?;
        ensure!(channels == self.weights.channels);
        Ok(tvec!(f32::fact(self.output_shape((height, width)))))
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

/// Padding of a convolution of stride `stride` on an input of `height` x `width`, as (top, left,
/// bottom, right): explicit, or "same" (output = ceil(input / stride); an odd total with the
/// extra row and column after the input with SameUpper as ONNX defines it, before with
/// SameLower).
fn padding_at_stride(
    conv: &Conv,
    kernel: usize,
    stride: usize,
    (height, width): (usize, usize),
) -> Option<[usize; 4]> {
    let same = |length: usize, upper: bool| {
        let total = ((length.div_ceil(stride) - 1) * stride + kernel).saturating_sub(length);
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
/// `min_in_channels` input channels by [`Conv3x3`], folding a ReLU that follows it.
/// Returns how many were replaced. Does nothing on a CPU that does not run `products`. The
/// weights are packed once per convolution (by node name) into `packed`, which later calls
/// reuse: plans of the same model for other input sizes then share them (all with the same
/// `products`).
pub fn use_own_3x3_convolutions(
    model: &mut TypedModel,
    min_in_channels: usize,
    products: conv3x3::Products,
    packed: &mut std::collections::HashMap<String, Arc<PackedWeights>>,
) -> TractResult<usize> {
    if !products.supported() {
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
                let weights = Arc::new(PackedWeights::new(
                    kernel,
                    &bias,
                    out_channels,
                    in_channels,
                    products,
                ));
                packed.insert(node.name.clone(), Arc::clone(&weights));
                weights
            }
        };
        ensure!(weights.in_channels == in_channels && weights.out_channels == out_channels);
        let relu = relu_after(model, node);
        let op = Conv3x3 {
            weights,
            dilation,
            relu: relu.is_some(),
        };
        let name = node.name.clone();
        let input = node.inputs[0];
        let replaced_outlet = OutletId::new(relu.unwrap_or(id), 0);
        let mut patch = TypedModelPatch::new(format!("own 3x3 convolution {name}"));
        let tapped = patch.tap_model(model, input)?;
        let wire = patch.wire_node(format!("{name}.conv3x3"), op, &[tapped])?[0];
        patch.shunt_outside(model, replaced_outlet, wire)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// Replaces every depthwise float convolution of stride 1 or 2 (any of tract's 2-D layouts with a
/// batch of at most 1, odd square kernel, dilation 1) by [`OwnDepthwise`]. Returns how many
/// were replaced.
pub fn use_own_depthwise(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let spec = &conv.pool_spec;
        let kernel = spec.kernel_shape.first().copied().unwrap_or(0);
        let stride = spec.strides().first().copied().unwrap_or(0);
        let channels = spec.input_channels;
        let input_fact = model.outlet_fact(node.inputs[0])?;
        let suitable = conv.group == channels
            && spec.output_channels == channels
            && conv.q_params.is_none()
            && conv.kernel_fmt == KernelFormat::OIHW
            && spec.kernel_shape[..] == [kernel, kernel]
            && kernel % 2 == 1
            && (stride == 1 || stride == 2)
            && spec.strides().iter().all(|&s| s == stride)
            && spec.dilations().iter().all(|&d| d == 1)
            && input_fact.datum_type == f32::datum_type();
        let size = input_fact
            .shape
            .as_concrete()
            .and_then(|shape| image_size(spec.data_format, shape));
        let Some((_, height, width)) = size.filter(|_| suitable) else {
            continue;
        };
        let Some(padding) = padding_at_stride(conv, kernel, stride, (height, width)) else {
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
        let op = OwnDepthwise {
            weights: Arc::new(DepthwiseWeights::new(
                weights, &bias, channels, kernel, stride, padding,
            )),
            format: spec.data_format,
        };
        let name = node.name.clone();
        let input = node.inputs[0];
        let mut patch = TypedModelPatch::new(format!("own depthwise {name}"));
        let tapped = patch.tap_model(model, input)?;
        let wire = patch.wire_node(format!("{name}.own_depthwise"), op, &[tapped])?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), wire)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// Replaces every matrix product that is a 1x1 convolution (tract's decluttering turns ONNX's
/// 1x1 `Conv` into an `EinSum` of the image with constant weights `OI`: `IHW,OI->OHW`, its
/// batched output `NOHW`, or a channels-last input `NHWI`) by [`Conv1x1`], folding the bias
/// `Add` and a ReLU that follow it. Returns how many were replaced. Does nothing on a CPU
/// without AVX-512 F.
pub fn use_own_pointwise(model: &mut TypedModel) -> TractResult<usize> {
    use tract_onnx::tract_core::ops::einsum::EinSum;
    if !conv1x1::supported() {
        return Ok(0);
    }
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(einsum) = node.op_as::<EinSum>() else {
            continue;
        };
        let (input_channels_last, batch_out) = match einsum.axes.to_string().as_str() {
            "IHW,OI->OHW" => (false, false),
            "IHW,OI->NOHW" => (false, true),
            "NHWI,OI->OHW" => (true, false),
            _ => continue,
        };
        let input_fact = model.outlet_fact(node.inputs[0])?;
        let input_format = if input_channels_last {
            DataFormat::NHWC
        } else {
            DataFormat::CHW
        };
        let size = input_fact
            .shape
            .as_concrete()
            .and_then(|shape| image_size(input_format, shape));
        let Some(kernel) = constant_input(model, node, 1) else {
            continue;
        };
        let (&[out_channels, in_channels], Some((channels, _, _))) = (kernel.shape(), size) else {
            continue;
        };
        if einsum.q_params.is_some()
            || einsum.operating_dt != f32::datum_type()
            || input_fact.datum_type != f32::datum_type()
            || node.inputs.len() != 2
            || channels != in_channels
        {
            continue;
        }
        // The bias: the product's only consumer adding one constant per output channel.
        let bias_shape: TVec<usize> = if batch_out {
            tvec![1, out_channels, 1, 1]
        } else {
            tvec![out_channels, 1, 1]
        };
        let bias_add = match &node.outputs[0].successors[..] {
            [successor] => {
                let next = model.node(successor.node);
                let other = next
                    .inputs
                    .iter()
                    .find(|input| input.node != id)
                    .and_then(|input| model.outlet_fact(*input).ok()?.konst.clone());
                let values = other.and_then(|k| {
                    let view = k.try_as_plain_ram().ok()?;
                    let values = view.as_slice::<f32>().ok()?.to_vec();
                    (k.shape() == &bias_shape[..]).then_some(values)
                });
                match values {
                    Some(values) if next.op().name() == "Add" && next.inputs.len() == 2 => {
                        Some((next.id, values))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let bias = bias_add
            .as_ref()
            .map_or_else(|| vec![0.0; out_channels], |(_, values)| values.clone());
        let last = bias_add.as_ref().map_or(id, |(add, _)| *add);
        let relu = relu_after(model, model.node(last));
        let kernel = kernel.try_as_plain_ram()?;
        let op = Conv1x1 {
            weights: Arc::new(conv1x1::PackedWeights::new(
                kernel.as_slice::<f32>()?,
                &bias,
                out_channels,
                in_channels,
            )),
            input_channels_last,
            batch_out,
            activation: if relu.is_some() {
                Activation::Relu
            } else {
                Activation::None
            },
        };
        let name = node.name.clone();
        let input = node.inputs[0];
        let replaced_outlet = OutletId::new(relu.unwrap_or(last), 0);
        let mut patch = TypedModelPatch::new(format!("own 1x1 convolution {name}"));
        let tapped = patch.tap_model(model, input)?;
        let wire = patch.wire_node(format!("{name}.conv1x1"), op, &[tapped])?[0];
        patch.shunt_outside(model, replaced_outlet, wire)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}
