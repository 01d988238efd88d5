//! `crowd bench`: what a photo costs, stage by stage, for three photo sizes; the models alone in
//! tract beside onnxruntime on the same ONNX graphs and the same input tensors (the detector both
//! as the service runs it, cut to its person class, and as published); a 12-megapixel photo
//! from upload to answer over HTTP, one at a time; and photos per second through the whole HTTP
//! path (upload → predict → dashboard) at saturation.
//! BENCHMARKS.md records its figures.

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser};
use dashboard::DashboardConfig;
use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image_predict::PredictConfig;
use image_predict::configuration::ModelConfig;
use image_predict::counting::count_photo;
use image_predict::imaging::decode_upright;
use image_predict::model::CountingMode;
use image_predict::model::centernet::CenterNet;
use image_upload::UploadConfig;
use prost::Message;
use serde::Deserialize;
use tract_linalg::multithread::{Executor, set_default_executor};
use tract_onnx::prelude::{Tensor, tvec};

use crate::{Stack, StackAuth};

/// Large enough for the 12-megapixel photo.
const MAX_PIXELS: u64 = 50_000_000;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A 1024x768 street photo; the 1920x1080 and 12-megapixel photos are made from it.
    #[arg(long, default_value = "../shared/evalset/dev/shtb_train_01.jpg")]
    pub photo: PathBuf,
    /// A dense crowd, for the density model's input.
    #[arg(long, default_value = "../shared/evalset/dev/shta_004.jpg")]
    pub dense_photo: PathBuf,
    /// Timed runs per measurement (the median is printed), after one warm-up run.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Skip the onnxruntime comparison (bench/run_onnxruntime.sh, which installs onnxruntime
    /// from PyPI into target/bench-venv).
    #[arg(long)]
    pub no_onnxruntime: bool,
    /// Skip the HTTP load test (bench/http_load.sh, which drives wrk against 127.0.0.1).
    #[arg(long)]
    pub no_http: bool,
    /// Length of the HTTP load test, seconds.
    #[arg(long, default_value_t = 20)]
    pub http_seconds: u32,
    /// Concurrent connections of the HTTP load test.
    #[arg(long, default_value_t = 4)]
    pub http_connections: u32,
    /// Where the input tensors and the detector's person-only graph are written for onnxruntime.
    #[arg(long, default_value = "target/bench")]
    pub out_dir: PathBuf,
    #[command(flatten)]
    pub model: ModelConfig,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn thread_counts() -> Vec<usize> {
    let all = cores();
    if all > 1 { vec![1, all] } else { vec![1] }
}

fn executor(threads: usize) -> Executor {
    if threads > 1 {
        Executor::multithread(threads)
    } else {
        Executor::SingleThread
    }
}

/// The photo at `width` x `height` (a plain resize of the street photo, so the same scene at
/// more pixels), as a JPEG of quality 90 like a camera's.
fn jpeg_at(photo: &image::RgbImage, width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    let resized = imageops::resize(photo, width, height, FilterType::Triangle);
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut Cursor::new(&mut jpeg), 90).encode_image(&resized)?;
    Ok(jpeg)
}

/// Stage medians of one photo through the service's counting path, milliseconds.
struct Stages {
    label: String,
    decode: f64,
    preprocess: f64,
    inference: f64,
    postprocess: f64,
    thumbnail: f64,
    total: f64,
    count: u32,
}

fn time_stages(
    counter: &dyn image_predict::model::PeopleCounter,
    label: &str,
    jpeg: &[u8],
    runs: usize,
) -> anyhow::Result<Stages> {
    let mut samples: [Vec<f64>; 6] = Default::default();
    let mut count = 0;
    for run in 0..=runs {
        let started = Instant::now();
        let photo = count_photo(counter, jpeg, MAX_PIXELS, true, &[])?;
        let total = started.elapsed().as_secs_f64() * 1e3;
        if run == 0 {
            continue; // warm-up
        }
        let c = &photo.counted;
        count = c.count;
        for (sample, value) in samples.iter_mut().zip([
            photo.decode_ms,
            c.preprocess_ms,
            c.inference_ms,
            c.postprocess_ms,
            photo.thumbnail_ms,
            total,
        ]) {
            sample.push(value);
        }
    }
    let [decode, preprocess, inference, postprocess, thumbnail, total] = samples.map(median);
    Ok(Stages {
        label: label.to_owned(),
        decode,
        preprocess,
        inference,
        postprocess,
        thumbnail,
        total,
        count,
    })
}

/// Median milliseconds of `run` over `runs` runs, after one warm-up.
fn time_runs(runs: usize, mut run: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    run()?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        run()?;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(samples))
}

/// The tensor's values as raw little-endian float32, the form bench/onnxruntime_bench.py reads.
fn write_f32(path: &Path, tensor: &Tensor) -> anyhow::Result<()> {
    let plain = tensor.try_as_plain_ram()?;
    let values = plain.as_slice::<f32>()?;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[derive(Debug, Deserialize)]
struct OrtResult {
    median_ms: f64,
}

fn onnxruntime_ms(
    model: &Path,
    input: &Path,
    shape: &[usize],
    threads: usize,
    runs: usize,
) -> anyhow::Result<f64> {
    let shape = shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let output = Command::new("bash")
        .arg("bench/run_onnxruntime.sh")
        .arg("--model")
        .arg(model)
        .arg("--input")
        .arg(input)
        .args(["--shape", &shape])
        .args(["--threads", &threads.to_string()])
        .args(["--runs", &runs.to_string()])
        .output()
        .context("running bench/run_onnxruntime.sh (from the repository root)")?;
    anyhow::ensure!(
        output.status.success(),
        "bench/run_onnxruntime.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = String::from_utf8(output.stdout)?;
    let line = line.lines().last().context("onnxruntime printed nothing")?;
    Ok(serde_json::from_str::<OrtResult>(line)?.median_ms)
}

#[derive(Debug, Deserialize)]
struct HttpResult {
    photos_per_second: f64,
    non_2xx: u64,
    requests: u64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
}

/// Settings of one service with every default, as if started without flags.
fn defaults<C: Args>() -> C {
    #[derive(Parser)]
    struct Wrapper<C: Args> {
        #[command(flatten)]
        config: C,
    }
    Wrapper::<C>::parse_from(["crowd"]).config
}

/// The HTTP figures: one large photo at a time, then the load test.
struct HttpFigures {
    /// Median milliseconds from sending the large photo to image-upload to its answer.
    large_photo_ms: f64,
    large_photo_count: u32,
    load: HttpResult,
}

#[derive(Debug, Deserialize)]
struct UploadAnswer {
    count: u32,
}

/// Milliseconds from sending `jpeg` to `url` to receiving the count, median of `runs` after a
/// warm-up; and the count.
async fn time_one_upload_at_a_time(
    url: &str,
    jpeg: &[u8],
    runs: usize,
) -> anyhow::Result<(f64, u32)> {
    let client = reqwest::Client::new();
    let mut samples = Vec::with_capacity(runs);
    let mut count = 0;
    for run in 0..=runs {
        let started = Instant::now();
        let response = client
            .post(url)
            .header("content-type", "image/jpeg")
            .body(jpeg.to_vec())
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        anyhow::ensure!(
            status.is_success(),
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        count = serde_json::from_slice::<UploadAnswer>(&body)?.count;
        if run > 0 {
            samples.push(elapsed);
        }
    }
    Ok((median(samples), count))
}

async fn http_figures(
    args: &BenchArgs,
    jpeg_path: &Path,
    large_jpeg: &[u8],
) -> anyhow::Result<HttpFigures> {
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let mut dashboard: DashboardConfig = defaults();
    dashboard.listen = loopback;
    dashboard.ingest_listen = loopback;
    dashboard.metrics_listen = loopback;
    dashboard.data_dir = args.out_dir.join("dashboard");
    let mut predict: PredictConfig = defaults();
    predict.listen = loopback;
    predict.metrics_listen = loopback;
    predict.model = args.model.clone();
    let mut upload: UploadConfig = defaults();
    upload.listen = loopback;
    upload.metrics_listen = loopback;
    // No camera keys: the load test would otherwise measure the rate limit, not the stack (a
    // key check is one SHA-256 of a short string). The ingest token stays.
    let auth = StackAuth {
        no_auth: true,
        keys_file: None,
        ingest_token: None,
    };
    let stack = Stack::start(dashboard, predict, upload, auth).await?;
    let url = format!(
        "http://127.0.0.1:{}/api/v1/cameras/bench/photos",
        stack.upload.port
    );
    let (large_photo_ms, large_photo_count) =
        time_one_upload_at_a_time(&url, large_jpeg, args.runs).await?;
    let seconds = args.http_seconds.to_string();
    let connections = args.http_connections.to_string();
    let photo = jpeg_path.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("bench/http_load.sh")
            .arg(&url)
            .arg(&photo)
            .arg(&seconds)
            .arg(&connections)
            .output()
    })
    .await?
    .context("running bench/http_load.sh")?;
    stack.upload.stop().await?;
    stack.predict.stop().await?;
    stack.dashboard.stop().await?;
    anyhow::ensure!(
        output.status.success(),
        "bench/http_load.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("bench/http_load.sh printed no JSON line")?;
    Ok(HttpFigures {
        large_photo_ms,
        large_photo_count,
        load: serde_json::from_str(line)?,
    })
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out_dir)?;
    let counter = args.model.load()?;
    let detector = counter.detector();
    let street_bytes =
        std::fs::read(&args.photo).with_context(|| format!("reading {}", args.photo.display()))?;
    let street = decode_upright(&street_bytes, MAX_PIXELS)?;
    let dense_bytes = std::fs::read(&args.dense_photo)
        .with_context(|| format!("reading {}", args.dense_photo.display()))?;
    let dense = decode_upright(&dense_bytes, MAX_PIXELS)?;
    println!(
        "crowd bench: {} cores, {} timed runs per figure (median), counter {}",
        cores(),
        args.runs,
        image_predict::model::PeopleCounter::name(&counter)
    );

    // 1. A photo through the service's counting path, stage by stage, all cores.
    set_default_executor(executor(cores()));
    let photos = [
        ("1024x768", jpeg_at(&street, 1024, 768)?),
        ("1920x1080", jpeg_at(&street, 1920, 1080)?),
        ("4000x3000 (12 MP)", jpeg_at(&street, 4000, 3000)?),
        ("dense 1024x768", jpeg_at(&dense, 1024, 768)?),
        ("dense 1920x1080", jpeg_at(&dense, 1920, 1080)?),
    ];
    println!("\nper photo, milliseconds (median):");
    println!(
        "{:<18} {:>8} {:>10} {:>10} {:>12} {:>10} {:>8} {:>6}",
        "photo", "decode", "resize", "inference", "postprocess", "thumbnail", "total", "count"
    );
    for (label, jpeg) in &photos {
        let s = time_stages(&counter, label, jpeg, args.runs)?;
        println!(
            "{:<18} {:>8.1} {:>10.1} {:>10.1} {:>12.1} {:>10.1} {:>8.1} {:>6}",
            s.label,
            s.decode,
            s.preprocess,
            s.inference,
            s.postprocess,
            s.thumbnail,
            s.total,
            s.count
        );
    }

    // 2. The models alone on fixed inputs, tract beside onnxruntime.
    let detector_input = detector.first_tile_input(&street);
    let detector_input_path = args.out_dir.join("centernet-input.f32");
    write_f32(&detector_input_path, &detector_input)?;
    let density_model = counter.density();
    let density_input = density_model.map(|d| d.first_tile_input(&dense));
    let density_input_path = args.out_dir.join("csrnet-input.f32");
    if let Some(input) = &density_input {
        write_f32(&density_input_path, input)?;
    }
    // The service runs CenterNet cut to its person class (image_predict::model::centernet);
    // onnxruntime runs that same graph, written out here (its `Resize` nodes on onnxruntime's own
    // kernel, as ours run on our `Upsample2x`), and the published one beside it.
    let detector_path = args.model.detector_path()?;
    let density_path = args.model.density_path()?;
    let person_only_path = args.out_dir.join("centernet-person.onnx");
    std::fs::write(
        &person_only_path,
        CenterNet::service_proto(&detector_path)?.encode_to_vec(),
    )?;
    let published = CenterNet::published_graph(&detector_path)?;
    println!("\nmodels alone, milliseconds per run (median):");
    println!(
        "{:<28} {:>8} {:>10} {:>12} {:>16}",
        "model", "threads", "tract", "onnxruntime", "tract/onnxrt"
    );
    let mut detector_single_ms = None;
    for threads in thread_counts() {
        set_default_executor(executor(threads));
        let mut rows = vec![
            (
                "centernet person 1x512x512x3",
                person_only_path.as_path(),
                &detector_input_path,
                detector_input.shape().to_vec(),
                time_runs(args.runs, || detector.run_input(detector_input.clone()))?,
            ),
            (
                "centernet published",
                detector_path.as_path(),
                &detector_input_path,
                detector_input.shape().to_vec(),
                time_runs(args.runs, || {
                    published.run(tvec!(detector_input.clone().into()))?;
                    Ok(())
                })?,
            ),
        ];
        if threads == 1 {
            detector_single_ms = Some(rows[0].4);
        }
        if let (Some(model), Some(input)) = (density_model, &density_input) {
            rows.push((
                "csrnet 1x3xSxS",
                density_path.as_path(),
                &density_input_path,
                input.shape().to_vec(),
                time_runs(args.runs, || model.run_input(input.clone()))?,
            ));
        }
        for (name, model_path, input_path, shape, tract_ms) in rows {
            let name = name.replace("SxS", &format!("{}x{}", shape[2], shape[3]));
            if args.no_onnxruntime {
                println!("{name:<28} {threads:>8} {tract_ms:>10.1}");
                continue;
            }
            let ort_ms = onnxruntime_ms(model_path, input_path, &shape, threads, args.runs)?;
            println!(
                "{name:<28} {threads:>8} {tract_ms:>10.1} {ort_ms:>12.1} {:>16.2}",
                tract_ms / ort_ms
            );
        }
    }
    // A street photo's model runs: the detector's tiles and, counting auto, the density glance
    // (the cheap look every photo gets). Timed with one thread, then on every core at once,
    // one thread each: what the cores really deliver when they share caches and memory, the
    // honest ceiling for the HTTP test below.
    set_default_executor(executor(1));
    let tiles = detector.tile_count(street.width(), street.height()).max(1);
    let glance_model = density_model.filter(|_| counter.mode() == CountingMode::Auto);
    let glance_single_ms = match glance_model {
        Some(model) => time_runs(args.runs, || model.glance(&street).map(|_| ()))?,
        None => 0.0,
    };
    let street_models = || -> anyhow::Result<()> {
        for _ in 0..tiles {
            detector.run_input(detector_input.clone())?;
        }
        if let Some(model) = glance_model {
            model.glance(&street)?;
        }
        Ok(())
    };
    let started = Instant::now();
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..cores())
            .map(|_| scope.spawn(|| (0..args.runs).try_for_each(|_| street_models())))
            .collect();
        runs.into_iter()
            .try_for_each(|run| run.join().expect("a benchmark thread panicked"))
    })?;
    let busy_photo_ms = started.elapsed().as_secs_f64() * 1e3 / args.runs as f64;
    println!(
        "a street photo's models ({tiles} detector tiles{}), one thread: {:.1} ms; on {} cores at once, one photo each: {busy_photo_ms:.1} ms per photo",
        if glance_model.is_some() {
            format!(" + the {:.1} ms glance", glance_single_ms)
        } else {
            String::new()
        },
        tiles as f64 * detector_single_ms.expect("measured with one thread") + glance_single_ms,
        cores(),
    );
    set_default_executor(executor(cores()));

    // 3. The whole HTTP path at saturation.
    if !args.no_http {
        let jpeg_path = args.out_dir.join("street-1024x768.jpg");
        std::fs::write(&jpeg_path, &photos[0].1)?;
        let (large_label, large_jpeg) = &photos[2];
        let figures = http_figures(args, &jpeg_path, large_jpeg).await?;
        let result = &figures.load;
        let single_photo_ms =
            tiles as f64 * detector_single_ms.expect("measured with one thread") + glance_single_ms;
        // What the cores could do if a photo cost only its model runs, one thread each: with
        // the single-run times (the measure), and with the time of a photo's runs while
        // every core runs one (what the hardware delivers under load).
        let model_bound = cores() as f64 * 1000.0 / single_photo_ms;
        let busy_bound = cores() as f64 * 1000.0 / busy_photo_ms;
        println!(
            "\nHTTP, upload → predict → dashboard, one photo at a time, {large_label}, {:.1} MB JPEG:",
            large_jpeg.len() as f64 / 1e6
        );
        println!(
            "{:.1} ms from sending the photo to the answer (median of {}), count {}",
            figures.large_photo_ms, args.runs, figures.large_photo_count
        );
        println!(
            "\nHTTP, upload → predict → dashboard, {} s, {} connections, 1024x768 photo:",
            args.http_seconds, args.http_connections
        );
        println!(
            "{:.2} photos/s ({} answered, {} not 2xx; latency p50 {:.0} ms, p99 {:.0} ms)",
            result.photos_per_second,
            result.requests,
            result.non_2xx,
            result.latency_p50_ms,
            result.latency_p99_ms,
        );
        println!(
            "the models alone, one photo at a time: {} cores / {single_photo_ms:.1} ms = {model_bound:.2} photos/s; ratio {:.0}%",
            cores(),
            100.0 * result.photos_per_second / model_bound
        );
        println!(
            "the models alone, all cores busy: {} cores / {busy_photo_ms:.1} ms = {busy_bound:.2} photos/s; ratio {:.0}%",
            cores(),
            100.0 * result.photos_per_second / busy_bound
        );
    }
    Ok(())
}
