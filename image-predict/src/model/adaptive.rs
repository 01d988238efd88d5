//! One counter for every kind of scene: the detector always runs (it is cheap and localises
//! people); when the photo looks like a dense crowd, the density model counts it instead.

use std::sync::Arc;

use image::RgbImage;

use super::centernet::CenterNet;
use super::csrnet::CsrNet;
use super::{Counted, Method, PeopleCounter};

/// How image-predict picks the model for a photo (`--counting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CountingMode {
    /// The detector's candidate heads decide, photo by photo.
    Auto,
    /// Always the detector's boxes.
    Detector,
    /// Always the density model.
    Density,
}

/// The choice rule of [`CountingMode::Auto`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenseSceneRule {
    /// A photo with at least this many candidate heads is a dense crowd.
    pub min_candidate_heads: u32,
}

/// The method for a photo, and the reason in words for the API answer.
pub fn choose_method(
    mode: CountingMode,
    candidate_heads: u32,
    rule: DenseSceneRule,
) -> (Method, String) {
    let threshold = rule.min_candidate_heads;
    match mode {
        CountingMode::Detector => (Method::Detector, "counting mode is detector".to_owned()),
        CountingMode::Density => (Method::Density, "counting mode is density".to_owned()),
        CountingMode::Auto if candidate_heads >= threshold => (
            Method::Density,
            format!("dense scene: {candidate_heads} candidate heads >= {threshold}"),
        ),
        CountingMode::Auto => (
            Method::Detector,
            format!("sparse scene: {candidate_heads} candidate heads < {threshold}"),
        ),
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
}

impl AdaptiveCounter {
    pub fn detector(&self) -> &CenterNet {
        &self.detector
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
                let (w, h) = density.letterboxed_size(width, height);
                (detector.0.max(w), detector.1.max(h))
            }
            None => detector,
        }
    }

    fn count(&self, photo: &RgbImage) -> anyhow::Result<Counted> {
        let detections = self.detector.detect(photo)?;
        let (method, reason) = choose_method(self.mode, detections.candidate_heads, self.rule);
        let mut counted = Counted {
            count: detections.boxes.len() as u32,
            method,
            reason,
            model: "centernet-coco",
            candidate_heads: detections.candidate_heads,
            boxes: detections.boxes,
            density: None,
            preprocess_ms: detections.preprocess_ms,
            inference_ms: detections.inference_ms,
            postprocess_ms: detections.postprocess_ms,
        };
        if method == Method::Density {
            let density = self.density.as_ref().expect("checked when built");
            let run = density.density(photo)?;
            counted.count = run.count.max(0.0).round() as u32;
            counted.model = "csrnet";
            counted.density = Some(run.map);
            counted.preprocess_ms += run.preprocess_ms;
            counted.inference_ms += run.inference_ms;
            counted.postprocess_ms += run.postprocess_ms;
        }
        Ok(counted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: DenseSceneRule = DenseSceneRule {
        min_candidate_heads: 260,
    };

    #[test]
    fn auto_switches_to_density_at_the_threshold() {
        assert_eq!(
            choose_method(CountingMode::Auto, 259, RULE).0,
            Method::Detector
        );
        assert_eq!(
            choose_method(CountingMode::Auto, 260, RULE).0,
            Method::Density
        );
        assert_eq!(
            choose_method(CountingMode::Auto, 0, RULE).0,
            Method::Detector
        );
        let (_, reason) = choose_method(CountingMode::Auto, 597, RULE);
        assert_eq!(reason, "dense scene: 597 candidate heads >= 260");
    }

    #[test]
    fn a_fixed_mode_ignores_the_signal() {
        assert_eq!(
            choose_method(CountingMode::Detector, 10_000, RULE).0,
            Method::Detector
        );
        assert_eq!(
            choose_method(CountingMode::Density, 0, RULE).0,
            Method::Density
        );
    }
}
