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
use super::planes;
use super::stem::{self, StemWeights};

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
/// `[out][in]` with an image (batch 1), with the bias and the activation that follows folded in.
/// The kernel reads and writes channels first; a channels-last input is transposed before it, a
/// channels-last output after it (unless it has one channel, whose two layouts are the same),
/// each task its own positions.
#[derive(Debug, Clone)]
pub struct Conv1x1 {
    weights: Arc<conv1x1::PackedWeights>,
    input: DataFormat,
    output: DataFormat,
    activation: Activation,
}

impl PartialEq for Conv1x1 {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.weights, &other.weights)
            && self.input == other.input
            && self.output == other.output
            && self.activation == other.activation
    }
}

impl Eq for Conv1x1 {}

impl Conv1x1 {
    /// The image layouts of a tract `EinSum` that is a 1x1 convolution, by its axes (after
    /// decluttering, ONNX's 1x1 `Conv` is an `EinSum` of the image with the weights `OI`, or `I`
    /// for one output channel), as (input, output, whether the weights have an output axis).
    fn layouts(axes: &str) -> Option<(DataFormat, DataFormat, bool)> {
        use DataFormat::{CHW, NCHW, NHWC};
        Some(match axes {
            "IHW,OI->OHW" => (CHW, CHW, true),
            "IHW,OI->NOHW" => (CHW, NCHW, true),
            "NHWI,OI->OHW" => (NHWC, CHW, true),
            "NIHW,OI->NOHW" => (NCHW, NCHW, true),
            "NIHW,OI->NHWO" => (NCHW, NHWC, true),
            "NIHW,I->NHWO" => (NCHW, NHWC, false),
            "NHWI,OI->NHWO" => (NHWC, NHWC, true),
            _ => return None,
        })
    }

    fn output_shape(&self, size: (usize, usize)) -> TVec<usize> {
        image_shape(self.output, self.weights.out_channels, size)
    }
}

impl Op for Conv1x1 {
    fn name(&self) -> StaticName {
        "Conv1x1".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} -> {} channels, {:?} -> {:?}, {:?}",
            self.weights.in_channels,
            self.weights.out_channels,
            self.input,
            self.output,
            self.activation
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Conv1x1 {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (input, (channels, height, width)) = image_input(
            "Conv1x1",
            self.input,
            Some(self.weights.in_channels),
            inputs,
        )?;
        let positions = height * width;
        let out_channels = self.weights.out_channels;
        // SAFETY: the tasks together cover every position of every output channel, each written
        // by `convolve` or by the transposition of its result (the kernel's tests check every
        // element against the definition and the tasks' coverage).
        let mut output =
            unsafe { Tensor::uninitialized::<f32>(&self.output_shape((height, width)))? };
        {
            let view = input.try_as_plain_ram()?;
            let source = view.as_slice::<f32>()?;
            let mut view = output.try_as_plain_ram_mut()?;
            let destination = view.as_slice_mut::<f32>()?;
            // A channels-last side is transposed task by task, the task's positions only (a
            // channels-last image's rows of positions are contiguous), so that the
            // transpositions run on every core too and stay in the core's cache.
            let transpose_input = self.input.c_is_last() && channels > 1;
            let transpose_output = self.output.c_is_last() && out_channels > 1;
            let planes = OutputPlanes::new(destination);
            let tasks = conv1x1::tasks(
                positions,
                &self.weights,
                !transpose_input && !transpose_output,
            );
            let run = |task: &conv1x1::Task| {
                let range = &task.positions;
                let own_input;
                let (input, input_planes) = if transpose_input {
                    own_input = transposed(
                        &source[range.start * channels..range.end * channels],
                        range.len(),
                        channels,
                    );
                    (&own_input[..], conv1x1::Planes::packed(range.len()))
                } else {
                    (source, conv1x1::Planes::of_image(positions, range))
                };
                let convolve = |out: &OutputPlanes<'_>, out_planes| {
                    conv1x1::convolve(
                        input,
                        input_planes,
                        &self.weights,
                        self.activation,
                        task.channel_blocks.clone(),
                        out,
                        out_planes,
                    )
                };
                if transpose_output {
                    let mut channels_first = vec![0f32; out_channels * range.len()];
                    convolve(
                        &OutputPlanes::new(&mut channels_first),
                        conv1x1::Planes::packed(range.len()),
                    );
                    // SAFETY: the tasks' position ranges are disjoint, and this task owns all
                    // the output channels of its positions (`tasks` was told not to split them).
                    let rows = unsafe {
                        planes.slice_mut(range.start * out_channels..range.end * out_channels)
                    };
                    transpose::transpose(&channels_first, rows, range.len(), out_channels);
                } else {
                    convolve(&planes, conv1x1::Planes::of_image(positions, range));
                }
            };
            for_each_task(&tasks, &run);
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Conv1x1 {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let (_, height, width) = input_fact_size(
            "Conv1x1",
            self.input,
            Some(self.weights.in_channels),
            inputs,
        )?;
        Ok(tvec!(f32::fact(self.output_shape((height, width)))))
    }
}

/// `values`, `[rows][columns]`, as `[columns][rows]`.
fn transposed(values: &[f32], rows: usize, columns: usize) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    transpose::transpose(values, &mut out, columns, rows);
    out
}

/// Runs `work` over `0..blocks` in ranges of [`BLOCKS_PER_TASK`], each range one task of
/// [`for_each_task`].
fn for_each_block_range(blocks: usize, work: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
    let ranges: Vec<_> = (0..blocks.div_ceil(BLOCKS_PER_TASK))
        .map(|task| task * BLOCKS_PER_TASK..((task + 1) * BLOCKS_PER_TASK).min(blocks))
        .collect();
    for_each_task(&ranges, &|range: &std::ops::Range<usize>| {
        work(range.clone())
    });
}

/// Runs `work` on each task: on the current tract executor's threads when it has several (the
/// process-wide setting, or a scope's), else here, in order.
fn for_each_task<T: Sync>(tasks: &[T], work: &(dyn Fn(&T) + Sync)) {
    use tract_linalg::multithread::{Executor, current_tract_executor};
    match current_tract_executor() {
        Executor::MultiThread(pool) => pool.install(|| {
            use rayon::prelude::*;
            tasks.par_iter().for_each(work);
        }),
        _ => tasks.iter().for_each(work),
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
        let (input, (channels, height, width)) =
            image_input("MaxPool2x2", self.format, None, inputs)?;
        let (out_height, out_width) = max_pool::output_size(height, width);
        let shape = image_shape(self.format, channels, (out_height, out_width));
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
        let (channels, height, width) = input_fact_size("MaxPool2x2", self.format, None, inputs)?;
        let size = max_pool::output_size(height, width);
        Ok(tvec!(f32::fact(image_shape(self.format, channels, size))))
    }
}

/// The one image input of one of our operators, checked against its layout and, when given, its
/// channels: the input and its (channels, height, width).
fn image_input(
    op: &str,
    format: DataFormat,
    channels: Option<usize>,
    inputs: TVec<TValue>,
) -> TractResult<(TValue, (usize, usize, usize))> {
    let input = args_1!(inputs);
    let Some(size) = image_size(format, input.shape()) else {
        bail!("{op} takes one {format:?} image, not {:?}", input.shape());
    };
    if let Some(channels) = channels {
        ensure!(
            size.0 == channels,
            "{op} takes {channels} channels, not {}",
            size.0
        );
    }
    Ok((input, size))
}

/// The (channels, height, width) of the image input fact of one of our operators, checked
/// against its layout and, when given, its channels.
fn input_fact_size(
    op: &str,
    format: DataFormat,
    channels: Option<usize>,
    inputs: &[&TypedFact],
) -> TractResult<(usize, usize, usize)> {
    let shape = inputs[0]
        .shape
        .as_concrete()
        .with_context(|| format!("{op} needs a concrete input shape"))?;
    let (c, height, width) =
        image_size(format, shape).with_context(|| format!("{op} on {shape:?}"))?;
    if let Some(channels) = channels {
        ensure!(c == channels, "{op} takes {channels} channels, not {c}");
    }
    Ok((c, height, width))
}

/// Puts `op` in `model` in place of the nodes from `first` (whose first input `op` reads) to
/// `last` (whose output `op` gives), as a patch named `label` and a node named after `first`
/// with `suffix`.
fn replace_nodes(
    model: &mut TypedModel,
    first: usize,
    last: usize,
    label: &str,
    suffix: &str,
    op: impl Into<Box<dyn TypedOp>>,
) -> TractResult<()> {
    let node = model.node(first);
    let (name, input) = (node.name.clone(), node.inputs[0]);
    let mut patch = TypedModelPatch::new(format!("{label} {name}"));
    let tapped = patch.tap_model(model, input)?;
    let wire = patch.wire_node(format!("{name}.{suffix}"), op, &[tapped])?[0];
    patch.shunt_outside(model, OutletId::new(last, 0), wire)?;
    patch.apply(model)
}

/// The shape of an image of `format` with a batch of 1 (the inverse of [`image_size`]).
fn image_shape(
    format: DataFormat,
    channels: usize,
    (height, width): (usize, usize),
) -> TVec<usize> {
    let mut shape: TVec<usize> = if format.has_n() { tvec![1] } else { tvec![] };
    if format.c_is_last() {
        shape.extend([height, width, channels]);
    } else {
        shape.extend([channels, height, width]);
    }
    shape
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
        replace_nodes(model, id, id, "own max pool", "max_pool_2x2", op)?;
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

    fn output_shape(&self, (height, width): (usize, usize)) -> TVec<usize> {
        let size = self.weights.output_size(height, width);
        image_shape(self.format, self.weights.channels, size)
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
        let (input, (_, height, width)) = image_input(
            "OwnDepthwise",
            self.format,
            Some(self.weights.channels),
            inputs,
        )?;
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
        let (_, height, width) = input_fact_size(
            "OwnDepthwise",
            self.format,
            Some(self.weights.channels),
            inputs,
        )?;
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

/// The activation our kernels fold that alone consumes `node`'s output, if there is one, and
/// the node whose output is its result. As tract declutters ONNX: a ReLU is `max(x, 0)`;
/// MobileNetV3's hard swish is `x * scale` and `clamp(x + shift, 0, cap)` (a `Max` and a `Min`,
/// in either order), multiplied.
fn activation_after(model: &TypedModel, node: &TypedNode) -> Option<(Activation, usize)> {
    let [output] = &node.outputs[..] else {
        return None;
    };
    let x = OutletId::new(node.id, 0);
    match &output.successors[..] {
        [next] => {
            let next = model.node(next.node);
            (binary_with_constant(model, next, x, "Max") == Some(0.0))
                .then_some((Activation::Relu, next.id))
        }
        [first, second] => {
            let (first, second) = (model.node(first.node), model.node(second.node));
            let (scaled, shifted) = if first.op().name() == "Mul" {
                (first, second)
            } else {
                (second, first)
            };
            let scale = binary_with_constant(model, scaled, x, "Mul")?;
            let shift = binary_with_constant(model, shifted, x, "Add")?;
            let clamp_a = sole_consumer(model, shifted)?;
            let clamp_b = sole_consumer(model, clamp_a)?;
            let bounds = |low: &TypedNode, high: &TypedNode, low_input, high_input| {
                let zero = binary_with_constant(model, low, low_input, "Max")?;
                let cap = binary_with_constant(model, high, high_input, "Min")?;
                (zero == 0.0 && cap >= 0.0).then_some(cap)
            };
            let (a_out, b_in) = (OutletId::new(clamp_a.id, 0), OutletId::new(shifted.id, 0));
            let cap = bounds(clamp_a, clamp_b, b_in, a_out)
                .or_else(|| bounds(clamp_b, clamp_a, a_out, b_in))?;
            let product = sole_consumer(model, clamp_b)?;
            let factors = [OutletId::new(scaled.id, 0), OutletId::new(clamp_b.id, 0)];
            let is_product = product.op().name() == "Mul"
                && product.inputs.len() == 2
                && factors.iter().all(|f| product.inputs.contains(f))
                && sole_consumer(model, scaled).map(|n| n.id) == Some(product.id);
            is_product.then_some((Activation::HardSwish { scale, shift, cap }, product.id))
        }
        _ => None,
    }
}

/// The constant of `node` if it is the binary operator `op` of `x` and a float32 constant of one
/// element.
fn binary_with_constant(
    model: &TypedModel,
    node: &TypedNode,
    x: OutletId,
    op: &str,
) -> Option<f32> {
    if node.op().name() != op || node.inputs.len() != 2 || !node.inputs.contains(&x) {
        return None;
    }
    let other = node.inputs.iter().find(|input| **input != x)?;
    let constant = model.outlet_fact(*other).ok()?.konst.clone()?;
    let view = constant.try_as_plain_ram().ok()?;
    match view.as_slice::<f32>().ok()? {
        [value] => Some(*value),
        _ => None,
    }
}

/// The only node that reads `node`'s only output.
fn sole_consumer<'m>(model: &'m TypedModel, node: &TypedNode) -> Option<&'m TypedNode> {
    match &node.outputs[..] {
        [output] => match &output.successors[..] {
            [next] => Some(model.node(next.node)),
            _ => None,
        },
        _ => None,
    }
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
        let relu = activation_after(model, node)
            .filter(|(activation, _)| *activation == Activation::Relu)
            .map(|(_, last)| last);
        let op = Conv3x3 {
            weights,
            dilation,
            relu: relu.is_some(),
        };
        replace_nodes(
            model,
            id,
            relu.unwrap_or(id),
            "own 3x3 convolution",
            "conv3x3",
            op,
        )?;
        replaced += 1;
    }
    Ok(replaced)
}

/// A float convolution node with a square kernel, one stride on both axes and no dilation, on an
/// image of known size, with constant weights and bias, as the passes of [`use_own_depthwise`]
/// and [`use_own_stems`] need it.
struct SquareConv<'m> {
    conv: &'m Conv,
    kernel: usize,
    stride: usize,
    /// (top, left, bottom, right), at the image's size.
    padding: [usize; 4],
    weights: Arc<Tensor>,
    /// One per output channel.
    bias: Vec<f32>,
}

fn square_conv<'m>(model: &'m TypedModel, node: &'m TypedNode) -> Option<SquareConv<'m>> {
    let conv = node.op_as::<Conv>()?;
    let spec = &conv.pool_spec;
    let kernel = spec.kernel_shape.first().copied().unwrap_or(0);
    let stride = spec.strides().first().copied().unwrap_or(0);
    let input_fact = model.outlet_fact(node.inputs[0]).ok()?;
    let suitable = conv.q_params.is_none()
        && spec.kernel_shape[..] == [kernel, kernel]
        && kernel > 0
        && stride > 0
        && spec.strides().iter().all(|&s| s == stride)
        && spec.dilations().iter().all(|&d| d == 1)
        && input_fact.datum_type == f32::datum_type();
    if !suitable {
        return None;
    }
    let shape = input_fact.shape.as_concrete()?;
    let (_, height, width) = image_size(spec.data_format, shape)?;
    Some(SquareConv {
        conv,
        kernel,
        stride,
        padding: padding_at_stride(conv, kernel, stride, (height, width))?,
        weights: constant_input(model, node, 1)?,
        bias: bias_of(model, node, spec.output_channels)?,
    })
}

/// Replaces every depthwise float convolution of stride 1 or 2 (any of tract's 2-D layouts with a
/// batch of at most 1, odd square kernel, dilation 1) by [`OwnDepthwise`], folding the
/// activation that follows it. Returns how many were replaced.
pub fn use_own_depthwise(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(SquareConv {
            conv,
            kernel,
            stride,
            padding,
            weights,
            bias,
        }) = square_conv(model, node)
        else {
            continue;
        };
        let spec = &conv.pool_spec;
        let channels = spec.input_channels;
        let suitable = conv.group == channels
            && spec.output_channels == channels
            && conv.kernel_fmt == KernelFormat::OIHW
            && kernel % 2 == 1
            && (stride == 1 || stride == 2);
        if !suitable {
            continue;
        }
        let weights = weights.try_as_plain_ram()?;
        let weights = weights.as_slice::<f32>()?;
        ensure!(weights.len() == channels * kernel * kernel);
        let (activation, last) = activation_after(model, node).unwrap_or((Activation::None, id));
        let op = OwnDepthwise {
            weights: Arc::new(
                DepthwiseWeights::new(weights, &bias, channels, kernel, stride, padding)
                    .with_activation(activation),
            ),
            format: spec.data_format,
        };
        replace_nodes(model, id, last, "own depthwise", "own_depthwise", op)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// Multiply-adds per task of a stem split between threads (its output rows): some 25 µs of its
/// kernel's work, 4 rows of the detector's 256 x 256 output.
const STEM_MACS_PER_TASK: usize = 1 << 19;

/// A dense convolution of an image with few input channels (a network's first layer) on our
/// kernel (`stem`), channels last in and out, batch 1, with its padding, bias and the activation
/// that follows it folded in.
#[derive(Debug, Clone)]
pub struct OwnStem {
    weights: Arc<StemWeights>,
    format: DataFormat,
}

impl PartialEq for OwnStem {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.weights, &other.weights) && self.format == other.format
    }
}

impl Eq for OwnStem {}

impl OwnStem {
    fn output_shape(&self, (height, width): (usize, usize)) -> TVec<usize> {
        let size = self.weights.output_size(height, width);
        image_shape(self.format, self.weights.out_channels, size)
    }
}

impl Op for OwnStem {
    fn name(&self) -> StaticName {
        "OwnStem".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let w = &self.weights;
        Ok(vec![format!(
            "{} -> {} channels, {:?}, {}x{} kernel, stride {}, padding {:?}, {:?}",
            w.in_channels,
            w.out_channels,
            self.format,
            w.kernel,
            w.kernel,
            w.stride,
            w.padding,
            w.activation
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for OwnStem {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (input, (_, height, width)) = image_input(
            "OwnStem",
            self.format,
            Some(self.weights.in_channels),
            inputs,
        )?;
        let w = &*self.weights;
        let (out_height, out_width) = w.output_size(height, width);
        // SAFETY: `convolve` writes every element of the rows it is given (its test starts from
        // NaN everywhere and checks every element), and the chunks cover every row.
        let mut output =
            unsafe { Tensor::uninitialized::<f32>(&self.output_shape((height, width)))? };
        {
            let view = input.try_as_plain_ram()?;
            let source = view.as_slice::<f32>()?;
            let mut out = output.try_as_plain_ram_mut()?;
            let row_len = out_width * w.out_channels;
            let macs_per_row = row_len * w.in_channels * w.kernel * w.kernel;
            let rows_per_task = (STEM_MACS_PER_TASK / macs_per_row.max(1)).max(1);
            for_each_chunk_mut(
                out.as_slice_mut::<f32>()?,
                rows_per_task * row_len,
                &|task, chunk| {
                    let first = task * rows_per_task;
                    let rows = first..(first + chunk.len() / row_len.max(1)).min(out_height);
                    stem::convolve(source, (height, width), w, rows, chunk);
                },
            );
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for OwnStem {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let (_, height, width) = input_fact_size(
            "OwnStem",
            self.format,
            Some(self.weights.in_channels),
            inputs,
        )?;
        Ok(tvec!(f32::fact(self.output_shape((height, width)))))
    }
}

/// Replaces every ungrouped float convolution of a channels-last image with at most
/// [`stem::MAX_IN_CHANNELS`] input channels (square kernel, the same stride on both axes, no
/// dilation) by [`OwnStem`], folding the activation that follows it. Returns how many were
/// replaced. Does nothing on a CPU without AVX-512 F.
pub fn use_own_stems(model: &mut TypedModel) -> TractResult<usize> {
    if !stem::supported() {
        return Ok(0);
    }
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(SquareConv {
            conv,
            kernel,
            stride,
            padding,
            weights,
            bias,
        }) = square_conv(model, node)
        else {
            continue;
        };
        let spec = &conv.pool_spec;
        let (channels, out_channels) = (spec.input_channels, spec.output_channels);
        let suitable =
            conv.group == 1 && channels <= stem::MAX_IN_CHANNELS && spec.data_format.c_is_last();
        if !suitable {
            continue;
        }
        let (c, o, k) = (channels, out_channels, kernel);
        // The weights' shape in their layout, and the strides of (out, in, row, column) in it.
        let (expected_shape, [so, si, sy, sx]) = match conv.kernel_fmt {
            KernelFormat::OIHW => ([o, c, k, k], [c * k * k, k * k, k, 1]),
            KernelFormat::HWIO => ([k, k, c, o], [1, o, k * c * o, c * o]),
            KernelFormat::OHWI => ([o, k, k, c], [k * k * c, 1, k * c, c]),
        };
        if weights.shape() != expected_shape {
            continue;
        }
        let view = weights.try_as_plain_ram()?;
        let values = view.as_slice::<f32>()?;
        let (activation, last) = activation_after(model, node).unwrap_or((Activation::None, id));
        let op = OwnStem {
            weights: Arc::new(StemWeights::new(
                |o, i, y, x| values[o * so + i * si + y * sy + x * sx],
                &bias,
                (c, o, k),
                stride,
                padding,
                activation,
            )),
            format: spec.data_format,
        };
        replace_nodes(model, id, last, "own stem", "own_stem", op)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// Replaces every matrix product that is a 1x1 convolution (an `EinSum` of an image with
/// constant weights, of the layouts [`Conv1x1::layouts`] lists) by [`Conv1x1`], folding the
/// bias `Add` and the activation that follow it. Returns how many were replaced. Does nothing on
/// a CPU without AVX-512 F.
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
        let Some((input_format, output_format, weights_have_outputs)) =
            Conv1x1::layouts(&einsum.axes.to_string())
        else {
            continue;
        };
        let input_fact = model.outlet_fact(node.inputs[0])?;
        let size = input_fact
            .shape
            .as_concrete()
            .and_then(|shape| image_size(input_format, shape));
        let Some(kernel) = constant_input(model, node, 1) else {
            continue;
        };
        let (out_channels, in_channels) = match (kernel.shape(), weights_have_outputs) {
            (&[o, i], true) => (o, i),
            (&[i], false) => (1, i),
            _ => continue,
        };
        if einsum.q_params.is_some()
            || einsum.operating_dt != f32::datum_type()
            || input_fact.datum_type != f32::datum_type()
            || node.inputs.len() != 2
            || size.map(|(channels, _, _)| channels) != Some(in_channels)
        {
            continue;
        }
        // The bias: the product's only consumer adding a constant per output channel.
        let bias_add = sole_consumer(model, node).and_then(|next| {
            let constant = next
                .inputs
                .iter()
                .find(|input| input.node != id)
                .and_then(|input| model.outlet_fact(*input).ok()?.konst.clone())?;
            let values = bias_values(&constant, output_format, out_channels)?;
            (next.op().name() == "Add" && next.inputs.len() == 2).then_some((next.id, values))
        });
        let (last, bias) = bias_add.unwrap_or((id, vec![0.0; out_channels]));
        let (activation, last) =
            activation_after(model, model.node(last)).unwrap_or((Activation::None, last));
        let kernel = kernel.try_as_plain_ram()?;
        let op = Conv1x1 {
            weights: Arc::new(conv1x1::PackedWeights::new(
                kernel.as_slice::<f32>()?,
                &bias,
                out_channels,
                in_channels,
            )),
            input: input_format,
            output: output_format,
            activation,
        };
        replace_nodes(model, id, last, "own 1x1 convolution", "conv1x1", op)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// One bias per output channel from a constant added to a 1x1 convolution's output of
/// `format`, if it is one: a constant that broadcasts along every axis but the channels', with
/// one value per channel or one for all.
fn bias_values(constant: &Tensor, format: DataFormat, channels: usize) -> Option<Vec<f32>> {
    let view = constant.try_as_plain_ram().ok()?;
    let values = view.as_slice::<f32>().ok()?;
    let rank = image_shape(format, channels, (1, 1)).len();
    let channel_axis = if format.c_is_last() {
        rank - 1
    } else {
        rank - 3
    };
    let shape = constant.shape();
    let leading = rank.checked_sub(shape.len())?;
    let broadcasts = shape
        .iter()
        .enumerate()
        .all(|(axis, &dim)| dim == 1 || (axis + leading == channel_axis && dim == channels));
    match values.len() {
        _ if !broadcasts => None,
        1 => Some(vec![values[0]; channels]),
        n if n == channels => Some(values.to_vec()),
        _ => None,
    }
}

/// Output values per task of the plane operations split between threads ([`Upsample2x`],
/// [`TrailingSum`]'s input, [`OwnConcat`]): 256 KiB, a few tens of microseconds of copying.
const PLANE_VALUES_PER_TASK: usize = 1 << 16;

/// A 2x linear upsampling of an NCHW image with a batch of 1 (ONNX `Resize` with
/// `mode = linear`, `asymmetric` coordinates and scales [1, 1, 2, 2]), on our kernel
/// (`planes`), its planes split between threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upsample2x;

impl Op for Upsample2x {
    fn name(&self) -> StaticName {
        "Upsample2x".into()
    }

    op_as_typed_op!();
}

impl EvalOp for Upsample2x {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (input, (channels, height, width)) =
            image_input("Upsample2x", DataFormat::NCHW, None, inputs)?;
        ensure!(height > 0 && width > 0, "Upsample2x of an empty image");
        let shape = image_shape(DataFormat::NCHW, channels, (2 * height, 2 * width));
        // SAFETY: `upsample_2x_linear` writes every element of its output (its test checks it).
        let mut output = unsafe { Tensor::uninitialized::<f32>(&shape)? };
        {
            let view = input.try_as_plain_ram()?;
            let source = view.as_slice::<f32>()?;
            let mut out = output.try_as_plain_ram_mut()?;
            let (area, out_area) = (height * width, 4 * height * width);
            let planes_per_task = (PLANE_VALUES_PER_TASK / out_area).max(1);
            for_each_chunk_mut(
                out.as_slice_mut::<f32>()?,
                planes_per_task * out_area,
                &|task, chunk| {
                    let first = task * planes_per_task * area;
                    let planes_in = &source[first..][..chunk.len() / 4];
                    planes::upsample_2x_linear(planes_in, height, width, chunk);
                },
            );
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for Upsample2x {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let (channels, height, width) =
            input_fact_size("Upsample2x", DataFormat::NCHW, None, inputs)?;
        let shape = image_shape(DataFormat::NCHW, channels, (2 * height, 2 * width));
        Ok(tvec!(f32::fact(shape)))
    }
}

/// Replaces every float `Resize` that doubles the height and width of an NCHW image with a
/// batch of 1 by linear interpolation with `asymmetric` coordinates by [`Upsample2x`]. Returns
/// how many were replaced.
pub fn use_own_upsampling(model: &mut TypedModel) -> TractResult<usize> {
    use tract_onnx::tract_core::ops::nn::{CoordTransformer, Interpolator, Resize};
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(resize) = node.op_as::<Resize>() else {
            continue;
        };
        let doubling = resize
            .optional_scales_input
            .and_then(|slot| constant_input(model, node, slot))
            .and_then(|scales| {
                let scales = scales.cast_to::<f32>().ok()?;
                let view = scales.try_as_plain_ram().ok()?;
                Some(view.as_slice::<f32>().ok()? == [1.0, 1.0, 2.0, 2.0])
            })
            .unwrap_or(false);
        let input_fact = model.outlet_fact(node.inputs[0])?;
        let suitable = doubling
            && resize.optional_sizes_input.is_none()
            && matches!(resize.interpolator, Interpolator::Linear)
            && matches!(resize.coord_transformer, CoordTransformer::Asymmetric)
            && input_fact.datum_type == f32::datum_type()
            && input_fact
                .shape
                .as_concrete()
                .and_then(|shape| image_size(DataFormat::NCHW, shape))
                .is_some_and(|(_, height, width)| height > 0 && width > 0);
        if !suitable {
            continue;
        }
        replace_nodes(model, id, id, "own upsampling", "upsample_2x", Upsample2x)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// A float sum over the trailing axes from `first_axis` (each kept, of length 1), as tract
/// declutters a global mean over an image's planes: our kernel (`planes`), the planes split
/// between threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailingSum {
    first_axis: usize,
}

impl TrailingSum {
    fn output_shape<D: Clone + From<usize>>(&self, shape: &[D]) -> TVec<D> {
        (0..shape.len())
            .map(|axis| {
                if axis < self.first_axis {
                    shape[axis].clone()
                } else {
                    1.into()
                }
            })
            .collect()
    }
}

impl Op for TrailingSum {
    fn name(&self) -> StaticName {
        "TrailingSum".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("axes from {}", self.first_axis)])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for TrailingSum {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let shape = input.shape();
        ensure!(
            self.first_axis < shape.len(),
            "TrailingSum from axis {} of {shape:?}",
            self.first_axis
        );
        let block: usize = shape[self.first_axis..].iter().product();
        // SAFETY: `sum_blocks` writes every element of its output.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&self.output_shape(shape))? };
        {
            let view = input.try_as_plain_ram()?;
            let source = view.as_slice::<f32>()?;
            let mut out = output.try_as_plain_ram_mut()?;
            let sums_per_task = (PLANE_VALUES_PER_TASK / block.max(1)).max(1);
            for_each_chunk_mut(out.as_slice_mut::<f32>()?, sums_per_task, &|task, sums| {
                let first = task * sums_per_task * block;
                planes::sum_blocks(&source[first..][..sums.len() * block], sums);
            });
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for TrailingSum {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        ensure!(self.first_axis < shape.len() && inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(f32::fact(self.output_shape(&shape))))
    }
}

/// Replaces every float `Reduce<Sum>` over the trailing axes of its input (a concrete shape) by
/// [`TrailingSum`]. Returns how many were replaced.
pub fn use_own_trailing_sums(model: &mut TypedModel) -> TractResult<usize> {
    use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(reduce) = node.op_as::<Reduce>() else {
            continue;
        };
        let input_fact = model.outlet_fact(node.inputs[0])?;
        let rank = input_fact.rank();
        let mut axes = reduce.axes.to_vec();
        axes.sort_unstable();
        let first_axis = rank.saturating_sub(axes.len());
        if !matches!(reduce.reducer, Reducer::Sum)
            || input_fact.datum_type != f32::datum_type()
            || input_fact.shape.as_concrete().is_none()
            || axes.is_empty()
            || axes != (first_axis..rank).collect::<Vec<_>>()
        {
            continue;
        }
        let op = TrailingSum { first_axis };
        replace_nodes(model, id, id, "own trailing sum", "trailing_sum", op)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// A float concatenation along `axis` where every axis before it has length 1 (the channels of an
/// NCHW image with a batch of 1): the inputs' values one after the other, copied by several
/// threads (tract's `Concat` copies on one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnConcat {
    axis: usize,
}

impl OwnConcat {
    /// The output shape, if the inputs can be concatenated by copying them one after the other.
    fn output_shape(&self, shapes: &[&[usize]]) -> Option<TVec<usize>> {
        let first = shapes.first()?;
        let fits = |shape: &&[usize]| {
            shape.len() == first.len()
                && self.axis < shape.len()
                && shape[..self.axis].iter().all(|&d| d == 1)
                && shape[self.axis + 1..] == first[self.axis + 1..]
        };
        if !shapes.iter().all(fits) {
            return None;
        }
        let mut shape: TVec<usize> = first.iter().copied().collect();
        shape[self.axis] = shapes.iter().map(|s| s[self.axis]).sum();
        Some(shape)
    }
}

impl Op for OwnConcat {
    fn name(&self) -> StaticName {
        "OwnConcat".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("axis {}", self.axis)])
    }

    op_as_typed_op!();
}

impl EvalOp for OwnConcat {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|i| i.shape()).collect();
        let shape = self
            .output_shape(&shapes)
            .with_context(|| format!("OwnConcat on axis {} of {shapes:?}", self.axis))?;
        let views = inputs
            .iter()
            .map(|i| i.try_as_plain_ram())
            .collect::<TractResult<Vec<_>>>()?;
        let sources = views
            .iter()
            .map(|v| v.as_slice::<f32>())
            .collect::<TractResult<Vec<_>>>()?;
        // SAFETY: the chunks cover the output, and each is written whole from the inputs,
        // whose lengths add up to the output's (`output_shape`).
        let mut output = unsafe { Tensor::uninitialized::<f32>(&shape)? };
        {
            let mut out = output.try_as_plain_ram_mut()?;
            for_each_chunk_mut(
                out.as_slice_mut::<f32>()?,
                PLANE_VALUES_PER_TASK,
                &|task, chunk| {
                    copy_from_concatenation(&sources, task * PLANE_VALUES_PER_TASK, chunk)
                },
            );
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

/// Fills `out` with the values from `start` of the concatenation of `sources`.
fn copy_from_concatenation(sources: &[&[f32]], start: usize, out: &mut [f32]) {
    let (mut offset, mut written) = (0, 0);
    for source in sources {
        let (from, to) = (offset, offset + source.len());
        offset = to;
        let begin = (start + written).max(from);
        if begin >= to {
            continue;
        }
        let count = (to - begin).min(out.len() - written);
        out[written..written + count].copy_from_slice(&source[begin - from..][..count]);
        written += count;
        if written == out.len() {
            return;
        }
    }
}

impl TypedOp for OwnConcat {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shapes = inputs
            .iter()
            .map(|i| {
                i.shape
                    .as_concrete()
                    .context("OwnConcat needs concrete shapes")
            })
            .collect::<TractResult<Vec<_>>>()?;
        let shape = self
            .output_shape(&shapes)
            .with_context(|| format!("OwnConcat on axis {} of {shapes:?}", self.axis))?;
        ensure!(inputs.iter().all(|i| i.datum_type == f32::datum_type()));
        Ok(tvec!(f32::fact(shape)))
    }
}

/// Replaces every float concatenation of two or more inputs of concrete shapes along an axis
/// with only axes of length 1 before it by [`OwnConcat`]. Returns how many were replaced.
pub fn use_own_concats(model: &mut TypedModel) -> TractResult<usize> {
    use tract_onnx::tract_core::ops::array::TypedConcat;
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(concat) = node.op_as::<TypedConcat>() else {
            continue;
        };
        let op = OwnConcat { axis: concat.axis };
        let facts = node
            .inputs
            .iter()
            .map(|i| model.outlet_fact(*i))
            .collect::<TractResult<Vec<_>>>()?;
        let shapes: Option<Vec<&[usize]>> = facts.iter().map(|f| f.shape.as_concrete()).collect();
        let suitable = node.inputs.len() >= 2
            && facts.iter().all(|f| f.datum_type == f32::datum_type())
            && shapes.is_some_and(|shapes| op.output_shape(&shapes).is_some());
        if !suitable {
            continue;
        }
        let name = node.name.clone();
        let mut patch = TypedModelPatch::new(format!("own concat {name}"));
        let taps = node
            .inputs
            .iter()
            .map(|input| patch.tap_model(model, *input))
            .collect::<TractResult<TVec<_>>>()?;
        let wire = patch.wire_node(format!("{name}.own_concat"), op, &taps)?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), wire)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::einsum::EinSum;
    use tract_onnx::tract_core::ops::math;

    /// Values in [-5, 5]: around the hard swish's bends at -3 and 3.
    fn pseudo_random(count: usize, seed: &mut u32) -> Vec<f32> {
        let values = super::super::pseudo_random(count, seed);
        values.into_iter().map(|v| 5.0 * v).collect()
    }

    fn constant(model: &mut TypedModel, name: &str, shape: &[usize], values: &[f32]) -> OutletId {
        model
            .add_const(name, Tensor::from_shape(shape, values).unwrap())
            .unwrap()
    }

    /// A 1x1 convolution as tract declutters it (an `EinSum` of `axes`), its bias added, then
    /// the detector's hard swish: `x * scale` times `min(max(x + 3, 0), 6)`.
    fn pointwise_with_hard_swish(
        axes: &str,
        input_shape: &[usize],
        kernel_shape: &[usize],
        bias_shape: &[usize],
        seed: &mut u32,
    ) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(input_shape)).unwrap();
        let kernel_len = kernel_shape.iter().product();
        let kernel = constant(
            &mut model,
            "w",
            kernel_shape,
            &pseudo_random(kernel_len, seed),
        );
        let einsum = EinSum::new(axes.parse().unwrap(), f32::datum_type());
        let product = model.wire_node("product", einsum, &[x, kernel]).unwrap()[0];
        let bias_len = bias_shape.iter().product();
        let bias = constant(&mut model, "b", bias_shape, &pseudo_random(bias_len, seed));
        let sum = model
            .wire_node("bias", math::add(), &[product, bias])
            .unwrap()[0];
        let rank = model.outlet_fact(sum).unwrap().rank();
        let ones = vec![1; rank];
        let mut scalar = |name: &str, value: f32| constant(&mut model, name, &ones, &[value]);
        let (scale, shift, zero, cap) = (
            scalar("scale", 0.166_625_98),
            scalar("shift", 3.0),
            scalar("zero", 0.0),
            scalar("cap", 6.0),
        );
        let scaled = model
            .wire_node("scaled", math::mul(), &[sum, scale])
            .unwrap()[0];
        let shifted = model
            .wire_node("shifted", math::add(), &[sum, shift])
            .unwrap()[0];
        let low = model
            .wire_node("low", math::max(), &[shifted, zero])
            .unwrap()[0];
        let gate = model.wire_node("gate", math::min(), &[low, cap]).unwrap()[0];
        let out = model
            .wire_node("out", math::mul(), &[scaled, gate])
            .unwrap()[0];
        model.select_output_outlets(&[out]).unwrap();
        model
    }

    fn run(model: &TypedModel, input: &Tensor) -> Tensor {
        let plan = model.clone().into_runnable().unwrap();
        plan.run(tvec!(input.clone().into()))
            .unwrap()
            .remove(0)
            .into_tensor()
    }

    /// Each layout the detector's graph holds, with a bias of one value per channel or one for
    /// all: replaced by one `Conv1x1` (bias and hard swish folded) computing what tract does.
    #[test]
    fn pointwise_products_become_conv1x1_with_bias_and_hard_swish() {
        if !conv1x1::supported() {
            eprintln!("skipped: this CPU has no AVX-512, and the pass leaves the graph alone");
            return;
        }
        let mut seed = 11;
        for (axes, input_shape, kernel_shape, bias_shape) in [
            (
                "NIHW,OI->NHWO",
                &[1, 20, 9, 11][..],
                &[4, 20][..],
                &[1, 1, 1, 4][..],
            ),
            ("NIHW,I->NHWO", &[1, 20, 9, 11], &[20], &[1, 1, 1, 1]),
            ("NHWI,OI->NHWO", &[1, 9, 11, 16], &[16, 16], &[1, 1, 1, 16]),
            ("NHWI,OI->OHW", &[1, 9, 11, 16], &[24, 16], &[24, 1, 1]),
            ("NIHW,OI->NOHW", &[1, 20, 9, 11], &[12, 20], &[1, 12, 1, 1]),
            ("IHW,OI->OHW", &[20, 9, 11], &[12, 20], &[1, 1, 1]),
        ] {
            let original =
                pointwise_with_hard_swish(axes, input_shape, kernel_shape, bias_shape, &mut seed);
            let mut rewritten = original.clone();
            assert_eq!(use_own_pointwise(&mut rewritten).unwrap(), 1, "{axes}");
            let ops: Vec<String> = rewritten
                .eval_order()
                .unwrap()
                .into_iter()
                .map(|id| rewritten.node(id).op().name().to_string())
                .filter(|name| name != "Const")
                .collect();
            assert_eq!(
                ops,
                ["Source", "Conv1x1"],
                "{axes}: bias and hard swish folded"
            );

            let input_len = input_shape.iter().product();
            let input =
                Tensor::from_shape(input_shape, &pseudo_random(input_len, &mut seed)).unwrap();
            let (expected, found) = (run(&original, &input), run(&rewritten, &input));
            assert_eq!(expected.shape(), found.shape(), "{axes}");
            let expected = expected.try_as_plain_ram().unwrap();
            let found = found.try_as_plain_ram().unwrap();
            let pairs = expected
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .zip(found.as_slice::<f32>().unwrap());
            for (i, (e, f)) in pairs.enumerate() {
                assert!(
                    (e - f).abs() <= 1e-3 * e.abs().max(1.0),
                    "{axes} #{i}: tract {e}, ours {f}"
                );
            }
        }
    }

    /// A product whose result another node also reads keeps tract's activation nodes: folding
    /// would change what that node sees.
    #[test]
    fn an_activation_is_not_folded_when_its_input_is_read_elsewhere() {
        if !conv1x1::supported() {
            return;
        }
        let mut seed = 5;
        let mut model =
            pointwise_with_hard_swish("IHW,OI->OHW", &[8, 3, 3], &[8, 8], &[8, 1, 1], &mut seed);
        let bias = model.node_by_name("bias").unwrap().id;
        let extra = model
            .wire_node(
                "extra",
                math::add(),
                &[OutletId::new(bias, 0), OutletId::new(bias, 0)],
            )
            .unwrap()[0];
        let out = model.output_outlets().unwrap()[0];
        model.select_output_outlets(&[out, extra]).unwrap();
        assert_eq!(use_own_pointwise(&mut model).unwrap(), 1);
        let conv = model.node_by_name("product.conv1x1").unwrap();
        let op = conv.op_as::<Conv1x1>().unwrap();
        assert_eq!(op.activation, Activation::None);
        assert!(model.node_by_name("gate").is_ok(), "the hard swish stays");
    }
    /// A global sum over each plane and a channel concatenation, as tract declutters them, on
    /// our operators compute what tract's do; a sum over a leading axis and a concatenation
    /// along the width are left to tract.
    #[test]
    fn plane_sums_and_channel_concats_compute_what_tracts_do() {
        use tract_onnx::tract_core::ops::array::TypedConcat;
        use tract_onnx::tract_core::ops::nn::{Reduce, Reducer};
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 6, 9, 11])).unwrap();
        let y = model.add_source("y", f32::fact([1, 2, 9, 11])).unwrap();
        let sum = |axes: &[usize]| Reduce {
            axes: axes.into(),
            reducer: Reducer::Sum,
        };
        let planes = model.wire_node("planes", sum(&[2, 3]), &[x]).unwrap()[0];
        let leading = model.wire_node("leading", sum(&[1]), &[x]).unwrap()[0];
        let channels = model
            .wire_node("channels", TypedConcat { axis: 1 }, &[x, y])
            .unwrap()[0];
        let widths = model
            .wire_node("widths", TypedConcat { axis: 3 }, &[x, x])
            .unwrap()[0];
        model
            .select_output_outlets(&[planes, leading, channels, widths])
            .unwrap();
        let mut ours = model.clone();
        assert_eq!(use_own_trailing_sums(&mut ours).unwrap(), 1);
        assert_eq!(use_own_concats(&mut ours).unwrap(), 1);
        let names: Vec<String> = ours
            .nodes()
            .iter()
            .map(|n| n.op().name().to_string())
            .collect();
        assert!(names.iter().any(|n| n == "TrailingSum") && names.iter().any(|n| n == "OwnConcat"));

        let mut seed = 17;
        let inputs: TVec<TValue> = [[1, 6, 9, 11], [1, 2, 9, 11]]
            .iter()
            .map(|shape| {
                let values = pseudo_random(shape.iter().product(), &mut seed);
                Tensor::from_shape(shape, &values).unwrap().into()
            })
            .collect();
        let run = |model: TypedModel| model.into_runnable().unwrap().run(inputs.clone()).unwrap();
        let (expected, found) = (run(model), run(ours));
        for (output, (e, f)) in expected.iter().zip(&found).enumerate() {
            assert_eq!(e.shape(), f.shape(), "output {output}");
            let (e, f) = (e.try_as_plain_ram().unwrap(), f.try_as_plain_ram().unwrap());
            let pairs = e
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .zip(f.as_slice::<f32>().unwrap());
            for (i, (e, f)) in pairs.enumerate() {
                assert!(
                    (e - f).abs() <= 1e-4,
                    "output {output} #{i}: tract {e}, ours {f}"
                );
            }
        }
    }

    /// Every stretch of the concatenation, empty sources included, is copied from the right
    /// places: the threads' chunks of [`OwnConcat`] start anywhere.
    #[test]
    fn any_stretch_of_a_concatenation_is_copied_whole() {
        let sources: [&[f32]; 4] = [
            &[0.0, 1.0, 2.0, 3.0, 4.0],
            &[],
            &[5.0, 6.0],
            &[7.0, 8.0, 9.0],
        ];
        let whole: Vec<f32> = (0..10).map(|v| v as f32).collect();
        for start in 0..whole.len() {
            for end in start + 1..=whole.len() {
                let mut out = vec![f32::NAN; end - start];
                copy_from_concatenation(&sources, start, &mut out);
                assert_eq!(out, whole[start..end], "{start}..{end}");
            }
        }
    }
}
