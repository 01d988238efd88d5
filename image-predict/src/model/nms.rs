//! Greedy non-maximum suppression over boxes of one class.

use common::wire::PersonBox;

fn area(b: &PersonBox) -> f32 {
    (b.x2 - b.x1).max(0.0) * (b.y2 - b.y1).max(0.0)
}

/// Intersection over union of two boxes (0 when either is empty).
pub fn iou(a: &PersonBox, b: &PersonBox) -> f32 {
    let iw = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let ih = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    let inter = iw * ih;
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Keeps the highest-scoring boxes, dropping any box that overlaps an already kept one by more
/// than `iou_threshold`. The result is sorted by descending score.
pub fn non_maximum_suppression(mut boxes: Vec<PersonBox>, iou_threshold: f32) -> Vec<PersonBox> {
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<PersonBox> = Vec::with_capacity(boxes.len());
    for candidate in boxes {
        if kept.iter().all(|k| iou(k, &candidate) <= iou_threshold) {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> PersonBox {
        PersonBox {
            x1,
            y1,
            x2,
            y2,
            score,
        }
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = b(0.0, 0.0, 2.0, 2.0, 1.0);
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &b(2.0, 0.0, 4.0, 2.0, 1.0)), 0.0);
        // Overlap 1x2 = 2, union 4 + 4 - 2 = 6.
        assert!((iou(&a, &b(1.0, 0.0, 3.0, 2.0, 1.0)) - 2.0 / 6.0).abs() < 1e-6);
        assert_eq!(iou(&b(1.0, 1.0, 1.0, 1.0, 1.0), &a), 0.0);
    }

    #[test]
    fn overlapping_duplicates_collapse_to_the_best_one() {
        let boxes = vec![
            b(0.0, 0.0, 1.0, 1.0, 0.6),
            b(0.05, 0.0, 1.05, 1.0, 0.9),
            b(3.0, 3.0, 4.0, 4.0, 0.5),
        ];
        let kept = non_maximum_suppression(boxes, 0.5);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        assert_eq!(kept[1].score, 0.5);
    }

    #[test]
    fn neighbours_below_the_overlap_threshold_are_both_kept() {
        // Two people side by side whose boxes touch a little: IoU 1/7 < 0.5.
        let boxes = vec![b(0.0, 0.0, 1.0, 1.0, 0.8), b(0.75, 0.0, 1.75, 1.0, 0.7)];
        assert_eq!(non_maximum_suppression(boxes, 0.5).len(), 2);
    }
}
