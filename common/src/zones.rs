//! Counting zones: named polygons over a camera's photo, in coordinates normalised to the photo
//! (0..1 on both axes, x to the right, y down). The dashboard keeps them in its camera registry;
//! image-predict counts the people inside each.
//!
//! Hand-written geometry (point in polygon, segment crossing): a few lines each, where a
//! geometry crate would bring a large tree for two predicates.

use serde::{Deserialize, Serialize};

/// At most this many zones per camera, and points per zone.
pub const MAX_ZONES: usize = 16;
pub const MAX_POINTS: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Zone {
    pub name: String,
    /// Corners in order, `[x, y]` each, normalised to the photo; the last joins the first.
    pub points: Vec<[f32; 2]>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("zone {zone:?}: {problem}")]
pub struct ZoneError {
    pub zone: String,
    pub problem: String,
}

/// Checks a camera's zones: names of 1 to 64 characters, unique; 3 to 64 points each, inside
/// 0..1; no edge crossing another (a simple polygon); not degenerate (some area).
pub fn validate(zones: &[Zone]) -> Result<(), ZoneError> {
    if zones.len() > MAX_ZONES {
        return Err(ZoneError {
            zone: String::new(),
            problem: format!("{} zones, at most {MAX_ZONES}", zones.len()),
        });
    }
    for (i, zone) in zones.iter().enumerate() {
        let fail = |problem: String| ZoneError {
            zone: zone.name.clone(),
            problem,
        };
        let name = zone.name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(fail(
                "a name is 1 to 64 characters, no control characters".into(),
            ));
        }
        if zones[..i].iter().any(|other| other.name == zone.name) {
            return Err(fail("two zones have this name".into()));
        }
        let n = zone.points.len();
        if !(3..=MAX_POINTS).contains(&n) {
            return Err(fail(format!("{n} points: a zone needs 3 to {MAX_POINTS}")));
        }
        if let Some(p) = zone
            .points
            .iter()
            .find(|[x, y]| !(0.0..=1.0).contains(x) || !(0.0..=1.0).contains(y))
        {
            return Err(fail(format!(
                "point ({}, {}) is outside the photo: coordinates are fractions from 0 to 1",
                p[0], p[1]
            )));
        }
        for a in 0..n {
            for b in a + 1..n {
                // Neighbouring edges share a corner; they cross only if they fold back.
                let adjacent = b == a + 1 || (a == 0 && b == n - 1);
                if !adjacent && segments_cross(edge(&zone.points, a), edge(&zone.points, b)) {
                    return Err(fail(format!(
                        "edges {} and {} cross: the polygon intersects itself",
                        a + 1,
                        b + 1
                    )));
                }
            }
        }
        if signed_area(&zone.points).abs() < 1e-6 {
            return Err(fail(
                "the polygon has no area (its points are on one line)".into(),
            ));
        }
    }
    Ok(())
}

fn edge(points: &[[f32; 2]], i: usize) -> ([f32; 2], [f32; 2]) {
    (points[i], points[(i + 1) % points.len()])
}

fn signed_area(points: &[[f32; 2]]) -> f32 {
    (0..points.len())
        .map(|i| {
            let (a, b) = edge(points, i);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum::<f32>()
        / 2.0
}

fn orientation(a: [f32; 2], b: [f32; 2], c: [f32; 2]) -> f32 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

fn on_segment(a: [f32; 2], b: [f32; 2], p: [f32; 2]) -> bool {
    p[0] >= a[0].min(b[0])
        && p[0] <= a[0].max(b[0])
        && p[1] >= a[1].min(b[1])
        && p[1] <= a[1].max(b[1])
}

/// Whether two segments share a point (touching counts).
fn segments_cross((p1, p2): ([f32; 2], [f32; 2]), (q1, q2): ([f32; 2], [f32; 2])) -> bool {
    let (d1, d2) = (orientation(q1, q2, p1), orientation(q1, q2, p2));
    let (d3, d4) = (orientation(p1, p2, q1), orientation(p1, p2, q2));
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        return true;
    }
    (d1 == 0.0 && on_segment(q1, q2, p1))
        || (d2 == 0.0 && on_segment(q1, q2, p2))
        || (d3 == 0.0 && on_segment(p1, p2, q1))
        || (d4 == 0.0 && on_segment(p1, p2, q2))
}

impl Zone {
    /// Whether the point `(x, y)` (normalised) lies inside the polygon (even-odd rule).
    pub fn contains(&self, x: f32, y: f32) -> bool {
        let mut inside = false;
        let n = self.points.len();
        let mut j = n - 1;
        for i in 0..n {
            let ([xi, yi], [xj, yj]) = (self.points[i], self.points[j]);
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                inside = !inside;
            }
            j = i;
        }
        inside
    }

    /// The share of the rectangle `[x0, x1) x [y0, y1)` (normalised) inside the polygon,
    /// estimated on a 4 x 4 grid of sample points: what a density cell on the zone's edge
    /// gives the zone.
    pub fn covered_fraction(&self, (x0, y0, x1, y1): (f32, f32, f32, f32)) -> f32 {
        const SAMPLES: usize = 4;
        let inside = (0..SAMPLES * SAMPLES)
            .filter(|i| {
                let x = x0 + (x1 - x0) * ((i % SAMPLES) as f32 + 0.5) / SAMPLES as f32;
                let y = y0 + (y1 - y0) * ((i / SAMPLES) as f32 + 0.5) / SAMPLES as f32;
                self.contains(x, y)
            })
            .count();
        inside as f32 / (SAMPLES * SAMPLES) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(points: &[[f32; 2]]) -> Zone {
        Zone {
            name: "z".into(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn valid_and_invalid_polygons() {
        let square = zone(&[[0.1, 0.1], [0.6, 0.1], [0.6, 0.6], [0.1, 0.6]]);
        assert_eq!(validate(std::slice::from_ref(&square)), Ok(()));
        let bow_tie = zone(&[[0.1, 0.1], [0.8, 0.6], [0.6, 0.1], [0.1, 0.6]]);
        assert!(validate(&[bow_tie]).unwrap_err().problem.contains("cross"));
        let two = zone(&[[0.1, 0.1], [0.6, 0.6]]);
        assert!(validate(&[two]).unwrap_err().problem.contains("2 points"));
        let outside = zone(&[[0.1, 0.1], [1.2, 0.1], [0.5, 0.5]]);
        assert!(
            validate(&[outside])
                .unwrap_err()
                .problem
                .contains("outside")
        );
        let line = zone(&[[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]);
        assert!(validate(&[line]).unwrap_err().problem.contains("no area"));
        assert!(
            validate(&[square.clone(), square])
                .unwrap_err()
                .problem
                .contains("two zones")
        );
    }

    #[test]
    fn points_inside_and_outside() {
        let triangle = zone(&[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]);
        assert!(triangle.contains(0.2, 0.2));
        assert!(!triangle.contains(0.8, 0.8));
        let left_half = zone(&[[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]);
        assert_eq!(left_half.covered_fraction((0.25, 0.0, 0.75, 0.1)), 0.5);
        assert_eq!(left_half.covered_fraction((0.0, 0.0, 0.1, 0.1)), 1.0);
        assert_eq!(left_half.covered_fraction((0.6, 0.0, 0.9, 0.1)), 0.0);
    }
}
