//! `crowd eval` on the dev set, run as a user runs it: the binary, its table and its JSON.
//! The bounds are the figures measured with the calibrated defaults (docs/calibration.md) plus a
//! margin, so a change that makes counting worse fails here.

mod support;

use std::process::Command;

use crowd::eval::EvalReport;
use support::{evalset_dir, repo_root};

/// Measured: 2.80 people on the street scenes (docs/calibration.md). One more miscounted person
/// on each of six photos would pass; a worse threshold or tiling (3.4 and up) would not.
const SPARSE_MAE_BOUND: f64 = 3.2;
/// Measured: 6.2% on the two dense crowds (docs/calibration.md); 512 px input gave 9.6%.
const DENSE_RELATIVE_ERROR_BOUND: f64 = 0.12;

fn crowd_eval(extra: &[&str]) -> std::process::Output {
    let root = repo_root();
    let output = Command::new(env!("CARGO_BIN_EXE_crowd"))
        .arg("eval")
        .arg(evalset_dir())
        .arg("--detector-model")
        .arg(root.join("models/centernet/centernet.onnx"))
        .arg("--density-model")
        .arg(root.join("models/csrnet/csrnet.onnx"))
        .args(extra)
        .output()
        .expect("crowd eval runs");
    assert!(
        output.status.success(),
        "crowd eval failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn eval_on_the_dev_set_counts_within_the_measured_error() {
    let output = crowd_eval(&["--json"]);
    let report: EvalReport =
        serde_json::from_slice(&output.stdout).expect("--json prints one EvalReport");
    assert_eq!(report.photos.len(), 17, "every row of truth.csv is counted");

    let sparse = report.sparse.expect("the dev set has street scenes");
    assert_eq!(sparse.photos, 15);
    assert_eq!(
        sparse.by_detector, 15,
        "street scenes are counted by the detector"
    );
    assert!(
        sparse.mae <= SPARSE_MAE_BOUND,
        "street-scene mean absolute error {:.2} above {SPARSE_MAE_BOUND}",
        sparse.mae
    );

    let dense = report.dense.expect("the dev set has dense crowds");
    assert_eq!(dense.photos, 2);
    assert_eq!(
        dense.by_density, 2,
        "dense crowds are counted by the density model"
    );
    assert!(
        dense.mean_relative_error <= DENSE_RELATIVE_ERROR_BOUND,
        "dense-crowd mean relative error {:.3} above {DENSE_RELATIVE_ERROR_BOUND}",
        dense.mean_relative_error
    );
}

#[test]
fn eval_prints_a_row_per_photo_and_the_summary() {
    let output = crowd_eval(&[]);
    let table = String::from_utf8(output.stdout).unwrap();
    for file in ["shtb_train_01.jpg", "shta_004.jpg", "shta_167.jpg"] {
        assert!(table.contains(file), "no row for {file} in:\n{table}");
    }
    assert!(
        table.contains("fewer than 100 people: 15 photos, mean absolute error"),
        "{table}"
    );
    assert!(
        table.contains("100 people or more: 2 photos, mean relative error"),
        "{table}"
    );
}
