//! One photo, start to finish: decode upright, count with the model, count each zone, draw the
//! thumbnail, and only then answer, once the dashboard has stored the count.
//! [`count_photo`] is the synchronous core shared by the HTTP service (on the inference pool)
//! and by offline tools; [`CountingService`] adds idempotency, zones, the pool, the delivery
//! and the metrics.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::upload::UploadOptions;
use common::validate::{CameraId, InputError, check_photo};
use common::wire::{CountEvent, CountResponse, ImageSize, ZoneCount};
use common::zones::Zone;

use crate::dashboard_link::{DashboardLink, Delivery};
use crate::dashboard_lookup::DashboardLookup;
use crate::error::PredictError;
use crate::imaging::{
    THUMBNAIL_MAX_SIDE, annotated_thumbnail, decode_upright_at_least, fitted_size,
};
use crate::metrics::PredictMetrics;
use crate::model::{Counted, DensityMap, Method, PeopleCounter};
use crate::pool::InferencePool;

/// What counting one photo produced.
#[derive(Debug, Clone)]
pub struct PhotoCount {
    pub counted: Counted,
    /// People per zone, in the zones' order.
    pub zones: Vec<ZoneCount>,
    pub decode_ms: f64,
    pub size: ImageSize,
    /// Annotated JPEG for the dashboard; `None` when not asked for.
    pub thumbnail_jpeg: Option<Vec<u8>>,
    pub thumbnail_ms: f64,
}

/// People inside `zone`: with the detector, the boxes whose bottom centre (where the person
/// stands) is inside; with the density model, the density mass inside (cells on the edge
/// shared by their covered fraction); with fusion, both (its map holds the density outside the
/// boxes only).
pub fn zone_count(zone: &Zone, counted: &Counted) -> u32 {
    let boxes_inside = || {
        counted
            .boxes
            .iter()
            .filter(|b| zone.contains((b.x1 + b.x2) / 2.0, b.y2.min(0.999_999)))
            .count() as u32
    };
    let mass_inside = |map: &DensityMap| {
        let (cw, ch) = map.cell_fraction;
        let mut mass = 0.0f32;
        for row in 0..map.rows {
            for column in 0..map.columns {
                let value = map.values[(row * map.columns + column) as usize];
                if value == 0.0 {
                    continue;
                }
                let x0 = column as f32 * cw;
                let y0 = row as f32 * ch;
                let rect = (x0, y0, (x0 + cw).min(1.0), (y0 + ch).min(1.0));
                if rect.0 >= 1.0 || rect.1 >= 1.0 {
                    continue;
                }
                mass += value * zone.covered_fraction(rect);
            }
        }
        mass.max(0.0).round() as u32
    };
    match (&counted.density, counted.method) {
        (Some(map), Method::Density) => mass_inside(map),
        // Fusion's map holds only the density outside the boxes.
        (Some(map), Method::Fusion) => boxes_inside() + mass_inside(map),
        _ => boxes_inside(),
    }
}

/// Decodes `bytes`, counts the people in it and in each of `zones`. CPU-bound: call it from a
/// worker thread.
pub fn count_photo(
    counter: &dyn PeopleCounter,
    bytes: &[u8],
    max_pixels: u64,
    with_thumbnail: bool,
    zones: &[Zone],
) -> Result<PhotoCount, PredictError> {
    let started = Instant::now();
    // Large JPEGs are decoded only as large as the models and the thumbnail need.
    let photo = decode_upright_at_least(bytes, max_pixels, |width, height| {
        let (w, h) = counter.smallest_input(width, height);
        if with_thumbnail {
            let (tw, th) = fitted_size(width, height, THUMBNAIL_MAX_SIDE);
            (w.max(tw), h.max(th))
        } else {
            (w, h)
        }
    })?;
    let decode_ms = started.elapsed().as_secs_f64() * 1e3;
    let counted = counter
        .count(&photo.pixels)
        .map_err(|e| PredictError::Model(format!("{e:#}")))?;
    let zone_counts = zones
        .iter()
        .map(|zone| ZoneCount {
            name: zone.name.clone(),
            count: zone_count(zone, &counted),
        })
        .collect();
    let started = Instant::now();
    let thumbnail_jpeg =
        with_thumbnail.then(|| annotated_thumbnail(&photo.pixels, &counted, zones));
    let thumbnail_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(PhotoCount {
        counted,
        zones: zone_counts,
        decode_ms,
        size: photo.size,
        thumbnail_jpeg,
        thumbnail_ms,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The service's counting path: validate cheaply, answer a retry from the store, count on the
/// pool, and answer once the dashboard has stored the count.
pub struct CountingService {
    pub counter: Arc<dyn PeopleCounter>,
    pub pool: InferencePool,
    pub link: DashboardLink,
    pub lookup: DashboardLookup,
    pub metrics: PredictMetrics,
    pub max_pixels: u64,
    /// How long the dashboard has to acknowledge a count before the camera is told to retry.
    pub delivery_timeout: Duration,
}

impl CountingService {
    pub async fn count(
        &self,
        camera: CameraId,
        bytes: Bytes,
        options: UploadOptions,
    ) -> Result<CountResponse, PredictError> {
        // Header checks cost microseconds: refuse bad input before it takes a queue slot.
        if let Err(e) = check_photo(&bytes, self.max_pixels) {
            self.refused(&e);
            return Err(e.into());
        }
        let event_id = match &options.idempotency_key {
            Some(key) => {
                let id = key.event_id(&camera);
                if let Some(answer) = self.stored_answer(&id).await {
                    return Ok(answer);
                }
                id
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        let zones = self.lookup.zones(camera.as_str()).await;
        let counter = Arc::clone(&self.counter);
        let max_pixels = self.max_pixels;
        let job_zones = Arc::clone(&zones);
        let job = move || count_photo(counter.as_ref(), &bytes, max_pixels, true, &job_zones);
        let outcome = match self.pool.run(job).await {
            Ok(outcome) => outcome,
            Err(e) => {
                self.metrics
                    .refused
                    .with_label_values(&["overloaded"])
                    .inc();
                return Err(e.into());
            }
        };
        let photo = outcome.inspect_err(|e| {
            if let PredictError::Input(e) = e {
                self.refused(e);
            }
        })?;

        let counted_at_ms = now_ms();
        let event = CountEvent {
            id: event_id,
            camera: camera.into_string(),
            count: photo.counted.count,
            timestamp_ms: options.captured_at_ms.unwrap_or(counted_at_ms),
            counted_at_ms,
            model: photo.counted.model.to_owned(),
            zones: photo.zones.clone(),
        };
        let answer = CountResponse {
            event_id: event.id.clone(),
            camera: event.camera.clone(),
            count: event.count,
            timestamp_ms: event.timestamp_ms,
            counted_at_ms,
            zones: photo.zones,
            replayed: false,
            method: photo.counted.method.as_str().to_owned(),
            method_reason: photo.counted.reason,
            candidate_heads: photo.counted.candidate_heads,
            boxes: photo.counted.boxes,
            score_threshold: self.counter.score_threshold(),
            model: event.model.clone(),
            decode_ms: photo.decode_ms,
            inference_ms: photo.counted.inference_ms,
            image: photo.size,
        };
        let idempotent = options.idempotency_key.is_some();
        let jpeg = photo.thumbnail_jpeg.unwrap_or_default();
        let delivery = self
            .link
            .deliver(
                &event,
                idempotent.then_some(&answer),
                &jpeg,
                self.delivery_timeout,
            )
            .await;
        match delivery {
            Delivery::Stored => {}
            Delivery::AlreadyStored if idempotent => {
                // Another request with the same key was stored first: its answer is the answer.
                if let Some(first) = self.stored_answer(&event.id).await {
                    return Ok(first);
                }
            }
            Delivery::AlreadyStored => {}
            Delivery::NotStored | Delivery::Rejected => {
                self.metrics
                    .refused
                    .with_label_values(&["count_not_stored"])
                    .inc();
                return Err(PredictError::NotStored(self.delivery_timeout.as_secs()));
            }
        }
        self.metrics.photos_counted.inc();
        self.metrics.people_counted.inc_by(u64::from(event.count));
        self.metrics.decode_seconds.observe(answer.decode_ms / 1e3);
        self.metrics
            .inference_seconds
            .observe(answer.inference_ms / 1e3);
        tracing::info!(
            camera = %event.camera, count = event.count, event_id = %event.id,
            decode_ms = answer.decode_ms, inference_ms = answer.inference_ms,
            "photo counted"
        );
        Ok(answer)
    }

    /// The answer the dashboard keeps for an idempotent upload's event, marked as replayed.
    async fn stored_answer(&self, event_id: &str) -> Option<CountResponse> {
        match self.lookup.answer(event_id).await {
            Ok(Some(mut answer)) => {
                answer.replayed = true;
                self.metrics.replayed.inc();
                Some(answer)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, event_id, "cannot ask the dashboard for a stored answer; counting the photo");
                None
            }
        }
    }

    fn refused(&self, error: &InputError) {
        self.metrics
            .refused
            .with_label_values(&[error.code()])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DensityMap;
    use common::wire::PersonBox;

    fn counted(boxes: Vec<PersonBox>, density: Option<DensityMap>) -> Counted {
        Counted::made_of(boxes, density)
    }

    fn left_half() -> Zone {
        Zone {
            name: "left".into(),
            points: vec![[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]],
        }
    }

    #[test]
    fn a_person_is_in_the_zone_their_feet_are_in() {
        let person = |x1: f32, x2: f32| PersonBox {
            x1,
            y1: 0.2,
            x2,
            y2: 0.9,
            score: 0.9,
        };
        // Feet at x = 0.2 (in), 0.45 (in), 0.55 (out), 0.8 (out).
        let boxes = vec![
            person(0.1, 0.3),
            person(0.3, 0.6),
            person(0.4, 0.7),
            person(0.7, 0.9),
        ];
        assert_eq!(zone_count(&left_half(), &counted(boxes, None)), 2);
    }

    #[test]
    fn a_density_zone_holds_the_mass_inside_it() {
        // 10 x 4 cells of 1 person each, covering the photo: half of 40 in the left half.
        let map = DensityMap {
            columns: 10,
            rows: 4,
            values: vec![1.0; 40],
            cell_fraction: (0.1, 0.25),
        };
        assert_eq!(
            zone_count(&left_half(), &counted(Vec::new(), Some(map))),
            20
        );
    }
}
