//! The dashboard's view of the counts, in memory: totals, the newest event per camera, each
//! camera's last hour, people per 30-second window, the levels of cameras and groups. Rebuilt
//! from the store at start and updated by each new event; the live page and most REST answers
//! are read from here (photos, series and exports come from the store).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use common::wire::{CountEvent, ZoneCount};
use serde::{Deserialize, Serialize};

use crate::alerts::{Level, SubjectKind};
use crate::registry::Registry;
use crate::store::{ROLLUP_MS, Snapshot, rollup_start};

/// The histogram's window, as in the original stack.
pub const WINDOW_MS: i64 = 30_000;
/// Each camera's recent counts are kept this long: the sparkline's hour and the 15 minutes
/// before its oldest step.
const RECENT_MS: i64 = 75 * 60 * 1000;
/// Steps of the sparkline: the last hour in 5-minute steps.
pub const SPARKLINE_STEPS: usize = 12;
const CHANGE_MS: i64 = 15 * 60 * 1000;

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
    /// Display name, group and capacity from the camera registry.
    pub name: Option<String>,
    pub group: Option<String>,
    pub capacity: Option<u32>,
    pub count: u32,
    pub timestamp_ms: i64,
    pub event_id: String,
    pub model: String,
    /// Where the annotated photo of this count is served (changes with each new photo).
    pub photo_url: String,
    /// People per zone in the latest photo.
    pub zones: Vec<ZoneCount>,
    pub level: Level,
    /// The latest count minus the camera's count 15 minutes before it (no photo that old in
    /// the last 75 minutes: none).
    pub change_15m: Option<i64>,
    /// The last count in each 5-minute step of the last hour, oldest first (none: no photo).
    pub sparkline: Vec<Option<u32>>,
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

/// A group of cameras (from the registry), now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub group: String,
    /// Cameras of the group that have sent a photo.
    pub cameras: usize,
    /// The sum of its cameras' latest counts.
    pub people_now: u64,
    pub capacity: Option<u32>,
    pub level: Level,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(flatten)]
    pub totals: Totals,
    /// Sorted by camera id.
    pub cameras: Vec<CameraView>,
    /// Sorted by name.
    pub groups: Vec<GroupView>,
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
    /// Each camera's (photo time, count) of the last 75 minutes, in time order.
    recent_by_camera: BTreeMap<String, VecDeque<(i64, u32)>>,
    windows: BTreeMap<i64, Window>,
    /// Per-timestamp people for the sliding 30-second figure; only the last minute is kept.
    recent: BTreeMap<i64, u64>,
    registry: Arc<Registry>,
    levels: BTreeMap<(SubjectKind, String), Level>,
}

impl History {
    pub fn from_snapshot(snapshot: Snapshot, registry: Arc<Registry>) -> Self {
        let mut history = History {
            counted_total: snapshot.people_total,
            photos_total: snapshot.photos_total,
            registry,
            ..History::default()
        };
        for event in snapshot.latest {
            history.cameras.insert(event.camera.clone(), event);
        }
        for entry in snapshot.timeline {
            history.add_to_timeline(&entry.camera, entry.timestamp_ms, entry.count);
        }
        history
    }

    fn add_to_timeline(&mut self, camera: &str, timestamp_ms: i64, count: u32) {
        let start = window_start(timestamp_ms);
        let window = self.windows.entry(start).or_insert(Window {
            start_ms: start,
            ..Window::default()
        });
        window.people += u64::from(count);
        window.photos += 1;
        *self.recent.entry(timestamp_ms).or_default() += u64::from(count);
        let recent = self.recent_by_camera.entry(camera.to_owned()).or_default();
        let at = recent.partition_point(|&(t, _)| t <= timestamp_ms);
        recent.insert(at, (timestamp_ms, count));
        let newest = recent.back().map_or(timestamp_ms, |&(t, _)| t);
        while recent.front().is_some_and(|&(t, _)| t < newest - RECENT_MS) {
            recent.pop_front();
        }
    }

    /// Adds a newly stored event. Returns the camera's view if this event is now its newest
    /// (a late, older event updates the totals and histogram but not the panel).
    pub fn apply(&mut self, event: &CountEvent, now_ms: i64) -> Option<CameraView> {
        self.counted_total += u64::from(event.count);
        self.photos_total += 1;
        self.add_to_timeline(&event.camera, event.timestamp_ms, event.count);
        let newer = self.cameras.get(&event.camera).is_none_or(|current| {
            (event.timestamp_ms, &event.id) > (current.timestamp_ms, &current.id)
        });
        if !newer {
            return None;
        }
        self.cameras.insert(event.camera.clone(), event.clone());
        Some(self.camera_view(event, now_ms))
    }

    /// Takes the shared store's running totals as they stood after the last applied event: they
    /// are authoritative, and still right when older events have left its log unread.
    pub fn adopt_totals(&mut self, counted_total: u64, photos_total: u64) {
        self.counted_total = counted_total;
        self.photos_total = photos_total;
    }

    pub fn set_registry(&mut self, registry: Arc<Registry>) {
        self.registry = registry;
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn set_level(&mut self, kind: SubjectKind, subject: &str, level: Level) {
        self.levels.insert((kind, subject.to_owned()), level);
    }

    pub fn level(&self, kind: SubjectKind, subject: &str) -> Level {
        self.levels
            .get(&(kind, subject.to_owned()))
            .copied()
            .unwrap_or_default()
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
            cameras: self
                .cameras
                .values()
                .map(|e| self.camera_view(e, now_ms))
                .collect(),
            groups: self.groups(),
        }
    }

    /// The camera's view now, if it has sent a photo.
    pub fn camera(&self, camera: &str, now_ms: i64) -> Option<CameraView> {
        self.cameras
            .get(camera)
            .map(|e| self.camera_view(e, now_ms))
    }

    /// Cameras that have sent a photo, in id order.
    pub fn camera_ids(&self) -> impl Iterator<Item = &String> {
        self.cameras.keys()
    }

    /// The latest count of each camera.
    pub fn latest_counts(&self) -> impl Iterator<Item = (&String, u32)> {
        self.cameras.iter().map(|(c, e)| (c, e.count))
    }

    /// Every group of the registry, with its cameras' latest counts summed.
    pub fn groups(&self) -> Vec<GroupView> {
        self.registry
            .groups()
            .into_iter()
            .map(|group| self.group_view(&group))
            .collect()
    }

    pub fn group_view(&self, group: &str) -> GroupView {
        let members: Vec<u32> = self
            .cameras
            .iter()
            .filter(|(camera, _)| self.registry.group_of(camera) == Some(group))
            .map(|(_, e)| e.count)
            .collect();
        GroupView {
            group: group.to_owned(),
            cameras: members.len(),
            people_now: members.iter().map(|&c| u64::from(c)).sum(),
            capacity: self.registry.group(group).and_then(|g| g.capacity),
            level: self.level(SubjectKind::Group, group),
        }
    }

    /// The cameras of `group` (from the registry) that have sent a photo.
    pub fn group_cameras(&self, group: &str) -> Vec<String> {
        self.cameras
            .keys()
            .filter(|c| self.registry.group_of(c) == Some(group))
            .cloned()
            .collect()
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

    fn camera_view(&self, event: &CountEvent, now_ms: i64) -> CameraView {
        let settings = self.registry.camera(&event.camera);
        let recent = self.recent_by_camera.get(&event.camera);
        let change_15m = recent.and_then(|recent| {
            let before = event.timestamp_ms - CHANGE_MS;
            let at = recent.partition_point(|&(t, _)| t <= before);
            at.checked_sub(1)
                .map(|i| i64::from(event.count) - i64::from(recent[i].1))
        });
        let last_step = rollup_start(now_ms);
        let first_step = last_step - (SPARKLINE_STEPS as i64 - 1) * ROLLUP_MS;
        let mut sparkline = vec![None; SPARKLINE_STEPS];
        for &(t, count) in recent.into_iter().flatten() {
            if t >= first_step && t < last_step + ROLLUP_MS {
                // In time order: the last one of a step wins.
                sparkline[((t - first_step) / ROLLUP_MS) as usize] = Some(count);
            }
        }
        CameraView {
            camera: event.camera.clone(),
            name: settings.and_then(|s| s.name.clone()),
            group: settings.and_then(|s| s.group.clone()),
            capacity: settings.and_then(|s| s.capacity),
            count: event.count,
            timestamp_ms: event.timestamp_ms,
            event_id: event.id.clone(),
            model: event.model.clone(),
            photo_url: format!("/api/v1/cameras/{}/photo?v={}", event.camera, event.id),
            zones: event.zones.clone(),
            level: self.level(SubjectKind::Camera, &event.camera),
            change_15m,
            sparkline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{CameraSettings, RegistryFile};
    use crate::store::TimelineEntry;

    fn event(id: &str, camera: &str, count: u32, timestamp_ms: i64) -> CountEvent {
        CountEvent {
            id: id.into(),
            camera: camera.into(),
            count,
            timestamp_ms,
            counted_at_ms: timestamp_ms,
            model: "m".into(),
            zones: Vec::new(),
        }
    }

    #[test]
    fn counted_and_now_are_different_figures() {
        let mut history = History::default();
        history.apply(&event("1", "a", 5, 1_000), 3_000);
        history.apply(&event("2", "a", 3, 2_000), 3_000);
        history.apply(&event("3", "b", 4, 2_500), 3_000);
        let totals = history.totals(3_000);
        assert_eq!(totals.counted_total, 12, "all photos");
        assert_eq!(totals.people_now, 7, "latest per camera: 3 + 4");
        assert_eq!(totals.photos_total, 3);
        assert_eq!(totals.camera_count, 2);
    }

    #[test]
    fn windows_are_30_seconds_and_include_empty_ones() {
        let mut history = History::default();
        history.apply(&event("1", "a", 5, 60_000), 0);
        history.apply(&event("2", "a", 2, 89_999), 0);
        history.apply(&event("3", "a", 4, 120_000), 0);
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
        assert!(
            history
                .apply(&event("new", "a", 2, 50_000), 60_000)
                .is_some()
        );
        assert!(
            history
                .apply(&event("old", "a", 9, 10_000), 60_000)
                .is_none()
        );
        let summary = history.summary(60_000);
        assert_eq!(summary.cameras[0].event_id, "new");
        assert_eq!(summary.totals.counted_total, 11);
        assert_eq!(history.window(10_000).people, 9);
    }

    #[test]
    fn last_30_seconds_slides() {
        let mut history = History::default();
        history.apply(&event("1", "a", 5, 10_000), 0);
        history.apply(&event("2", "a", 7, 35_000), 0);
        assert_eq!(history.last_30s(39_000), 12);
        assert_eq!(history.last_30s(41_000), 7);
        assert_eq!(history.last_30s(70_000), 0);
    }

    #[test]
    fn sparkline_and_change_over_15_minutes() {
        let mut history = History::default();
        let minute = 60_000;
        let base = 100 * ROLLUP_MS; // a 5-minute boundary
        for i in 0..60 {
            history.apply(
                &event(&format!("e{i}"), "a", 10 + i as u32, base + i * minute),
                0,
            );
        }
        let now = base + 59 * minute + 10_000;
        let view = history.camera("a", now).unwrap();
        assert_eq!(view.count, 69);
        assert_eq!(
            view.change_15m,
            Some(15),
            "69 now, 54 fifteen minutes before"
        );
        assert_eq!(view.sparkline.len(), SPARKLINE_STEPS);
        // Steps of five minutes, each showing its last photo: 14, 19, ... 69.
        let expected: Vec<Option<u32>> = (0..12).map(|s| Some(14 + 5 * s)).collect();
        assert_eq!(view.sparkline, expected);
        // A camera with one photo: no change, one step.
        history.apply(&event("b1", "b", 3, now - 1_000), now);
        let b = history.camera("b", now).unwrap();
        assert_eq!(b.change_15m, None);
        assert_eq!(b.sparkline.iter().flatten().count(), 1);
    }

    #[test]
    fn groups_sum_their_cameras_latest_counts() {
        let mut file = RegistryFile::default();
        for camera in ["a", "b"] {
            file.cameras.insert(
                camera.into(),
                CameraSettings {
                    group: Some("hall".into()),
                    name: Some(format!("Camera {camera}")),
                    ..CameraSettings::default()
                },
            );
        }
        let mut history = History::from_snapshot(
            Snapshot::default(),
            Arc::new(Registry::new(file, BTreeMap::new())),
        );
        history.apply(&event("1", "a", 5, 1), 2);
        history.apply(&event("2", "b", 6, 1), 2);
        history.apply(&event("3", "c", 7, 1), 2);
        let groups = history.groups();
        assert_eq!(groups.len(), 1);
        assert_eq!((groups[0].cameras, groups[0].people_now), (2, 11));
        assert_eq!(
            history.camera("a", 2).unwrap().name.as_deref(),
            Some("Camera a")
        );
        assert_eq!(
            history.group_cameras("hall"),
            vec!["a".to_owned(), "b".to_owned()]
        );
    }

    #[test]
    fn rebuilt_from_a_snapshot() {
        let snapshot = Snapshot {
            people_total: 100,
            photos_total: 10,
            latest: vec![event("x", "cam", 6, 40_000)],
            timeline: vec![
                TimelineEntry {
                    timestamp_ms: 31_000,
                    camera: "cam".into(),
                    count: 4,
                },
                TimelineEntry {
                    timestamp_ms: 40_000,
                    camera: "cam".into(),
                    count: 6,
                },
            ],
            log_position: None,
        };
        let history = History::from_snapshot(snapshot, Arc::default());
        assert_eq!(history.totals(41_000).counted_total, 100);
        assert_eq!(history.totals(41_000).people_now, 6);
        assert_eq!(history.window(35_000).people, 10);
        assert_eq!(history.summary(41_000).cameras[0].event_id, "x");
    }
}
