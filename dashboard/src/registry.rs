//! The camera registry: per camera a display name, a group, a capacity, warning and critical
//! levels and counting zones; per group a capacity and levels. Read from a settings file
//! (`--cameras-file`, TOML) and changed at run time through `PUT
//! /api/v1/cameras/{camera}/settings` (admin token), which the store keeps and which wins over
//! the file for that camera.
//!
//! ```toml
//! [cameras.gate-1]
//! name = "Gate 1"
//! group = "north entrance"
//! capacity = 200
//! warning = "80%"        # of the capacity, or a number of people
//! critical = 200
//! zones = [{ name = "queue", points = [[0.1, 0.5], [0.6, 0.5], [0.6, 1.0], [0.1, 1.0]] }]
//!
//! [groups."north entrance"]
//! capacity = 800
//! warning = 600
//! critical = "100%"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use common::validate::CameraId;
use common::zones::{self, Zone};
use serde::{Deserialize, Serialize};

/// A level: a number of people, or a share of the capacity (`"80%"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    People(u32),
    Percent(f32),
}

impl Threshold {
    /// The number of people this level is reached at, given a capacity.
    pub fn people(self, capacity: Option<u32>) -> Option<f64> {
        match self {
            Threshold::People(n) => Some(f64::from(n)),
            Threshold::Percent(p) => capacity.map(|c| f64::from(c) * f64::from(p) / 100.0),
        }
    }
}

impl Serialize for Threshold {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Threshold::People(n) => serializer.serialize_u32(*n),
            Threshold::Percent(p) => serializer.serialize_str(&format!("{p}%")),
        }
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        let invalid = |what: String| {
            serde::de::Error::custom(format!(
                "a level is a number of people or a percentage such as \"80%\", not {what}"
            ))
        };
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) if n >= 0.0 && n.fract() == 0.0 && n <= f64::from(u32::MAX) => {
                Ok(Threshold::People(n as u32))
            }
            Raw::Number(n) => Err(invalid(n.to_string())),
            Raw::Text(text) => {
                let percent = text
                    .trim()
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<f32>().ok())
                    .filter(|p| p.is_finite() && *p > 0.0 && *p <= 1000.0);
                match percent {
                    Some(p) => Ok(Threshold::Percent(p)),
                    None => match text.trim().parse::<u32>() {
                        Ok(n) => Ok(Threshold::People(n)),
                        Err(_) => Err(invalid(format!("{text:?}"))),
                    },
                }
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSettings {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub capacity: Option<u32>,
    #[serde(default)]
    pub warning: Option<Threshold>,
    #[serde(default)]
    pub critical: Option<Threshold>,
    #[serde(default)]
    pub zones: Vec<Zone>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSettings {
    #[serde(default)]
    pub capacity: Option<u32>,
    #[serde(default)]
    pub warning: Option<Threshold>,
    #[serde(default)]
    pub critical: Option<Threshold>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SettingsError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Zone(#[from] zones::ZoneError),
}

impl CameraSettings {
    /// Checks what a settings file or a `PUT` may set.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let text = |what: &str, value: &Option<String>| match value {
            Some(v)
                if v.trim().is_empty()
                    || v.chars().count() > 100
                    || v.chars().any(char::is_control) =>
            {
                Err(SettingsError::Invalid(format!(
                    "{what} must be 1 to 100 characters without control characters"
                )))
            }
            _ => Ok(()),
        };
        text("name", &self.name)?;
        text("group", &self.group)?;
        check_levels(self.capacity, self.warning, self.critical)?;
        zones::validate(&self.zones)?;
        Ok(())
    }
}

fn check_levels(
    capacity: Option<u32>,
    warning: Option<Threshold>,
    critical: Option<Threshold>,
) -> Result<(), SettingsError> {
    for (what, level) in [("warning", warning), ("critical", critical)] {
        if let Some(Threshold::Percent(_)) = level
            && capacity.is_none()
        {
            return Err(SettingsError::Invalid(format!(
                "{what} is a percentage of the capacity, but no capacity is set"
            )));
        }
    }
    if let (Some(w), Some(c)) = (
        warning.and_then(|w| w.people(capacity)),
        critical.and_then(|c| c.people(capacity)),
    ) && w > c
    {
        return Err(SettingsError::Invalid(format!(
            "the warning level ({w}) is above the critical level ({c})"
        )));
    }
    Ok(())
}

/// The registry as the settings file gives it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    #[serde(default)]
    pub cameras: BTreeMap<String, CameraSettings>,
    #[serde(default)]
    pub groups: BTreeMap<String, GroupSettings>,
}

impl RegistryFile {
    /// Reads and checks the settings file; every problem names the camera or group.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading the camera registry {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| e.to_string())?;
        for (camera, settings) in &file.cameras {
            CameraId::parse(camera).map_err(|e| e.to_string())?;
            settings
                .validate()
                .map_err(|e| format!("camera {camera}: {e}"))?;
        }
        for (group, settings) in &file.groups {
            check_levels(settings.capacity, settings.warning, settings.critical)
                .map_err(|e| format!("group {group}: {e}"))?;
        }
        Ok(file)
    }
}

/// The registry in effect: the file, with the cameras changed at run time replacing theirs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    file: RegistryFile,
    changed: BTreeMap<String, CameraSettings>,
}

impl Registry {
    pub fn new(file: RegistryFile, changed: BTreeMap<String, CameraSettings>) -> Self {
        Self { file, changed }
    }

    pub fn camera(&self, camera: &str) -> Option<&CameraSettings> {
        self.changed
            .get(camera)
            .or_else(|| self.file.cameras.get(camera))
    }

    pub fn group(&self, group: &str) -> Option<&GroupSettings> {
        self.file.groups.get(group)
    }

    pub fn group_of(&self, camera: &str) -> Option<&str> {
        self.camera(camera).and_then(|s| s.group.as_deref())
    }

    /// Every group named by a camera or by the file.
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.file.groups.keys().cloned().collect();
        for settings in self.file.cameras.values().chain(self.changed.values()) {
            if let Some(group) = &settings.group {
                groups.push(group.clone());
            }
        }
        groups.sort();
        groups.dedup();
        groups
    }

    /// The cameras the registry knows (file or changed).
    pub fn cameras(&self) -> impl Iterator<Item = (&String, &CameraSettings)> {
        let changed = self.changed.iter();
        let from_file = self
            .file
            .cameras
            .iter()
            .filter(|(c, _)| !self.changed.contains_key(*c));
        changed.chain(from_file)
    }

    pub fn set(&mut self, camera: String, settings: CameraSettings) {
        self.changed.insert(camera, settings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[cameras.gate-1]
name = "Gate 1"
group = "north entrance"
capacity = 200
warning = "80%"
critical = 200
zones = [{ name = "queue", points = [[0.1, 0.5], [0.6, 0.5], [0.6, 1.0], [0.1, 1.0]] }]

[cameras.gate-2]
group = "north entrance"

[groups."north entrance"]
capacity = 800
warning = 600
critical = "100%"
"#;

    #[test]
    fn the_documented_example_parses() {
        let file = RegistryFile::parse(EXAMPLE).unwrap();
        let gate = &file.cameras["gate-1"];
        assert_eq!(gate.warning, Some(Threshold::Percent(80.0)));
        assert_eq!(gate.warning.unwrap().people(gate.capacity), Some(160.0));
        assert_eq!(gate.critical, Some(Threshold::People(200)));
        assert_eq!(gate.zones[0].points.len(), 4);
        let registry = Registry::new(file, BTreeMap::new());
        assert_eq!(registry.groups(), vec!["north entrance".to_owned()]);
        assert_eq!(registry.group_of("gate-2"), Some("north entrance"));
        assert_eq!(
            registry.group("north entrance").unwrap().capacity,
            Some(800)
        );
    }

    #[test]
    fn an_empty_file_and_a_comment_only_file_are_empty_registries() {
        assert_eq!(RegistryFile::parse("").unwrap(), RegistryFile::default());
        assert_eq!(
            RegistryFile::parse("# no cameras yet\n").unwrap(),
            RegistryFile::default()
        );
    }

    #[test]
    fn problems_name_the_camera() {
        let error = RegistryFile::parse("[cameras.x]\nwarning = \"50%\"\n").unwrap_err();
        assert!(
            error.contains("camera x") && error.contains("no capacity"),
            "{error}"
        );
        let error = RegistryFile::parse("[cameras.x]\nwarning = 50\ncritical = 10\n").unwrap_err();
        assert!(error.contains("above the critical"), "{error}");
        let error = RegistryFile::parse("[cameras.\"bad id\"]\n").unwrap_err();
        assert!(error.contains("invalid"), "{error}");
        let error = RegistryFile::parse("[cameras.x]\ncolour = 1\n").unwrap_err();
        assert!(error.contains("colour"), "{error}");
    }

    #[test]
    fn thresholds_serialise_as_they_are_written() {
        let json =
            serde_json::to_string(&(Threshold::People(5), Threshold::Percent(80.0))).unwrap();
        assert_eq!(json, r#"[5,"80%"]"#);
        let parsed: Vec<Threshold> = serde_json::from_str(r#"[5, "80%", "12"]"#).unwrap();
        assert_eq!(
            parsed,
            vec![
                Threshold::People(5),
                Threshold::Percent(80.0),
                Threshold::People(12)
            ]
        );
        assert!(serde_json::from_str::<Threshold>("-3").is_err());
        assert!(serde_json::from_str::<Threshold>(r#""lots""#).is_err());
    }

    #[test]
    fn a_change_at_run_time_wins_over_the_file() {
        let mut registry = Registry::new(RegistryFile::parse(EXAMPLE).unwrap(), BTreeMap::new());
        registry.set(
            "gate-1".into(),
            CameraSettings {
                name: Some("Main gate".into()),
                ..CameraSettings::default()
            },
        );
        assert_eq!(
            registry.camera("gate-1").unwrap().name.as_deref(),
            Some("Main gate")
        );
        assert_eq!(registry.group_of("gate-1"), None);
        assert_eq!(registry.cameras().count(), 2);
    }
}
