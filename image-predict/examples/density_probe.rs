//! Calibration probe: per labelled photo, the detector's count and candidate heads, and the
//! density model's count with the photo scaled to several long sides and scale factors (tiled
//! as the service tiles it), one JSON line per photo. docs/calibration.md shows what it found.
//!
//! ```sh
//! SIDES=128,192,256 SCALES=0.75,1,1.5 \
//!   cargo run --release -p image-predict --example density_probe -- DIR [DIR...] > probe.jsonl
//! ```
//! `FLOORS=0,0.01,0.02` adds, per look, the density outside the boxes in the cells whose
//! neighbourhood reaches each floor (people per cell).
//! `ONLY_DENSE=N` skips the scale factors for photos with fewer than N true people;
//! `TILE_MAX` (pixels) and `MARGIN` (pixels) override the density tiles.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use image_predict::configuration::ModelConfig;
use image_predict::imaging::{decode_upright, resize_rgb};
use image_predict::model::adaptive::outside_boxes;
use image_predict::model::centernet::CenterNet;
use image_predict::model::csrnet::{CsrNet, DensityMap, DensitySettings};

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    model: ModelConfig,
}

fn list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok().expect("a number"))
        .collect()
}

fn main() -> anyhow::Result<()> {
    let dirs: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let config = Defaults::parse_from(["probe"]).model;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    tract_linalg::multithread::set_default_executor(
        tract_linalg::multithread::Executor::multithread(threads),
    );
    let detector = CenterNet::load(&config.detector_path()?, config.detector_settings())?;
    let density = CsrNet::load(
        &config.density_path()?,
        DensitySettings {
            max_pixels: u64::MAX,
            tile_max_pixels: std::env::var("TILE_MAX")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(config.density_tile_max_pixels),
            tile_margin: std::env::var("MARGIN")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(config.density_tile_margin),
            ..config.density_settings()
        },
    )?;
    let sides: Vec<u32> = list("SIDES", "128,160,192,224,256,448");
    let scales: Vec<f32> = list("SCALES", "0.75,1");
    let floors: Option<Vec<f32>> = std::env::var_os("FLOORS").map(|_| list("FLOORS", "0"));
    let only_dense: u32 = std::env::var("ONLY_DENSE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for dir in dirs {
        let mut reader = csv::Reader::from_path(dir.join("truth.csv"))?;
        for row in reader.records() {
            let row = row?;
            let file = &row[0];
            let truth: u32 = row[1].parse()?;
            let photo = decode_upright(&std::fs::read(dir.join(file))?, 50_000_000)?;
            let (w, h) = photo.dimensions();
            let started = Instant::now();
            let det = detector.detect(&photo)?;
            let mut line = serde_json::json!({
                "file": file, "truth": truth, "w": w, "h": h,
                "det": det.boxes.len(), "cand": det.candidate_heads,
                "det_ms": started.elapsed().as_secs_f64() * 1e3,
                "boxes": det.boxes.iter().map(|b| [b.x1, b.y1, b.x2, b.y2]).collect::<Vec<_>>(),
            });
            let mut look = |key: String, tw: u32, th: u32| -> anyhow::Result<()> {
                let resized = resize_rgb(&photo, tw.max(8), th.max(8));
                let started = Instant::now();
                let run = density.density(&resized)?;
                // With MAPS set: the density mass in each cell of an 8 x 6 grid over the photo.
                let regions = std::env::var_os("MAPS").map(|_| {
                    let mut grid = vec![0f32; 48];
                    for row in 0..run.map.rows {
                        for column in 0..run.map.columns {
                            let (x, y) = run.map.cell_centre(column, row);
                            let (gx, gy) = ((x * 8.0) as usize, (y * 6.0) as usize);
                            if gx < 8 && gy < 6 {
                                grid[gy * 8 + gx] +=
                                    run.map.values[(row * run.map.columns + column) as usize];
                            }
                        }
                    }
                    grid
                });
                // With FLOORS set: the density mass outside the detector's boxes, counting only
                // the cells whose 3x3 neighbourhood's mean density reaches each floor (people per
                // cell): how a per-region fusion that ignores faint density would count.
                let outside = floors.as_ref().map(|floors| {
                    let map = outside_boxes(run.map.clone(), &det.boxes);
                    let local = neighbourhood_mean(&run.map);
                    floors
                        .iter()
                        .map(|&floor| {
                            map.values
                                .iter()
                                .zip(&local)
                                .filter(|&(_, &mean)| mean >= floor)
                                .map(|(v, _)| v.max(0.0))
                                .sum::<f32>()
                        })
                        .collect::<Vec<_>>()
                });
                let mut sorted = run.map.values.clone();
                sorted.sort_by(f32::total_cmp);
                let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
                line[key] = serde_json::json!({
                    "count": run.count, "ms": started.elapsed().as_secs_f64() * 1e3,
                    "tiles": run.tiles, "p99_cell": p99, "max_cell": sorted.last(),
                    "regions": regions, "outside_by_floor": outside,
                });
                Ok(())
            };
            for &side in &sides {
                let s = side as f32 / w.max(h) as f32;
                look(
                    format!("long_{side}"),
                    (w as f32 * s).round() as u32,
                    (h as f32 * s).round() as u32,
                )?;
            }
            if truth >= only_dense {
                for &s in &scales {
                    look(
                        format!("scale_{s}"),
                        (w as f32 * s).round() as u32,
                        (h as f32 * s).round() as u32,
                    )?;
                }
            }
            println!("{line}");
        }
    }
    Ok(())
}

/// Each cell's mean over its 3x3 neighbourhood (the cells that exist).
fn neighbourhood_mean(map: &DensityMap) -> Vec<f32> {
    let (columns, rows) = (map.columns as i64, map.rows as i64);
    let mut means = Vec::with_capacity(map.values.len());
    for row in 0..rows {
        for column in 0..columns {
            let (mut sum, mut cells) = (0f32, 0f32);
            for y in (row - 1).max(0)..=(row + 1).min(rows - 1) {
                for x in (column - 1).max(0)..=(column + 1).min(columns - 1) {
                    sum += map.values[(y * columns + x) as usize];
                    cells += 1.0;
                }
            }
            means.push(sum / cells);
        }
    }
    means
}
