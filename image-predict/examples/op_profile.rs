//! Where a model's time goes in tract: runs the optimised graph that image-predict runs (or the
//! detector's graph as published) and prints the time per operator kind and the slowest nodes
//! (medians over the runs). One thread unless `THREADS=N` gives the parallel loops of tract and of
//! our kernels N threads, as image-predict's inference workers do when they run alone.
//!
//! ```sh
//! cargo run --release -p image-predict --example op_profile -- centernet [RUNS] [own|tract]
//! cargo run --release -p image-predict --example op_profile -- centernet-published [RUNS]
//! cargo run --release -p image-predict --example op_profile -- csrnet [RUNS] [WxH] [own|tract]
//! ```
//!
//! CSRNet's default size is 576x768, the tile a 1024x768 photo is counted in; `tract` profiles
//! it on tract's kernels only (without ours).
//!
//! tract has a profiler in its command-line tool; this example profiles the graph exactly as
//! the service builds it (same pruning, same input shape), which the command line cannot.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use clap::Parser;
use image_predict::configuration::ModelConfig;
use image_predict::model::centernet::{CenterNet, INPUT_SIDE};
use image_predict::model::csrnet::{CsrNet, DensitySettings, Kernels};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::SimpleState;
use tract_onnx::tract_core::plan::eval as eval_node;

/// The service's model settings with their defaults.
#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    model: ModelConfig,
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let threads: usize = std::env::var("THREADS").map_or(Ok(1), |t| t.parse())?;
    if threads > 1 {
        tract_linalg::multithread::set_default_executor(
            tract_linalg::multithread::Executor::multithread(threads),
        );
    }
    let which = args.next().unwrap_or_else(|| "centernet".into());
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(10);
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let detector = models.join("centernet/centernet.onnx");
    let side = INPUT_SIDE as usize;
    let (plan, input_shape) = match which.as_str() {
        "centernet" => {
            let kernels = match args.next().as_deref() {
                None | Some("own") => Kernels::Own,
                Some("tract") => Kernels::Tract,
                Some(other) => anyhow::bail!("kernels {other}: own or tract"),
            };
            let (graph, shape) = CenterNet::optimised_graph(&detector, kernels)?;
            (graph.into_runnable()?, shape)
        }
        "centernet-published" => (
            CenterNet::published_graph(&detector)?,
            vec![1, side, side, 3],
        ),
        "csrnet" => {
            let size = args.next().unwrap_or_else(|| "576x768".into());
            let (width, height) = size
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
                .ok_or_else(|| anyhow::anyhow!("size {size}: expected WIDTHxHEIGHT"))?;
            let kernels = match args.next().as_deref() {
                None | Some("own") => Kernels::Own,
                Some("tract") => Kernels::Tract,
                Some(other) => anyhow::bail!("kernels {other}: own or tract"),
            };
            let settings = DensitySettings {
                kernels,
                ..Defaults::parse_from(["op_profile"])
                    .model
                    .density_settings()
            };
            let model = CsrNet::load(&models.join("csrnet/csrnet.onnx"), settings)?;
            // CONV3X3_PRODUCTS=bf16|f32 forces them, as in the service.
            println!("3x3 convolution products: {:?}", model.products());
            let shape = vec![1, 3, height as usize, width as usize];
            (
                model.optimised_graph(width, height)?.into_runnable()?,
                shape,
            )
        }
        other => anyhow::bail!("unknown model {other}: centernet, centernet-published or csrnet"),
    };
    // A fixed pseudo-random input in the range of pixel values: timings do not depend on it,
    // but a constant input could let data-dependent operators (TopK) take shortcuts.
    let mut seed = 0x2545_f491_u32;
    let values: Vec<f32> = (0..input_shape.iter().product::<usize>())
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed % 256) as f32
        })
        .collect();
    let input = Tensor::from_shape(&input_shape, &values)?;

    let mut per_node: Vec<Vec<f64>> = vec![Vec::new(); plan.model().nodes().len()];
    let mut totals = Vec::new();
    for run in 0..=runs {
        let mut state = SimpleState::new(&plan)?;
        let started = Instant::now();
        state.run_plan_with_eval(
            tvec!(input.clone().into()),
            |ctx, op_state, node, inputs| {
                let started = Instant::now();
                let outputs = eval_node(ctx, op_state, node, inputs);
                // Run 0 warms caches and is not recorded.
                if run > 0 {
                    per_node[node.id].push(started.elapsed().as_secs_f64() * 1e3);
                }
                outputs
            },
        )?;
        if run > 0 {
            totals.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }

    let median = |times: &[f64]| {
        let mut sorted = times.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
    };
    let total = median(&totals);
    println!(
        "{which}, input {input_shape:?}, {threads} thread(s): {total:.1} ms per run (median of {runs})"
    );
    let mut by_kind: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let mut nodes = Vec::new();
    for node in plan.model().nodes() {
        let time = median(&per_node[node.id]);
        let kind = by_kind.entry(node.op().name().to_string()).or_default();
        kind.0 += time;
        kind.1 += 1;
        nodes.push((time, node.id));
    }
    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    println!(
        "\n{:<28} {:>6} {:>9} {:>6}",
        "operator", "nodes", "ms", "share"
    );
    for (kind, (time, count)) in kinds {
        println!(
            "{kind:<28} {count:>6} {time:>9.2} {:>5.1}%",
            100.0 * time / total
        );
    }
    nodes.sort_by(|a, b| b.0.total_cmp(&a.0));
    // NODES=N lists the N slowest nodes (20 unless set).
    let listed: usize = std::env::var("NODES").map_or(Ok(20), |n| n.parse())?;
    println!("\nslowest nodes:");
    for (time, id) in nodes.into_iter().take(listed) {
        let node = plan.model().node(id);
        let shape = &plan.model().outlet_fact(OutletId::new(id, 0))?.shape;
        println!(
            "{time:>8.2} ms  {:<24} {shape:?}  {}  [{}]",
            node.op().name(),
            node.name,
            node.op().info()?.join("; ")
        );
    }
    Ok(())
}
