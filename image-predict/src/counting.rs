//! One photo, start to finish: decode upright, count with the model, draw the thumbnail.
//! [`count_photo`] is the synchronous core shared by the HTTP service (on the inference pool)
//! and by offline tools; [`CountingService`] adds the pool, the event and the metrics.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::validate::{CameraId, InputError, check_photo};
use common::wire::{CountEvent, CountResponse, ImageSize};

use crate::dashboard_link::DashboardLink;
use crate::error::PredictError;
use crate::imaging::{
    THUMBNAIL_MAX_SIDE, annotated_thumbnail, decode_upright_at_least, fitted_size,
};
use crate::metrics::PredictMetrics;
use crate::model::{Counted, PeopleCounter};
use crate::pool::InferencePool;

/// What counting one photo produced.
#[derive(Debug, Clone)]
pub struct PhotoCount {
    pub counted: Counted,
    pub decode_ms: f64,
    pub size: ImageSize,
    /// Annotated JPEG for the dashboard; `None` when not asked for.
    pub thumbnail_jpeg: Option<Vec<u8>>,
    pub thumbnail_ms: f64,
}

/// Decodes `bytes` and counts the people in it. CPU-bound: call it from a worker thread.
pub fn count_photo(
    counter: &dyn PeopleCounter,
    bytes: &[u8],
    max_pixels: u64,
    with_thumbnail: bool,
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
    let started = Instant::now();
    let thumbnail_jpeg = with_thumbnail.then(|| annotated_thumbnail(&photo.pixels, &counted));
    let thumbnail_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(PhotoCount {
        counted,
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

/// The service's counting path: validate cheaply, count on the pool, push the event.
pub struct CountingService {
    pub counter: Arc<dyn PeopleCounter>,
    pub pool: InferencePool,
    pub link: DashboardLink,
    pub metrics: PredictMetrics,
    pub max_pixels: u64,
}

impl CountingService {
    pub async fn count(
        &self,
        camera: CameraId,
        bytes: Bytes,
    ) -> Result<CountResponse, PredictError> {
        // Header checks cost microseconds: refuse bad input before it takes a queue slot.
        if let Err(e) = check_photo(&bytes, self.max_pixels) {
            self.refused(&e);
            return Err(e.into());
        }
        let counter = Arc::clone(&self.counter);
        let max_pixels = self.max_pixels;
        let job = move || count_photo(counter.as_ref(), &bytes, max_pixels, true);
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

        let event = CountEvent {
            id: uuid::Uuid::new_v4().to_string(),
            camera: camera.into_string(),
            count: photo.counted.count,
            timestamp_ms: now_ms(),
            model: photo.counted.model.to_owned(),
        };
        if let Some(jpeg) = &photo.thumbnail_jpeg {
            self.link.push(&event, jpeg);
        }
        self.metrics.photos_counted.inc();
        self.metrics
            .people_counted
            .inc_by(u64::from(photo.counted.count));
        self.metrics.decode_seconds.observe(photo.decode_ms / 1e3);
        self.metrics
            .inference_seconds
            .observe(photo.counted.inference_ms / 1e3);
        tracing::info!(
            camera = %event.camera, count = event.count, event_id = %event.id,
            decode_ms = photo.decode_ms, inference_ms = photo.counted.inference_ms,
            "photo counted"
        );
        Ok(CountResponse {
            event_id: event.id,
            camera: event.camera,
            count: event.count,
            timestamp_ms: event.timestamp_ms,
            method: photo.counted.method.as_str().to_owned(),
            method_reason: photo.counted.reason,
            candidate_heads: photo.counted.candidate_heads,
            boxes: photo.counted.boxes,
            score_threshold: self.counter.score_threshold(),
            model: event.model,
            decode_ms: photo.decode_ms,
            inference_ms: photo.counted.inference_ms,
            image: photo.size,
        })
    }

    fn refused(&self, error: &InputError) {
        self.metrics
            .refused
            .with_label_values(&[error.code()])
            .inc();
    }
}
