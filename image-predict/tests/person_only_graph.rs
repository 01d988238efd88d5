//! The detector runs a graph cut to the person class, decoded by our code instead of the
//! published graph's own tail (max-pool, sort of all 80 classes, gather). On real tiles, the
//! boxes must be those of the published graph: the same people, the same boxes and scores.

use std::path::{Path, PathBuf};

use image_predict::model::calibration;
use image_predict::model::centernet::{CenterNet, DetectorSettings, TileBox};
use tract_onnx::prelude::*;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A dev-set photo (`../shared/evalset/dev`, or `$CROWD_EVALSET_DIR`), decoded.
fn dev_photo(name: &str) -> image::RgbImage {
    let dir = std::env::var_os("CROWD_EVALSET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/evalset/dev"));
    image::open(dir.join(name))
        .expect("the dev photos beside the project")
        .to_rgb8()
}

/// Person rows of the published graph's `detections` output at or above the threshold, in its
/// order (best score first).
fn published_person_boxes(
    model: &Arc<TypedRunnableModel>,
    input: Tensor,
    threshold: f32,
) -> Vec<TileBox> {
    let outputs = model.run(tvec!(input.into())).unwrap();
    let rows = outputs[0].try_as_plain_ram().unwrap();
    rows.as_slice::<f32>()
        .unwrap()
        .chunks_exact(6)
        .filter(|d| d[5] == 0.0 && d[4] >= threshold)
        .map(|d| (d[0], d[1], d[2], d[3], d[4]))
        .collect()
}

fn assert_same_boxes(photo: &str, published: &[TileBox], ours: &[TileBox]) {
    for (i, (a, b)) in published.iter().zip(ours).enumerate() {
        let close = [(a.0, b.0), (a.1, b.1), (a.2, b.2), (a.3, b.3)]
            .iter()
            .all(|(p, q)| (p - q).abs() < 0.01)
            && (a.4 - b.4).abs() < 1e-4;
        assert!(close, "{photo}: box {i}: published {a:?}, ours {b:?}");
    }
}

#[test]
fn person_only_graph_finds_the_published_graphs_people() {
    let path = repo_root().join("models/centernet/centernet.onnx");
    let settings = DetectorSettings {
        score_threshold: calibration::SCORE_THRESHOLD,
        nms_iou: calibration::NMS_IOU,
        short_side: calibration::DETECTOR_SHORT_SIDE,
        max_tiles: calibration::DETECTOR_MAX_TILES,
        min_overlap: calibration::TILE_MIN_OVERLAP,
        candidate_score: calibration::CANDIDATE_HEAD_SCORE,
        // Our stride-2 depthwise kernel included: its boxes must be the published graph's too.
        kernels: image_predict::model::Kernels::Own,
    };
    let ours = CenterNet::load(&path, settings).unwrap();
    let published = CenterNet::published_graph(&path).unwrap();

    // A street scene: fewer person peaks than the published graph's 100, so both find exactly
    // the same ones.
    let street = ours.first_tile_input(&dev_photo("shtb_train_17.jpg"));
    let expected = published_person_boxes(&published, street.clone(), settings.score_threshold);
    let mut found = ours.tile_boxes(street).unwrap();
    found.sort_by(|a, b| b.4.total_cmp(&a.4));
    assert!(
        expected.len() >= 10,
        "{} people in the street tile",
        expected.len()
    );
    assert_eq!(found.len(), expected.len(), "street tile: {found:?}");
    assert_same_boxes("street", &expected, &found);

    // A dense crowd: the published graph stops at its 100 best peaks of any class; ours keeps
    // every person peak above the threshold, and its best ones are the published ones.
    let dense = ours.first_tile_input(&dev_photo("shta_004.jpg"));
    let expected = published_person_boxes(&published, dense.clone(), settings.score_threshold);
    let mut found = ours.tile_boxes(dense).unwrap();
    found.sort_by(|a, b| b.4.total_cmp(&a.4));
    assert!(
        found.len() >= expected.len(),
        "dense tile: {} found, {} published",
        found.len(),
        expected.len()
    );
    assert_same_boxes("dense", &expected, &found[..expected.len()]);
}
