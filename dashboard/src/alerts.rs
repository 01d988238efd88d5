//! Crowding levels and the alerts they raise: the decision, free of any I/O.
//!
//! Each camera, and each group of cameras (the sum of its cameras' latest counts), has a level:
//! normal, warning or critical, from its registry thresholds. A level is entered when the count
//! reaches its threshold and left when the count falls below the threshold less the hysteresis
//! (10 % by default), and only once the new level has held for the minimum duration, measured
//! between the photos' own times: one noisy photo does not flap it. Every change of level is
//! an [`Alert`], raised or cleared, with an id derived from what it says, so that whoever
//! computes it again computes the same id.
//!
//! The engine is fed events in the order of the store's log; the same events in the same
//! order give the same alerts wherever they are computed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::registry::{Registry, Threshold};

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    #[default]
    Normal,
    Warning,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Normal => "normal",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }

    /// 0, 1, 2: the value of the level gauges.
    pub fn rank(self) -> i64 {
        self as i64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Camera,
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The level went up.
    Raised,
    /// The level went down.
    Cleared,
}

/// One change of level, as shown in the alert log and posted to the webhooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Derived from subject, levels and time: the idempotency id of its deliveries.
    pub id: String,
    pub subject_kind: SubjectKind,
    pub subject: String,
    pub kind: AlertKind,
    pub level: Level,
    pub previous_level: Level,
    /// The count that settled the change (the camera's, or the group's sum).
    pub count: u64,
    /// The threshold of the level entered (raised) or left (cleared), in people.
    pub threshold: Option<f64>,
    /// The photo time at which the change took effect, Unix milliseconds.
    pub time_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertRules {
    /// A level is left below its threshold times (1 - hysteresis).
    pub hysteresis: f64,
    /// A new level must hold this long (between photo times) before it takes effect.
    pub min_duration_ms: i64,
}

/// Warning and critical, in people.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Levels {
    pub warning: Option<f64>,
    pub critical: Option<f64>,
}

impl Levels {
    pub fn new(
        capacity: Option<u32>,
        warning: Option<Threshold>,
        critical: Option<Threshold>,
    ) -> Self {
        Self {
            warning: warning.and_then(|t| t.people(capacity)),
            critical: critical.and_then(|t| t.people(capacity)),
        }
    }

    fn threshold(&self, level: Level) -> Option<f64> {
        match level {
            Level::Normal => None,
            Level::Warning => self.warning,
            Level::Critical => self.critical,
        }
    }

    /// The level `count` calls for, starting from `current`: up to the highest level whose
    /// threshold it reaches; down only past the current level's threshold less the hysteresis.
    pub fn target(&self, count: f64, current: Level, hysteresis: f64) -> Level {
        let reached = [Level::Critical, Level::Warning]
            .into_iter()
            .find(|&l| self.threshold(l).is_some_and(|t| count >= t))
            .unwrap_or(Level::Normal);
        if reached >= current {
            return reached;
        }
        let mut level = current;
        while level > reached {
            match self.threshold(level) {
                Some(t) if count >= t * (1.0 - hysteresis) => break,
                _ => {
                    level = if level == Level::Critical {
                        Level::Warning
                    } else {
                        Level::Normal
                    }
                }
            }
        }
        level
    }
}

/// One subject's state: its level, and a change waiting for the minimum duration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SubjectState {
    pub level: Level,
    /// The level called for since this photo time, if not the current one.
    pub pending: Option<(Level, i64)>,
    pub count: u64,
}

impl SubjectState {
    /// Takes one count at `time_ms`; returns the change of level, if one takes effect.
    fn observe(
        &mut self,
        count: u64,
        time_ms: i64,
        levels: &Levels,
        rules: &AlertRules,
    ) -> Option<(Level, Level)> {
        self.count = count;
        let target = levels.target(count as f64, self.level, rules.hysteresis);
        if target == self.level {
            self.pending = None;
            return None;
        }
        let since = match self.pending {
            Some((level, since)) if level == target => since,
            _ => {
                self.pending = Some((target, time_ms));
                time_ms
            }
        };
        if time_ms - since >= rules.min_duration_ms {
            let previous = self.level;
            self.level = target;
            self.pending = None;
            Some((previous, target))
        } else {
            None
        }
    }
}

/// Levels of every camera and group, fed the stored events in log order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Engine {
    pub subjects: BTreeMap<(SubjectKind, String), SubjectState>,
    /// Each camera's latest count and its photo time: groups sum these.
    latest: BTreeMap<String, (u64, i64)>,
}

impl Engine {
    pub fn level(&self, kind: SubjectKind, subject: &str) -> Level {
        self.subjects
            .get(&(kind, subject.to_owned()))
            .map_or(Level::Normal, |s| s.level)
    }

    /// Takes one stored event (camera, count, photo time); returns the alerts it raises or
    /// clears: the camera's, then its group's. A photo older than the camera's latest changes
    /// nothing (it is history, not news).
    pub fn observe(
        &mut self,
        camera: &str,
        count: u32,
        time_ms: i64,
        registry: &Registry,
        rules: &AlertRules,
    ) -> Vec<Alert> {
        if self.latest.get(camera).is_some_and(|&(_, t)| t > time_ms) {
            return Vec::new();
        }
        self.latest
            .insert(camera.to_owned(), (u64::from(count), time_ms));
        let mut alerts = Vec::new();
        let settings = registry.camera(camera);
        let camera_levels = settings.map_or_else(Levels::default, |s| {
            Levels::new(s.capacity, s.warning, s.critical)
        });
        self.step(
            SubjectKind::Camera,
            camera,
            u64::from(count),
            time_ms,
            &camera_levels,
            rules,
            &mut alerts,
        );
        if let Some(group) = settings.and_then(|s| s.group.as_deref()) {
            let sum: u64 = self
                .latest
                .iter()
                .filter(|(c, _)| registry.group_of(c) == Some(group))
                .map(|(_, (n, _))| n)
                .sum();
            let levels = registry.group(group).map_or_else(Levels::default, |g| {
                Levels::new(g.capacity, g.warning, g.critical)
            });
            self.step(
                SubjectKind::Group,
                group,
                sum,
                time_ms,
                &levels,
                rules,
                &mut alerts,
            );
        }
        alerts
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        kind: SubjectKind,
        subject: &str,
        count: u64,
        time_ms: i64,
        levels: &Levels,
        rules: &AlertRules,
        alerts: &mut Vec<Alert>,
    ) {
        let state = self.subjects.entry((kind, subject.to_owned())).or_default();
        if let Some((previous, level)) = state.observe(count, time_ms, levels, rules) {
            let raised = level > previous;
            alerts.push(Alert {
                id: alert_id(kind, subject, previous, level, time_ms),
                subject_kind: kind,
                subject: subject.to_owned(),
                kind: if raised {
                    AlertKind::Raised
                } else {
                    AlertKind::Cleared
                },
                level,
                previous_level: previous,
                count,
                threshold: levels.threshold(if raised { level } else { previous }),
                time_ms,
            });
        }
    }
}

fn alert_id(
    kind: SubjectKind,
    subject: &str,
    previous: Level,
    level: Level,
    time_ms: i64,
) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(
        format!("{kind:?}\n{subject}\n{previous:?}\n{level:?}\n{time_ms}").as_bytes(),
    );
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("alert-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{CameraSettings, GroupSettings, RegistryFile};

    const RULES: AlertRules = AlertRules {
        hysteresis: 0.1,
        min_duration_ms: 60_000,
    };

    fn registry() -> Registry {
        let mut file = RegistryFile::default();
        for camera in ["a", "b"] {
            file.cameras.insert(
                camera.into(),
                CameraSettings {
                    group: Some("hall".into()),
                    capacity: Some(100),
                    warning: Some(Threshold::Percent(80.0)),
                    critical: Some(Threshold::People(100)),
                    ..CameraSettings::default()
                },
            );
        }
        file.groups.insert(
            "hall".into(),
            GroupSettings {
                capacity: Some(150),
                warning: Some(Threshold::People(120)),
                critical: Some(Threshold::Percent(100.0)),
            },
        );
        Registry::new(file, BTreeMap::new())
    }

    #[test]
    fn levels_enter_at_the_threshold_and_leave_below_the_hysteresis() {
        let levels = Levels {
            warning: Some(80.0),
            critical: Some(100.0),
        };
        assert_eq!(levels.target(79.0, Level::Normal, 0.1), Level::Normal);
        assert_eq!(levels.target(80.0, Level::Normal, 0.1), Level::Warning);
        assert_eq!(levels.target(130.0, Level::Normal, 0.1), Level::Critical);
        // Critical is left below 90, warning below 72.
        assert_eq!(levels.target(91.0, Level::Critical, 0.1), Level::Critical);
        assert_eq!(levels.target(89.0, Level::Critical, 0.1), Level::Warning);
        assert_eq!(levels.target(73.0, Level::Warning, 0.1), Level::Warning);
        assert_eq!(levels.target(71.0, Level::Warning, 0.1), Level::Normal);
        assert_eq!(levels.target(10.0, Level::Critical, 0.1), Level::Normal);
        assert_eq!(
            Levels::default().target(1e9, Level::Normal, 0.1),
            Level::Normal
        );
    }

    #[test]
    fn one_noisy_photo_does_not_raise_an_alert() {
        let registry = registry();
        let mut engine = Engine::default();
        let minute = 60_000;
        assert!(engine.observe("a", 50, 0, &registry, &RULES).is_empty());
        // One photo over the warning level, then back down: nothing.
        assert!(
            engine
                .observe("a", 85, minute, &registry, &RULES)
                .is_empty()
        );
        assert!(
            engine
                .observe("a", 50, 2 * minute, &registry, &RULES)
                .is_empty()
        );
        assert_eq!(engine.level(SubjectKind::Camera, "a"), Level::Normal);
        // Over it for a minute: raised, once.
        assert!(
            engine
                .observe("a", 85, 3 * minute, &registry, &RULES)
                .is_empty()
        );
        let alerts = engine.observe("a", 86, 4 * minute, &registry, &RULES);
        assert_eq!(alerts.len(), 1);
        let alert = &alerts[0];
        assert_eq!(
            (alert.kind, alert.level, alert.previous_level),
            (AlertKind::Raised, Level::Warning, Level::Normal)
        );
        assert_eq!(
            (alert.count, alert.threshold, alert.time_ms),
            (86, Some(80.0), 4 * minute)
        );
        assert!(
            engine
                .observe("a", 86, 5 * minute, &registry, &RULES)
                .is_empty(),
            "no repeat"
        );
        // Dipping to 75 (inside the hysteresis band) does not clear it.
        assert!(
            engine
                .observe("a", 75, 6 * minute, &registry, &RULES)
                .is_empty()
        );
        assert!(
            engine
                .observe("a", 75, 8 * minute, &registry, &RULES)
                .is_empty()
        );
        // Below 72 for a minute: cleared.
        assert!(
            engine
                .observe("a", 60, 9 * minute, &registry, &RULES)
                .is_empty()
        );
        let alerts = engine.observe("a", 60, 10 * minute, &registry, &RULES);
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            (alerts[0].kind, alerts[0].level, alerts[0].threshold),
            (AlertKind::Cleared, Level::Normal, Some(80.0))
        );
    }

    #[test]
    fn groups_sum_their_cameras() {
        let registry = registry();
        let rules = AlertRules {
            min_duration_ms: 0,
            ..RULES
        };
        let mut engine = Engine::default();
        assert!(engine.observe("a", 60, 1, &registry, &rules).is_empty());
        let alerts = engine.observe("b", 65, 2, &registry, &rules);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(
            (
                alerts[0].subject_kind,
                alerts[0].subject.as_str(),
                alerts[0].count
            ),
            (SubjectKind::Group, "hall", 125)
        );
        assert_eq!(engine.level(SubjectKind::Group, "hall"), Level::Warning);
    }

    #[test]
    fn the_same_events_give_the_same_alert_ids() {
        let registry = registry();
        let run = || {
            let mut engine = Engine::default();
            let mut ids = Vec::new();
            for (i, count) in [10, 90, 95, 120, 130, 20, 20].into_iter().enumerate() {
                ids.extend(
                    engine
                        .observe("a", count, i as i64 * 60_000, &registry, &RULES)
                        .into_iter()
                        .map(|a| a.id),
                );
            }
            ids
        };
        let first = run();
        assert!(first.len() >= 2);
        assert_eq!(first, run());
    }

    #[test]
    fn an_older_photo_changes_no_level() {
        let registry = registry();
        let rules = AlertRules {
            min_duration_ms: 0,
            ..RULES
        };
        let mut engine = Engine::default();
        engine.observe("a", 10, 100, &registry, &rules);
        assert!(engine.observe("a", 500, 50, &registry, &rules).is_empty());
        assert_eq!(engine.level(SubjectKind::Camera, "a"), Level::Normal);
    }
}
