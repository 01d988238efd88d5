//! `crowd eval DIR`: counts every photo listed in `DIR/truth.csv` through the same code path as
//! image-predict (`count_photo` with the models and settings of `ModelConfig`) and compares the
//! counts with the truth.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use image_predict::configuration::ModelConfig;
use image_predict::counting::count_photo;
use image_predict::model::{Counted, PeopleCounter};
use serde::{Deserialize, Serialize};

/// Photos with at least this many people are crowds, judged by relative error (the targets'
/// split: street scenes under it, crowds from it on).
pub const DENSE_FROM: u32 = 100;

/// The density bands of the report: name, lowest and highest true count.
pub const BANDS: [(&str, u32, u32); 4] = [
    ("sparse", 0, 39),
    ("medium", 40, 99),
    ("dense", 100, 999),
    ("very dense", 1000, u32::MAX),
];

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A folder with the photos and `truth.csv` (columns `file,true_count`; others ignored).
    pub dir: PathBuf,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Largest accepted image, pixels, as image-predict's --predict-max-pixels.
    #[arg(long, default_value_t = 50_000_000)]
    pub max_pixels: u64,
    #[command(flatten)]
    pub model: ModelConfig,
}

/// One photo of `truth.csv`.
#[derive(Debug, Clone, Deserialize)]
pub struct TruthRow {
    pub file: String,
    pub true_count: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PhotoResult {
    pub file: String,
    pub true_count: u32,
    pub count: u32,
    pub error: i64,
    pub method: String,
    pub candidate_heads: u32,
    /// People the density model's glance saw (the choice's other signal), when it looked.
    #[serde(default)]
    pub glance_people: Option<f32>,
    /// Decode, models and thumbnail: what the photo costs image-predict, milliseconds.
    pub total_ms: f64,
    pub inference_ms: f64,
    /// `under half` or `over twice` when the count is that far off its truth.
    #[serde(default)]
    pub flag: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GroupSummary {
    pub photos: usize,
    /// Mean absolute error, people.
    pub mae: f64,
    pub rmse: f64,
    /// Mean of |count - truth| / truth.
    pub mean_relative_error: f64,
    pub median_ms: f64,
    /// How many photos the detector alone counted, and how many the density model took part in
    /// (method density or fusion).
    pub by_detector: usize,
    pub by_density: usize,
}

/// One density band's figures.
#[derive(Debug, Serialize, Deserialize)]
pub struct Band {
    pub band: String,
    /// True counts from `min` to `max`, inclusive.
    pub min: u32,
    pub max: u32,
    #[serde(flatten)]
    pub summary: GroupSummary,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EvalReport {
    pub counter: String,
    pub photos: Vec<PhotoResult>,
    /// Photos with fewer than [`DENSE_FROM`] people (the street-scene target's group).
    pub sparse: Option<GroupSummary>,
    /// Photos with [`DENSE_FROM`] people or more (the crowd target's group).
    pub dense: Option<GroupSummary>,
    /// Figures per density band ([`BANDS`]), bands without photos left out.
    #[serde(default)]
    pub bands: Vec<Band>,
    /// Photos counted under half or over twice their truth.
    #[serde(default)]
    pub flagged: Vec<String>,
}

pub fn run(args: &EvalArgs) -> anyhow::Result<EvalReport> {
    let truth_path = args.dir.join("truth.csv");
    let truth = read_truth(&truth_path)?;
    let counter = args.model.load()?;
    let mut photos = Vec::with_capacity(truth.len());
    for row in truth {
        photos.push(count_one(&counter, &args.dir, row, args.max_pixels)?);
    }
    let group = |dense: bool| {
        summarise(
            photos
                .iter()
                .filter(|p| (p.true_count >= DENSE_FROM) == dense),
        )
    };
    let bands = BANDS
        .iter()
        .filter_map(|&(band, min, max)| {
            summarise(
                photos
                    .iter()
                    .filter(|p| (min..=max).contains(&p.true_count)),
            )
            .map(|summary| Band {
                band: band.to_owned(),
                min,
                max,
                summary,
            })
        })
        .collect();
    Ok(EvalReport {
        counter: counter.name().to_owned(),
        sparse: group(false),
        dense: group(true),
        bands,
        flagged: photos
            .iter()
            .filter(|p| p.flag.is_some())
            .map(|p| p.file.clone())
            .collect(),
        photos,
    })
}

/// The rows of a `truth.csv` (columns `file,true_count`; others ignored).
pub fn read_truth(path: &Path) -> anyhow::Result<Vec<TruthRow>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let rows = reader
        .deserialize()
        .collect::<Result<Vec<TruthRow>, _>>()
        .with_context(|| format!("{}: expected columns file,true_count", path.display()))?;
    anyhow::ensure!(!rows.is_empty(), "{} lists no photos", path.display());
    Ok(rows)
}

fn count_one(
    counter: &dyn PeopleCounter,
    dir: &Path,
    row: TruthRow,
    max_pixels: u64,
) -> anyhow::Result<PhotoResult> {
    let path = dir.join(&row.file);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let started = Instant::now();
    let photo = count_photo(counter, &bytes, max_pixels, true, &[])
        .with_context(|| format!("counting {}", path.display()))?;
    let total_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(PhotoResult::new(row, &photo.counted, total_ms))
}

impl PhotoResult {
    /// The result of counting `row`'s photo, which took `total_ms`.
    pub fn new(row: TruthRow, counted: &Counted, total_ms: f64) -> Self {
        let truth = f64::from(row.true_count.max(1));
        let flag = match f64::from(counted.count) / truth {
            r if r < 0.5 => Some("under half".to_owned()),
            r if r > 2.0 => Some("over twice".to_owned()),
            _ => None,
        };
        PhotoResult {
            glance_people: counted.glance_people,
            flag,
            error: i64::from(counted.count) - i64::from(row.true_count),
            file: row.file,
            true_count: row.true_count,
            count: counted.count,
            method: counted.method.as_str().to_owned(),
            candidate_heads: counted.candidate_heads,
            total_ms,
            inference_ms: counted.inference_ms,
        }
    }
}

/// Errors and times of a group of photos; `None` for no photo.
pub fn summarise<'a>(photos: impl Iterator<Item = &'a PhotoResult>) -> Option<GroupSummary> {
    let photos: Vec<&PhotoResult> = photos.collect();
    if photos.is_empty() {
        return None;
    }
    let n = photos.len() as f64;
    let errors = photos.iter().map(|p| p.error as f64);
    let mut times: Vec<f64> = photos.iter().map(|p| p.total_ms).collect();
    times.sort_by(f64::total_cmp);
    let middle = times.len() / 2;
    let median_ms = if times.len() % 2 == 1 {
        times[middle]
    } else {
        (times[middle - 1] + times[middle]) / 2.0
    };
    Some(GroupSummary {
        photos: photos.len(),
        mae: errors.clone().map(f64::abs).sum::<f64>() / n,
        rmse: (errors.map(|e| e * e).sum::<f64>() / n).sqrt(),
        mean_relative_error: photos
            .iter()
            .map(|p| (p.error as f64).abs() / f64::from(p.true_count.max(1)))
            .sum::<f64>()
            / n,
        median_ms,
        by_detector: photos.iter().filter(|p| p.method == "detector").count(),
        by_density: photos.iter().filter(|p| p.method != "detector").count(),
    })
}

/// The report as a table for people.
pub fn print_table(report: &EvalReport) {
    println!("counter: {}", report.counter);
    println!(
        "{:<24} {:>6} {:>6} {:>6}  {:<8} {:>10} {:>7} {:>9}  flag",
        "file", "true", "count", "error", "method", "candidates", "glance", "ms"
    );
    for p in &report.photos {
        let glance = p
            .glance_people
            .map_or_else(|| "-".to_owned(), |g| format!("{g:.0}"));
        println!(
            "{:<24} {:>6} {:>6} {:>+6}  {:<8} {:>10} {:>7} {:>9.0}  {}",
            p.file,
            p.true_count,
            p.count,
            p.error,
            p.method,
            p.candidate_heads,
            glance,
            p.total_ms,
            p.flag.as_deref().unwrap_or("")
        );
    }
    for band in &report.bands {
        let s = &band.summary;
        let range = if band.max == u32::MAX {
            format!("{}+", band.min)
        } else {
            format!("{}-{}", band.min, band.max)
        };
        println!(
            "band {:<10} ({range:>9} people): {:>2} photos, MAE {:>7.2}, mean relative error {:>5.1}%, median {:>5.0} ms/photo, detector {} / density {}",
            band.band,
            s.photos,
            s.mae,
            s.mean_relative_error * 100.0,
            s.median_ms,
            s.by_detector,
            s.by_density
        );
    }
    if !report.flagged.is_empty() {
        println!(
            "counted under half or over twice their truth: {}",
            report.flagged.join(", ")
        );
    }
    if let Some(s) = &report.sparse {
        println!(
            "fewer than {DENSE_FROM} people: {} photos, mean absolute error {:.2}, RMSE {:.2}, median {:.0} ms/photo, method detector {} / density {}",
            s.photos, s.mae, s.rmse, s.median_ms, s.by_detector, s.by_density
        );
    }
    if let Some(s) = &report.dense {
        println!(
            "{DENSE_FROM} people or more: {} photos, mean relative error {:.1}%, mean absolute error {:.1}, median {:.0} ms/photo, method detector {} / density {}",
            s.photos,
            s.mean_relative_error * 100.0,
            s.mae,
            s.median_ms,
            s.by_detector,
            s.by_density
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(true_count: u32, count: u32, total_ms: f64, method: &str) -> PhotoResult {
        PhotoResult {
            file: String::new(),
            true_count,
            count,
            error: i64::from(count) - i64::from(true_count),
            method: method.to_owned(),
            candidate_heads: 0,
            glance_people: None,
            total_ms,
            inference_ms: 0.0,
            flag: None,
        }
    }

    #[test]
    fn summary_figures() {
        let photos = [
            result(10, 13, 300.0, "detector"),
            result(10, 9, 100.0, "detector"),
            result(20, 20, 200.0, "density"),
        ];
        let s = summarise(photos.iter()).unwrap();
        assert_eq!(s.photos, 3);
        assert!((s.mae - 4.0 / 3.0).abs() < 1e-9);
        assert!((s.rmse - (10.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert!((s.mean_relative_error - 0.4 / 3.0).abs() < 1e-9);
        assert_eq!(s.median_ms, 200.0);
        assert_eq!((s.by_detector, s.by_density), (2, 1));
        assert!(summarise(std::iter::empty()).is_none());
    }
}
