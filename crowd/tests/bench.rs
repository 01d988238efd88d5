//! `crowd bench` runs and prints its tables. Figures are not asserted (speed is judged from
//! BENCHMARKS.md, not by timed tests); what is checked is that every stage and model is measured.
//! The onnxruntime and HTTP parts need PyPI and wrk and are left to the benchmark run itself.

mod support;

use std::process::Command;

use support::{evalset_dir, repo_root};
use tract_onnx::prelude::Framework;

#[test]
fn bench_prints_every_stage_and_model() {
    let root = repo_root();
    let out_dir = support::temp_data_dir("bench");
    let output = Command::new(env!("CARGO_BIN_EXE_crowd"))
        .current_dir(&root)
        .arg("bench")
        .args(["--runs", "1", "--no-onnxruntime", "--no-http"])
        .arg("--photo")
        .arg(evalset_dir().join("shtb_train_01.jpg"))
        .arg("--dense-photo")
        .arg(evalset_dir().join("shta_004.jpg"))
        .arg("--out-dir")
        .arg(&out_dir)
        .output()
        .expect("crowd bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "crowd bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    for row in [
        "1024x768",
        "1920x1080",
        "4000x3000 (12 MP)",
        "centernet person 1x512x512x3",
        "centernet published",
        "dense 1024x768",
        "dense 1920x1080",
        "csrnet 1x3x",
    ] {
        assert!(stdout.contains(row), "no row {row:?} in:\n{stdout}");
    }
    // onnxruntime is given the graph the service runs: the detector cut to its person outputs.
    let person_only = tract_onnx::onnx()
        .proto_model_for_path(out_dir.join("centernet-person.onnx"))
        .expect("the person-only detector graph is written as ONNX");
    let outputs: Vec<_> = person_only
        .graph
        .expect("a graph")
        .output
        .into_iter()
        .map(|output| output.name)
        .collect();
    assert_eq!(outputs, ["tower_0/keypoints", "tower_0/wh"]);
    // The tensors onnxruntime is given are exactly tract's inputs: 4 bytes per value.
    let detector_input = std::fs::metadata(out_dir.join("centernet-input.f32")).unwrap();
    assert_eq!(detector_input.len(), 512 * 512 * 3 * 4);
    let density_input = std::fs::metadata(out_dir.join("csrnet-input.f32")).unwrap();
    // The density model is timed on one tile of the dense photo: 3 channels, at most
    // DENSITY_TILE_MAX_PIXELS pixels plus margins rounded to whole cells.
    let values = density_input.len() / 4;
    assert_eq!(values % 3, 0, "{values} values are not 3 channels");
    let pixels = values as u64 / 3;
    assert!(
        (1 << 16..=1 << 19).contains(&pixels),
        "a tile of {pixels} pixels"
    );
}
