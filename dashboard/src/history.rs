//! The dashboard's view of the counts, in memory: totals, the newest event per camera, people per
//! 30-second window. Rebuilt from the store at start and updated by each new event; every
//! answer (REST and live) but the photos is read from here (photos are served by the store).

use std::collections::BTreeMap;

use common::wire::CountEvent;
use serde::{Deserialize, Serialize};

use crate::store::Snapshot;

/// The histogram's window, as in the original stack.
pub const WINDOW_MS: i64 = 30_000;

/// Start of the window holding `timestamp_ms`.
pub fn window_start(timestamp_ms: i64) -> i64 {
    timestamp_ms.div_euclid(WINDOW_MS) * WINDOW_MS
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start_ms: i64,
    /// People counted in photos taken in this window.
    pub people: u64,
    pub photos: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CameraView {
    pub camera: String,
    pub count: u32,
    pub timestamp_ms: i64,
    pub event_id: String,
    pub model: String,
    /// Where the annotated photo of this count is served (changes with each new photo).
    pub photo_url: String,
}

/// The two headline figures and their companions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// "counted": people counted across all photos ever received (the original global counter).
    pub counted_total: u64,
    pub photos_total: u64,
    /// "now": the sum over cameras of each camera's latest count.
    pub people_now: u64,
    /// People counted in photos taken in the last 30 seconds (the original `/counters`).
    pub last_30s: u64,
    /// Cameras seen (not `cameras`: a summary flattens these totals beside its camera list).
    pub camera_count: usize,
    pub server_time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(flatten)]
    pub totals: Totals,
    /// Sorted by camera id.
    pub cameras: Vec<CameraView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramView {
    pub window_seconds: i64,
    /// Oldest first, ending with the window holding "now"; empty windows included as zeros.
    pub windows: Vec<Window>,
}

#[derive(Default)]
pub struct History {
    counted_total: u64,
    photos_total: u64,
    /// Newest event per camera.
    cameras: BTreeMap<String, CountEvent>,
    windows: BTreeMap<i64, Window>,
    /// Per-timestamp people for the sliding 30-second figure; only the last minute is kept.
    recent: BTreeMap<i64, u64>,
}

impl History {
    pub fn from_snapshot(snapshot: Snapshot) -> Self {
        let mut history = History {
            counted_total: snapshot.people_total,
            photos_total: snapshot.photos_total,
            ..History::default()
        };
        for event in snapshot.latest {
            history.cameras.insert(event.camera.clone(), event);
        }
        for (timestamp_ms, people) in snapshot.timeline {
            history.add_to_timeline(timestamp_ms, people);
        }
        history
    }

    fn add_to_timeline(&mut self, timestamp_ms: i64, people: u64) {
        let start = window_start(timestamp_ms);
        let window = self.windows.entry(start).or_insert(Window {
            start_ms: start,
            ..Window::default()
        });
        window.people += people;
        window.photos += 1;
        *self.recent.entry(timestamp_ms).or_default() += people;
    }

    /// Adds a newly stored event. Returns the camera's view if this event is now its newest
    /// (a late, older event updates the totals and histogram but not the panel).
    pub fn apply(&mut self, event: &CountEvent) -> Option<CameraView> {
        self.counted_total += u64::from(event.count);
        self.photos_total += 1;
        self.add_to_timeline(event.timestamp_ms, u64::from(event.count));
        let newer = self.cameras.get(&event.camera).is_none_or(|current| {
            (event.timestamp_ms, &event.id) > (current.timestamp_ms, &current.id)
        });
        if !newer {
            return None;
        }
        self.cameras.insert(event.camera.clone(), event.clone());
        Some(camera_view(event))
    }

    /// Takes the shared store's running totals as they stood after the last applied event: they
    /// are authoritative, and still right when older events have left its log unread.
    pub fn adopt_totals(&mut self, counted_total: u64, photos_total: u64) {
        self.counted_total = counted_total;
        self.photos_total = photos_total;
    }

    pub fn window(&self, timestamp_ms: i64) -> Window {
        let start = window_start(timestamp_ms);
        self.windows.get(&start).copied().unwrap_or(Window {
            start_ms: start,
            ..Window::default()
        })
    }

    /// People counted in photos taken in (now - 30 s, now].
    pub fn last_30s(&self, now_ms: i64) -> u64 {
        self.recent
            .range(now_ms - WINDOW_MS + 1..=now_ms)
            .map(|(_, people)| people)
            .sum()
    }

    pub fn totals(&self, now_ms: i64) -> Totals {
        Totals {
            counted_total: self.counted_total,
            photos_total: self.photos_total,
            people_now: self
                .cameras
                .values()
                .map(|event| u64::from(event.count))
                .sum(),
            last_30s: self.last_30s(now_ms),
            camera_count: self.cameras.len(),
            server_time_ms: now_ms,
        }
    }

    pub fn summary(&self, now_ms: i64) -> Summary {
        Summary {
            totals: self.totals(now_ms),
            cameras: self.cameras.values().map(camera_view).collect(),
        }
    }

    /// The last `count` windows up to the one holding `now_ms`.
    pub fn histogram(&self, now_ms: i64, count: usize) -> HistogramView {
        let last = window_start(now_ms);
        let first = last - (count.max(1) as i64 - 1) * WINDOW_MS;
        let windows = (0..count.max(1) as i64)
            .map(|i| self.window(first + i * WINDOW_MS))
            .collect();
        HistogramView {
            window_seconds: WINDOW_MS / 1000,
            windows,
        }
    }

    /// Forgets windows older than `before_ms` and sliding-window entries older than a minute.
    pub fn prune(&mut self, before_ms: i64, now_ms: i64) {
        self.windows = self.windows.split_off(&window_start(before_ms));
        self.recent = self.recent.split_off(&(now_ms - 2 * WINDOW_MS));
    }
}

fn camera_view(event: &CountEvent) -> CameraView {
    CameraView {
        camera: event.camera.clone(),
        count: event.count,
        timestamp_ms: event.timestamp_ms,
        event_id: event.id.clone(),
        model: event.model.clone(),
        photo_url: format!("/api/v1/cameras/{}/photo?v={}", event.camera, event.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, camera: &str, count: u32, timestamp_ms: i64) -> CountEvent {
        CountEvent {
            id: id.into(),
            camera: camera.into(),
            count,
            timestamp_ms,
            model: "m".into(),
        }
    }

    #[test]
    fn counted_and_now_are_different_figures() {
        let mut history = History::default();
        history.apply(&event("1", "a", 5, 1_000));
        history.apply(&event("2", "a", 3, 2_000));
        history.apply(&event("3", "b", 4, 2_500));
        let totals = history.totals(3_000);
        assert_eq!(totals.counted_total, 12, "all photos");
        assert_eq!(totals.people_now, 7, "latest per camera: 3 + 4");
        assert_eq!(totals.photos_total, 3);
        assert_eq!(totals.camera_count, 2);
    }

    #[test]
    fn windows_are_30_seconds_and_include_empty_ones() {
        let mut history = History::default();
        history.apply(&event("1", "a", 5, 60_000));
        history.apply(&event("2", "a", 2, 89_999));
        history.apply(&event("3", "a", 4, 120_000));
        let view = history.histogram(125_000, 4);
        let people: Vec<u64> = view.windows.iter().map(|w| w.people).collect();
        let starts: Vec<i64> = view.windows.iter().map(|w| w.start_ms).collect();
        assert_eq!(starts, vec![30_000, 60_000, 90_000, 120_000]);
        assert_eq!(people, vec![0, 7, 0, 4]);
        assert_eq!(view.window_seconds, 30);
    }

    #[test]
    fn a_late_event_counts_but_does_not_replace_the_panel() {
        let mut history = History::default();
        assert!(history.apply(&event("new", "a", 2, 50_000)).is_some());
        assert!(history.apply(&event("old", "a", 9, 10_000)).is_none());
        let summary = history.summary(60_000);
        assert_eq!(summary.cameras[0].event_id, "new");
        assert_eq!(summary.totals.counted_total, 11);
        assert_eq!(history.window(10_000).people, 9);
    }

    #[test]
    fn last_30_seconds_slides() {
        let mut history = History::default();
        history.apply(&event("1", "a", 5, 10_000));
        history.apply(&event("2", "a", 7, 35_000));
        assert_eq!(history.last_30s(39_000), 12);
        assert_eq!(history.last_30s(41_000), 7);
        assert_eq!(history.last_30s(70_000), 0);
    }

    #[test]
    fn rebuilt_from_a_snapshot() {
        let snapshot = Snapshot {
            people_total: 100,
            photos_total: 10,
            latest: vec![event("x", "cam", 6, 40_000)],
            timeline: vec![(31_000, 4), (40_000, 6)],
            log_position: None,
        };
        let history = History::from_snapshot(snapshot);
        assert_eq!(history.totals(41_000).counted_total, 100);
        assert_eq!(history.totals(41_000).people_now, 6);
        assert_eq!(history.window(35_000).people, 10);
        assert_eq!(history.summary(41_000).cameras[0].event_id, "x");
    }
}
