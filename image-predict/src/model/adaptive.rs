//! One counter for every kind of scene. Each photo gets two cheap looks: the person detector
//! (tiled, it localises people) and the density model's glance (the whole photo, small). Both
//! views decide: when the glance sees a crowd, the density model maps the photo at its own
//! resolution, in tiles, and the count is fused per region: each detector box is one person
//! (people near the camera, which the density model overcounts), the density map counts the
//! rest (heads too small for the detector). Otherwise the detector's boxes are the count.
//!
//! Why both: the detector is right on street scenes and blind in dense crowds (heads a few
//! pixels wide give it almost no peaks: 915 people came out as 2), and the density model is
//! right in dense crowds and several times too high on sparse scenes at full resolution. The
//! glance is the density model's own view, so a crowd the detector cannot see still takes the
//! density path. docs/calibration.md compares this choice with others, photo by photo.

use std::sync::Arc;

use image::RgbImage;

use common::wire::PersonBox;

use super::centernet::CenterNet;
use super::csrnet::{CsrNet, DensityMap};
use super::{Counted, Method, PeopleCounter};

/// How image-predict picks the model for a photo (`--counting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CountingMode {
    /// The density model's glance decides, photo by photo: a crowd is counted by fusion (boxes
    /// plus the density outside them), any other scene by the detector's boxes.
    Auto,
    /// Always the detector's boxes.
    Detector,
    /// Always the density model, in tiles at the photo's resolution.
    Density,
    /// Per-region fusion on every photo, sparse scenes too (where the density model's false
    /// mass outside the boxes makes it far worse than the detector alone: docs/calibration.md).
    Fusion,
}

/// The choice rule of [`CountingMode::Auto`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DenseSceneRule {
    /// A photo whose glance counts at least this many people is a crowd.
    pub min_glance_people: f32,
}

/// What the two looks saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals {
    /// People in the density model's glance, when it ran.
    pub glance_people: Option<f32>,
    pub candidate_heads: u32,
}

/// The method for a photo, and the reason in words for the API answer.
pub fn choose_method(
    mode: CountingMode,
    signals: Signals,
    rule: DenseSceneRule,
) -> (Method, String) {
    match mode {
        CountingMode::Detector => (Method::Detector, "counting mode is detector".to_owned()),
        CountingMode::Density => (Method::Density, "counting mode is density".to_owned()),
        CountingMode::Fusion => (
            Method::Fusion,
            "counting mode is fusion: boxes, plus the density outside them".to_owned(),
        ),
        CountingMode::Auto => {
            let glance = signals.glance_people.unwrap_or(0.0);
            let threshold = rule.min_glance_people;
            if glance >= threshold {
                (
                    Method::Fusion,
                    format!(
                        "crowd: the density glance sees {glance:.0} people >= {threshold:.0}; boxes plus the density outside them"
                    ),
                )
            } else {
                (
                    Method::Detector,
                    format!(
                        "sparse scene: the density glance sees {glance:.0} people < {threshold:.0} ({} candidate heads)",
                        signals.candidate_heads
                    ),
                )
            }
        }
    }
}

pub struct AdaptiveCounter {
    detector: CenterNet,
    /// Absent in detector-only mode, where it is not loaded.
    density: Option<Arc<CsrNet>>,
    mode: CountingMode,
    rule: DenseSceneRule,
    name: String,
}

impl AdaptiveCounter {
    pub fn new(
        detector: CenterNet,
        density: Option<CsrNet>,
        mode: CountingMode,
        rule: DenseSceneRule,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            density.is_some() || mode == CountingMode::Detector,
            "counting mode {mode:?} needs the density model"
        );
        let name = match (&density, mode) {
            (Some(_), CountingMode::Auto) => "centernet-coco + csrnet, counting auto",
            (Some(_), CountingMode::Fusion) => "centernet-coco + csrnet, counting fusion",
            (Some(_), _) => "centernet-coco + csrnet, counting density",
            (None, _) => "centernet-coco, counting detector",
        };
        Ok(Self {
            detector,
            density: density.map(Arc::new),
            mode,
            rule,
            name: name.to_owned(),
        })
    }

    pub fn detector(&self) -> &CenterNet {
        &self.detector
    }

    pub fn mode(&self) -> CountingMode {
        self.mode
    }

    /// The density model, unless the counting mode is detector.
    pub fn density(&self) -> Option<&CsrNet> {
        self.density.as_deref()
    }
}

impl PeopleCounter for AdaptiveCounter {
    fn name(&self) -> &str {
        &self.name
    }

    fn score_threshold(&self) -> f32 {
        self.detector.settings().score_threshold
    }

    fn smallest_input(&self, width: u32, height: u32) -> (u32, u32) {
        let detector = self.detector.working_size(width, height);
        match &self.density {
            Some(density) => {
                let (w, h) = density.working_size(width, height);
                (detector.0.max(w), detector.1.max(h))
            }
            None => detector,
        }
    }

    fn count(&self, photo: &RgbImage) -> anyhow::Result<Counted> {
        let detections = self.detector.detect(photo)?;
        let glance = match (&self.density, self.mode) {
            (Some(density), CountingMode::Auto) => Some(density.glance(photo)?),
            _ => None,
        };
        let signals = Signals {
            glance_people: glance.as_ref().map(|g| g.count),
            candidate_heads: detections.candidate_heads,
        };
        let (method, reason) = choose_method(self.mode, signals, self.rule);
        let mut counted = Counted {
            count: detections.boxes.len() as u32,
            method,
            reason,
            model: "centernet-coco",
            candidate_heads: detections.candidate_heads,
            glance_people: signals.glance_people,
            boxes: detections.boxes,
            density: None,
            preprocess_ms: detections.preprocess_ms,
            inference_ms: detections.inference_ms,
            postprocess_ms: detections.postprocess_ms,
        };
        if let Some(glance) = &glance {
            counted.preprocess_ms += glance.preprocess_ms;
            counted.inference_ms += glance.inference_ms;
            counted.postprocess_ms += glance.postprocess_ms;
        }
        if method != Method::Detector {
            let density = self.density.as_ref().expect("checked when built");
            let run = density.density(photo)?;
            if method == Method::Fusion {
                let outside = outside_boxes(run.map, &counted.boxes);
                counted.count += outside.total().max(0.0).round() as u32;
                counted.model = "centernet-coco + csrnet";
                counted.density = Some(outside);
            } else {
                counted.count = run.count.max(0.0).round() as u32;
                counted.model = "csrnet";
                counted.density = Some(run.map);
            }
            counted.preprocess_ms += run.preprocess_ms;
            counted.inference_ms += run.inference_ms;
            counted.postprocess_ms += run.postprocess_ms;
        }
        Ok(counted)
    }
}

/// The density map with every cell whose centre lies in one of `boxes` set to zero: the people
/// the boxes already count.
pub fn outside_boxes(mut map: DensityMap, boxes: &[PersonBox]) -> DensityMap {
    for row in 0..map.rows {
        for column in 0..map.columns {
            let (x, y) = map.cell_centre(column, row);
            if boxes
                .iter()
                .any(|b| x >= b.x1 && x < b.x2 && y >= b.y1 && y < b.y2)
            {
                map.values[(row * map.columns + column) as usize] = 0.0;
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: DenseSceneRule = DenseSceneRule {
        min_glance_people: 50.0,
    };

    fn signals(glance: f32, heads: u32) -> Signals {
        Signals {
            glance_people: Some(glance),
            candidate_heads: heads,
        }
    }

    #[test]
    fn the_glance_sends_a_crowd_to_the_density_model() {
        assert_eq!(
            choose_method(CountingMode::Auto, signals(49.9, 0), RULE).0,
            Method::Detector
        );
        assert_eq!(
            choose_method(CountingMode::Auto, signals(50.0, 0), RULE).0,
            Method::Fusion
        );
        let (_, reason) = choose_method(CountingMode::Auto, signals(612.4, 41), RULE);
        assert_eq!(
            reason,
            "crowd: the density glance sees 612 people >= 50; boxes plus the density outside them"
        );
    }

    /// The collapse this rule exists against: a dense crowd whose heads the detector cannot see
    /// (41 candidate heads for 915 people) still goes to the density model.
    #[test]
    fn few_candidate_heads_do_not_hide_a_crowd() {
        assert_eq!(
            choose_method(CountingMode::Auto, signals(821.0, 41), RULE).0,
            Method::Fusion
        );
    }

    /// Many candidate heads (a busy street, textured surfaces) do not make a crowd when the
    /// density model does not see one.
    #[test]
    fn the_detectors_weak_peaks_do_not_decide() {
        let (method, reason) = choose_method(CountingMode::Auto, signals(20.0, 900), RULE);
        assert_eq!(method, Method::Detector);
        assert_eq!(
            reason,
            "sparse scene: the density glance sees 20 people < 50 (900 candidate heads)"
        );
    }

    #[test]
    fn fusion_counts_the_density_outside_the_boxes_only() {
        // 4 x 2 cells of 0.5 people; one box over the left half of the photo.
        let map = DensityMap {
            columns: 4,
            rows: 2,
            values: vec![0.5; 8],
            cell_fraction: (0.25, 0.5),
        };
        let left = PersonBox {
            x1: 0.0,
            y1: 0.0,
            x2: 0.5,
            y2: 1.0,
            score: 0.9,
        };
        let outside = outside_boxes(map, &[left]);
        assert_eq!(outside.values, vec![0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5]);
        assert_eq!(outside.total(), 2.0);
        assert_eq!(
            choose_method(CountingMode::Fusion, signals(0.0, 0), RULE).0,
            Method::Fusion
        );
    }

    #[test]
    fn a_fixed_mode_ignores_the_signals() {
        assert_eq!(
            choose_method(CountingMode::Detector, signals(10_000.0, 10_000), RULE).0,
            Method::Detector
        );
        assert_eq!(
            choose_method(CountingMode::Density, signals(0.0, 0), RULE).0,
            Method::Density
        );
    }
}
