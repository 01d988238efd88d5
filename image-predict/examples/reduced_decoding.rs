//! What decoding large JPEGs at reduced scale (`imaging::decode_upright_at_least`) buys and
//! what it changes.
//!
//! ```sh
//! # decode time, whole against reduced, for photos that need 683x512 (the detector's input)
//! cargo run --release -p image-predict --example reduced_decoding -- timing
//! # counts of every dev photo enlarged FACTOR times, decoded whole and at reduced scale
//! cargo run --release -p image-predict --example reduced_decoding -- counts [FACTOR=4]
//! ```
//!
//! The photos are made by enlarging real ones (the dev set has no photo above a megapixel), as
//! quality-90 JPEGs. Counting uses the service's defaults (`ModelConfig`).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use image::RgbImage;
use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image_predict::configuration::ModelConfig;
use image_predict::counting::count_photo;
use image_predict::imaging::{decode_upright, decode_upright_at_least};
use image_predict::model::PeopleCounter;

const LIMIT: u64 = 100_000_000;

#[derive(Parser)]
struct Cli {
    /// `timing` or `counts`.
    what: String,
    /// For `counts`: how many times each side of the dev photos is enlarged.
    #[arg(default_value_t = 4.0)]
    factor: f32,
    /// Photos with their true counts (truth.csv).
    #[arg(long, default_value = "../shared/evalset/dev")]
    evalset: PathBuf,
    #[command(flatten)]
    model: ModelConfig,
}

fn enlarged_jpeg(photo: &RgbImage, width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    let large = imageops::resize(photo, width, height, FilterType::Triangle);
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut Cursor::new(&mut jpeg), 90).encode_image(&large)?;
    Ok(jpeg)
}

fn median_ms(runs: usize, mut run: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        run()?;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[runs / 2])
}

fn timing(evalset: &Path) -> anyhow::Result<()> {
    let street = image::open(evalset.join("shtb_train_01.jpg"))?.to_rgb8();
    println!("photo          whole ms  reduced ms  reduced to");
    for (width, height) in [(1920, 1080), (2732, 2048), (4000, 3000), (8000, 6000)] {
        let jpeg = enlarged_jpeg(&street, width, height)?;
        let whole = median_ms(11, || {
            decode_upright(&jpeg, LIMIT)?;
            Ok(())
        })?;
        let mut reduced_to = (0, 0);
        let reduced = median_ms(11, || {
            let photo = decode_upright_at_least(&jpeg, LIMIT, |_, _| (683, 512))?;
            reduced_to = photo.pixels.dimensions();
            Ok(())
        })?;
        println!(
            "{:<14} {whole:>8.1} {reduced:>11.1}  {}x{}",
            format!("{width}x{height}"),
            reduced_to.0,
            reduced_to.1
        );
    }
    Ok(())
}

fn counts(evalset: &Path, factor: f32, counter: &dyn PeopleCounter) -> anyhow::Result<()> {
    let truth_path = evalset.join("truth.csv");
    let truth = std::fs::read_to_string(&truth_path)
        .with_context(|| format!("reading {}", truth_path.display()))?;
    println!("photo               size        truth  whole  reduced  reduced to");
    // Absolute errors on sparse scenes, relative ones on dense crowds, as `crowd eval` reports.
    let (mut sparse, mut dense, mut same, mut photos) = (Vec::new(), Vec::new(), 0, 0);
    for line in truth.lines().skip(1) {
        let mut fields = line.split(',');
        let (Some(file), Some(true_count), Some(kind)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let true_count: f64 = true_count.parse()?;
        let photo = image::open(evalset.join(file))?.to_rgb8();
        let (width, height) = (
            (photo.width() as f32 * factor) as u32,
            (photo.height() as f32 * factor) as u32,
        );
        let jpeg = enlarged_jpeg(&photo, width, height)?;
        let whole = counter.count(&decode_upright(&jpeg, LIMIT)?)?.count;
        let reduced = count_photo(counter, &jpeg, LIMIT, true)?;
        let reduced_to =
            decode_upright_at_least(&jpeg, LIMIT, |w, h| counter.smallest_input(w, h))?
                .pixels
                .dimensions();
        let reduced_count = reduced.counted.count;
        println!(
            "{file:<19} {:<11} {true_count:>5} {whole:>6} {reduced_count:>8}  {}x{}",
            format!("{width}x{height}"),
            reduced_to.0,
            reduced_to.1
        );
        photos += 1;
        same += usize::from(whole == reduced_count);
        let errors = |count: u32| (f64::from(count) - true_count).abs();
        match kind {
            "dense" => dense.push((
                errors(whole) / true_count,
                errors(reduced_count) / true_count,
            )),
            _ => sparse.push((errors(whole), errors(reduced_count))),
        }
    }
    let mean = |v: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
        v.iter().map(pick).sum::<f64>() / v.len().max(1) as f64
    };
    println!("same count on {same} of {photos} photos");
    println!(
        "sparse scenes: mean absolute error {:.2} whole, {:.2} reduced",
        mean(&sparse, |e| e.0),
        mean(&sparse, |e| e.1)
    );
    println!(
        "dense crowds: mean relative error {:.1} % whole, {:.1} % reduced",
        100.0 * mean(&dense, |e| e.0),
        100.0 * mean(&dense, |e| e.1)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.what.as_str() {
        "timing" => timing(&cli.evalset),
        "counts" => counts(&cli.evalset, cli.factor, &cli.model.load()?),
        other => anyhow::bail!("unknown {other:?}: timing or counts"),
    }
}
