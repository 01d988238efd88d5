//! What decoding large JPEGs at reduced scale (`imaging::decode_upright_at_least`) buys and
//! what it changes.
//!
//! ```sh
//! # decode time, whole against reduced, for photos that need 683x512 (the detector's input)
//! cargo run --release -p crowd --example reduced_decoding -- timing
//! # counts of every dev photo enlarged FACTOR times, decoded whole and at reduced scale
//! cargo run --release -p crowd --example reduced_decoding -- counts [FACTOR=4]
//! ```
//!
//! The photos are made by enlarging real ones (the dev set has no photo above a megapixel), as
//! quality-90 JPEGs. Counting uses the service's defaults (`ModelConfig`); errors are summed up
//! as `crowd eval` does.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use crowd::eval::{DENSE_FROM, PhotoResult, read_truth, summarise};
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
    println!("photo               size        truth  whole  reduced  reduced to");
    let (mut whole, mut reduced) = (Vec::new(), Vec::new());
    for row in read_truth(&evalset.join("truth.csv"))? {
        let photo = image::open(evalset.join(&row.file))?.to_rgb8();
        let (width, height) = (
            (photo.width() as f32 * factor) as u32,
            (photo.height() as f32 * factor) as u32,
        );
        let jpeg = enlarged_jpeg(&photo, width, height)?;
        let started = Instant::now();
        let whole_count = counter.count(&decode_upright(&jpeg, LIMIT)?)?;
        let whole_ms = started.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        let reduced_count = count_photo(counter, &jpeg, LIMIT, true, &[])?.counted;
        let reduced_ms = started.elapsed().as_secs_f64() * 1e3;
        let reduced_to =
            decode_upright_at_least(&jpeg, LIMIT, |w, h| counter.smallest_input(w, h))?
                .pixels
                .dimensions();
        println!(
            "{:<19} {:<11} {:>5} {:>6} {:>8}  {}x{}",
            row.file,
            format!("{width}x{height}"),
            row.true_count,
            whole_count.count,
            reduced_count.count,
            reduced_to.0,
            reduced_to.1
        );
        whole.push(PhotoResult::new(row.clone(), &whole_count, whole_ms));
        reduced.push(PhotoResult::new(row, &reduced_count, reduced_ms));
    }
    let same = whole
        .iter()
        .zip(&reduced)
        .filter(|(a, b)| a.count == b.count)
        .count();
    println!("same count on {same} of {} photos", whole.len());
    for (decoded, results) in [("whole", &whole), ("reduced", &reduced)] {
        let group = |dense: bool| {
            summarise(
                results
                    .iter()
                    .filter(|p| (p.true_count >= DENSE_FROM) == dense),
            )
        };
        if let Some(g) = group(false) {
            println!(
                "{decoded:<8} fewer than {DENSE_FROM} people: mean absolute error {:.2}",
                g.mae
            );
        }
        if let Some(g) = group(true) {
            println!(
                "{decoded:<8} {DENSE_FROM} people or more: mean relative error {:.1}%",
                100.0 * g.mean_relative_error
            );
        }
    }
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
