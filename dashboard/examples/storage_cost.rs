//! What a week of history costs the embedded store: CAMERAS cameras sending one photo a minute
//! for DAYS days, inserted with the store's own code and pruned as the dashboard prunes it
//! (per-photo events kept `HISTORY_HOURS`, 5-minute rollups `ROLLUP_DAYS`, every simulated
//! hour), then the file's size. Storage grows linearly with the cameras (every table is keyed
//! by camera), so a run with 10 cameras gives the cost of 1,000 by multiplying by 100.
//!
//! ```sh
//! cargo run --release -p dashboard --example storage_cost -- [CAMERAS] [DAYS] [THUMBNAIL_BYTES] [DIR]
//! ```
//! DIR (default: a new folder under /dev/shm, where an fsync costs nothing, so that a week of
//! commits takes minutes; the bytes on disk are the same) is removed afterwards.

use std::time::Instant;

use common::wire::CountEvent;
use dashboard::store::embedded::{EmbeddedSettings, EmbeddedStore};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let cameras: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let days: i64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(7);
    let thumbnail_bytes: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(75_000);
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(format!(
                "/dev/shm/crowd-storage-cost-{}",
                std::process::id()
            ))
        });
    // The dashboard's defaults (dashboard --help): HISTORY_HOURS 24, ROLLUP_DAYS 7,
    // PHOTOS_PER_CAMERA 12.
    let history_ms = 24 * HOUR_MS;
    let rollup_ms = 7 * 24 * HOUR_MS;
    let settings = EmbeddedSettings {
        photos_per_camera: 12,
        lock_wait: std::time::Duration::from_secs(1),
        max_pending_deliveries: 1000,
    };
    let _ = std::fs::remove_dir_all(&dir);
    let store = EmbeddedStore::open(&dir, settings)?;
    // A thumbnail-sized body (the annotated JPEGs are 74-82 kB); its content does not matter.
    let thumbnail: Vec<u8> = (0..thumbnail_bytes)
        .map(|i| (i * 131 % 251) as u8)
        .collect();
    let start_ms: i64 = 1_790_000_000_000;
    let minutes = days * 24 * 60;
    let started = Instant::now();
    for minute in 0..minutes {
        let now = start_ms + minute * MINUTE_MS;
        for camera in 0..cameras {
            let event = CountEvent {
                id: format!("{camera}-{minute}"),
                camera: format!("camera-{camera:04}"),
                count: ((minute as usize * 7 + camera * 13) % 200) as u32,
                timestamp_ms: now,
                counted_at_ms: now + 300,
                model: "centernet-coco".into(),
                zones: Vec::new(),
            };
            store.insert(&event, &thumbnail, None)?;
        }
        if minute % 60 == 59 {
            store.prune(now - history_ms, now - rollup_ms)?;
        }
    }
    let file = dir.join("dashboard.redb");
    let bytes = std::fs::metadata(&file)?.len();
    let events = store.stored_events()?;
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
    let photos_kept = (cameras * settings.photos_per_camera * thumbnail_bytes) as f64;
    println!(
        "{cameras} cameras x 1 photo a minute x {days} days = {} photos inserted in {:.0} s; \
         {events} per-photo events kept (24 h); file {:.1} MB, of which the kept photos' bytes \
         are {:.1} MB ({} per camera x {thumbnail_bytes} B); per camera {:.2} MB; \
         for 1,000 cameras x100: {:.2} GB",
        minutes * cameras as i64,
        started.elapsed().as_secs_f64(),
        bytes as f64 / 1e6,
        photos_kept / 1e6,
        settings.photos_per_camera,
        bytes as f64 / 1e6 / cameras as f64,
        bytes as f64 * 1000.0 / cameras as f64 / 1e9,
    );
    Ok(())
}
