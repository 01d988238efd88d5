//! Wire formats between the services.
//!
//! - [`CountResponse`]: the JSON answer of image-predict, passed through unchanged by image-upload.
//! - [`CountEvent`] + thumbnail: what image-predict pushes to the dashboard over its WebSocket, as one
//!   binary frame (see [`encode_event_frame`]): the JPEG travels as raw bytes, not base64.
//! - [`IngestReply`]: the dashboard's answer to each event, as a text frame.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// One person found in a photo. Coordinates are fractions (0..=1) of the photo's width and height,
/// after EXIF orientation has been applied.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PersonBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
}

/// People counted inside one of a camera's zones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneCount {
    pub name: String,
    pub count: u32,
}

/// The answer to one counted photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountResponse {
    /// Identifies this count everywhere (dashboard history, logs). Derived from the camera's
    /// idempotency key when it sent one.
    pub event_id: String,
    pub camera: String,
    pub count: u32,
    /// When the photo was taken (the capture time the camera sent), or else when it was
    /// counted; Unix milliseconds. The histogram and the series use this time.
    pub timestamp_ms: i64,
    /// When image-predict counted it, Unix milliseconds.
    #[serde(default)]
    pub counted_at_ms: i64,
    /// People inside each of the camera's zones (none configured: empty).
    #[serde(default)]
    pub zones: Vec<ZoneCount>,
    /// True when this is the stored answer to an earlier upload with the same idempotency key:
    /// the photo was not counted again.
    #[serde(default)]
    pub replayed: bool,
    /// `detector` (count = person boxes) or `density` (count = the density map's sum).
    pub method: String,
    /// Why that method was chosen, e.g. `sparse scene: 95 candidate heads < 260`.
    pub method_reason: String,
    /// The density signal: weak peaks of the detector's person heatmap.
    pub candidate_heads: u32,
    /// Person boxes found by the detector (also when the density model counted).
    pub boxes: Vec<PersonBox>,
    pub score_threshold: f32,
    /// The model that produced `count`.
    pub model: String,
    pub decode_ms: f64,
    pub inference_ms: f64,
    pub image: ImageSize,
}

/// One count as the dashboard receives it; the annotated JPEG thumbnail travels beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountEvent {
    /// Unique per count, assigned by image-predict (or derived from the camera's idempotency
    /// key); the dashboard ignores an id it has already stored, so image-predict may resend an
    /// event whose acknowledgement it did not see.
    pub id: String,
    pub camera: String,
    pub count: u32,
    /// When the photo was taken (or, without a capture time, counted), Unix milliseconds.
    pub timestamp_ms: i64,
    /// When it was counted, Unix milliseconds (0 in events stored before this field existed).
    #[serde(default)]
    pub counted_at_ms: i64,
    pub model: String,
    /// People per zone of the camera, when it has zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneCount>,
}

/// The JSON header of an event frame: the event, and the answer the camera was given when it
/// sent an idempotency key (the dashboard keeps it, so that a retry gets the same answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventHeader {
    #[serde(flatten)]
    pub event: CountEvent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<CountResponse>,
}

/// The dashboard's answer to one event frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum IngestReply {
    /// The event is stored (or, `duplicate`, was already): image-predict may forget it.
    Ack {
        id: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// The event can never be stored (malformed): image-predict drops it instead of resending forever.
    Reject { id: Option<String>, reason: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame shorter than its 4-byte header length")]
    TooShort,
    #[error("frame announces a {announced}-byte header but holds only {available} bytes")]
    Truncated { announced: usize, available: usize },
    #[error("event header is not valid JSON: {0}")]
    Header(String),
}

/// Encodes an event frame: a 4-byte big-endian header length, the JSON header ([`EventHeader`]:
/// the event and, optionally, its answer), then the JPEG bytes.
pub fn encode_event_frame(
    event: &CountEvent,
    answer: Option<&CountResponse>,
    jpeg: &[u8],
) -> Bytes {
    let header = serde_json::to_vec(&EventHeader {
        event: event.clone(),
        answer: answer.cloned(),
    })
    .expect("an event header always serialises");
    let mut frame = BytesMut::with_capacity(4 + header.len() + jpeg.len());
    frame.put_u32(header.len() as u32);
    frame.put_slice(&header);
    frame.put_slice(jpeg);
    frame.freeze()
}

/// Splits a frame made by [`encode_event_frame`] into its header and its JPEG (sharing the
/// frame's memory).
pub fn decode_event_frame(frame: &Bytes) -> Result<(EventHeader, Bytes), FrameError> {
    let len_bytes: [u8; 4] = frame
        .get(..4)
        .ok_or(FrameError::TooShort)?
        .try_into()
        .expect("slice of 4");
    let header_len = u32::from_be_bytes(len_bytes) as usize;
    let header_end = 4usize.saturating_add(header_len);
    if frame.len() < header_end {
        return Err(FrameError::Truncated {
            announced: header_len,
            available: frame.len() - 4,
        });
    }
    let event = serde_json::from_slice(&frame[4..header_end])
        .map_err(|e| FrameError::Header(e.to_string()))?;
    Ok((event, frame.slice(header_end..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> CountEvent {
        CountEvent {
            id: "e-1".into(),
            camera: "gate-3".into(),
            count: 7,
            timestamp_ms: 1_700_000_000_000,
            counted_at_ms: 1_700_000_000_500,
            model: "centernet".into(),
            zones: vec![ZoneCount {
                name: "queue".into(),
                count: 3,
            }],
        }
    }

    #[test]
    fn frame_round_trips_event_and_jpeg() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
        let frame = encode_event_frame(&event(), None, &jpeg);
        let (decoded, bytes) = decode_event_frame(&frame).unwrap();
        assert_eq!(decoded.event, event());
        assert_eq!(decoded.answer, None);
        assert_eq!(&bytes[..], &jpeg);
    }

    /// Events stored before the capture time and zones existed still decode.
    #[test]
    fn older_events_decode() {
        let old: CountEvent = serde_json::from_str(
            r#"{"id":"e","camera":"c","count":1,"timestamp_ms":5,"model":"m"}"#,
        )
        .unwrap();
        assert_eq!((old.counted_at_ms, old.zones.len()), (0, 0));
    }

    #[test]
    fn truncated_frames_are_errors_not_panics() {
        let frame = encode_event_frame(&event(), None, b"jpeg");
        assert_eq!(
            decode_event_frame(&frame.slice(..2)),
            Err(FrameError::TooShort)
        );
        assert!(matches!(
            decode_event_frame(&frame.slice(..10)),
            Err(FrameError::Truncated { .. })
        ));
        let garbage = Bytes::from_static(&[0, 0, 0, 3, b'{', b'x', b'}']);
        assert!(matches!(
            decode_event_frame(&garbage),
            Err(FrameError::Header(_))
        ));
    }

    #[test]
    fn replies_have_a_type_tag() {
        let ack = serde_json::to_string(&IngestReply::Ack {
            id: "a".into(),
            duplicate: false,
        })
        .unwrap();
        assert_eq!(ack, r#"{"type":"ack","id":"a"}"#);
        let old: IngestReply = serde_json::from_str(r#"{"type":"ack","id":"a"}"#).unwrap();
        assert_eq!(
            old,
            IngestReply::Ack {
                id: "a".into(),
                duplicate: false
            }
        );
    }
}
