//! Our kernels inside the real models, against tract's own operators on the same inputs: CSRNet
//! with our 3x3 convolutions (each kind of products this CPU runs) and max poolings, CenterNet
//! with our depthwise and 1x1 convolutions (float32), upsamplings, sums and concatenations.
//! (The detector's boxes are also checked against the published graph in person_only_graph.rs.)

use std::path::{Path, PathBuf};

use clap::Parser;
use image_predict::configuration::ModelConfig;
use image_predict::model::centernet::CenterNet;
use image_predict::model::csrnet::{CsrNet, DensitySettings};
use image_predict::model::{Kernels, Products};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dev_photo(name: &str) -> image::RgbImage {
    let dir = std::env::var_os("CROWD_EVALSET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/evalset/dev"));
    image::open(dir.join(name))
        .expect("the dev photos beside the project")
        .to_rgb8()
}

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    model: ModelConfig,
}

fn defaults() -> ModelConfig {
    Defaults::parse_from(["test"]).model
}

fn density_model(kernels: Kernels, products: Option<Products>) -> CsrNet {
    let settings = DensitySettings {
        kernels,
        products,
        ..defaults().density_settings()
    };
    CsrNet::load(&repo_root().join("models/csrnet/csrnet.onnx"), settings).unwrap()
}

/// The dense dev photos through the density path (tiles at their own resolution) on both
/// kernels: counts within 1 %, and every cell within a small fraction of the map's peak.
/// bfloat16 keeps 8 significant bits of each product's operands; the sums stay float32.
/// Each kind of products this CPU runs, forced as `--conv3x3-products` forces it.
#[test]
fn csrnet_on_our_3x3_convolutions_counts_as_on_tracts() {
    let tract = density_model(Kernels::Tract, None);
    assert!(!tract.own_kernels());
    let runnable: Vec<Products> = [Products::Bf16, Products::F32]
        .into_iter()
        .filter(|p| p.supported())
        .collect();
    if runnable.is_empty() {
        eprintln!("skipped: this CPU has no AVX-512; the service uses tract's kernels on it");
        let own = density_model(Kernels::Own, None);
        assert!(!own.own_kernels(), "tract's kernels where ours cannot run");
        return;
    }
    for products in runnable {
        let own = density_model(Kernels::Own, Some(products));
        assert_eq!(own.products(), Some(products));
        counts_as_tract(&own, &tract, products);
    }
}

fn counts_as_tract(own: &CsrNet, tract: &CsrNet, products: Products) {
    for name in ["shta_167.jpg", "shta_004.jpg"] {
        let photo = dev_photo(name);
        let ours = own.density(&photo).unwrap();
        let theirs = tract.density(&photo).unwrap();
        assert_eq!(
            (ours.map.columns, ours.map.rows),
            (theirs.map.columns, theirs.map.rows)
        );
        assert!(ours.tiles > 1, "{name} is counted in tiles");
        let relative = (ours.count - theirs.count).abs() / theirs.count;
        assert!(
            relative < 0.01,
            "{name}: {} people on our kernels ({products:?}), {} on tract's",
            ours.count,
            theirs.count
        );
        let peak = theirs.map.values.iter().copied().fold(0.0f32, f32::max);
        let worst = ours
            .map
            .values
            .iter()
            .zip(&theirs.map.values)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 0.05 * peak,
            "{name} ({products:?}): a cell differs by {worst} (peak {peak})"
        );
        eprintln!(
            "{name}: {:.1} (ours, {products:?}) against {:.1} (tract), worst cell {worst:.4} of peak {peak:.4}",
            ours.count, theirs.count
        );
    }
}

/// The detector with our depthwise, 1x1 and first-layer convolutions, upsamplings, sums and
/// concatenations (float32, only the order of the sums differs) finds the same people with the same scores as with tract's.
#[test]
fn centernet_on_our_depthwise_finds_the_same_people() {
    let path = repo_root().join("models/centernet/centernet.onnx");
    if image_predict::model::kernels::stem::supported() {
        let (graph, _) = CenterNet::optimised_graph(&path, Kernels::Own).unwrap();
        let count = |op: &str| graph.nodes().iter().filter(|n| n.op().name() == op).count();
        assert_eq!(count("OwnStem"), 1, "the first convolution on our kernel");
        assert!(count("Conv1x1") > 40 && count("OwnDepthwise") > 20);
    }
    // Upsamplings, global sums and channel concatenations take ours on any CPU.
    let (graph, _) = CenterNet::optimised_graph(&path, Kernels::Own).unwrap();
    let count = |op: &str| graph.nodes().iter().filter(|n| n.op().name() == op).count();
    assert_eq!(
        count("Upsample2x"),
        3,
        "the three upsamplings on our kernel"
    );
    assert_eq!(count("Resize"), 0);
    assert_eq!(
        count("TrailingSum"),
        9,
        "the nine global means' sums on our kernel"
    );
    assert_eq!(
        count("OwnConcat"),
        3,
        "the head's three channel concatenations"
    );
    assert_eq!(count("Concat"), 0, "no concatenation left on tract's");
    let settings = |kernels| image_predict::model::centernet::DetectorSettings {
        kernels,
        ..defaults().detector_settings()
    };
    let own = CenterNet::load(&path, settings(Kernels::Own)).unwrap();
    let tract = CenterNet::load(&path, settings(Kernels::Tract)).unwrap();
    for name in ["shtb_train_17.jpg", "shta_167.jpg"] {
        let input = own.first_tile_input(&dev_photo(name));
        let ours = own.tile_boxes(input.clone()).unwrap();
        let theirs = tract.tile_boxes(input).unwrap();
        assert_eq!(ours.len(), theirs.len(), "{name}: as many people");
        assert!(!ours.is_empty());
        for (a, b) in ours.iter().zip(&theirs) {
            let close = [(a.0, b.0), (a.1, b.1), (a.2, b.2), (a.3, b.3)]
                .iter()
                .all(|(p, q)| (p - q).abs() < 0.01)
                && (a.4 - b.4).abs() < 1e-4;
            assert!(close, "{name}: ours {a:?}, tract's {b:?}");
        }
    }
}
