//! Counts over time: a camera's (or a group's) photos summed up per step, from the per-photo
//! events while they are kept and from the 5-minute rollups beyond.

use serde::{Deserialize, Serialize};

use crate::store::{ROLLUP_MS, Rollup};

/// `a / b` rounded up, for a positive `b` (`i64::div_ceil` is not stable).
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1).div_euclid(b)
}

/// At most this many steps per answer.
pub const MAX_STEPS: i64 = 10_000;

/// One step of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub start_ms: i64,
    pub photos: u64,
    /// The count of the step's latest photo; the lowest, highest and mean of its photos'
    /// counts. None for a step without photos.
    pub last: Option<u64>,
    pub min: Option<u64>,
    pub max: Option<u64>,
    pub mean: Option<f64>,
    /// Time of the latest photo (for adding cameras together; not serialised).
    #[serde(skip)]
    last_ms: i64,
    #[serde(skip)]
    sum: u64,
}

/// Counts over the whole range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub photos: u64,
    pub min: Option<u64>,
    pub max: Option<u64>,
    pub mean: Option<f64>,
}

/// Where a series' steps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The per-photo events (within the history hours).
    Events,
    /// The 5-minute rollups (older ranges; steps are whole multiples of 5 minutes).
    Rollups,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from_ms: i64,
    pub to_ms: i64,
    pub step_ms: i64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RangeError {
    #[error("{0}")]
    Range(String),
    #[error("{0}")]
    Step(String),
}

impl RangeError {
    pub fn code(&self) -> &'static str {
        match self {
            RangeError::Range(_) => "invalid_range",
            RangeError::Step(_) => "invalid_step",
        }
    }
}

/// Parses a time: Unix milliseconds, or RFC 3339.
pub fn parse_time(raw: &str, what: &str) -> Result<i64, RangeError> {
    if let Ok(ms) = raw.trim().parse::<i64>() {
        return Ok(ms);
    }
    time::OffsetDateTime::parse(raw.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            RangeError::Range(format!(
                "{what} {raw:?} is neither Unix milliseconds nor an RFC 3339 time"
            ))
        })
}

/// Parses a step: seconds, or a number with `s`, `m`, `h` or `d`.
pub fn parse_step(raw: &str) -> Result<i64, RangeError> {
    let raw = raw.trim();
    let (number, unit) = match raw.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((at, _)) => (&raw[..at], &raw[at..]),
        None => (raw, "s"),
    };
    let factor = match unit {
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(RangeError::Step(format!(
                "step {raw:?}: a number of seconds, or with s, m, h or d"
            )));
        }
    };
    match number.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n * factor),
        _ => Err(RangeError::Step(format!(
            "step {raw:?}: a positive whole number"
        ))),
    }
}

impl Range {
    /// The range asked for: `from`/`to` (default: the last hour up to now) and `step`
    /// (default: about 60 steps, in whole seconds); checks order and step count.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        step: Option<&str>,
        now_ms: i64,
    ) -> Result<Self, RangeError> {
        let to_ms = to
            .map(|t| parse_time(t, "to"))
            .transpose()?
            .unwrap_or(now_ms);
        let from_ms = from
            .map(|f| parse_time(f, "from"))
            .transpose()?
            .unwrap_or(to_ms - 3_600_000);
        if from_ms >= to_ms {
            return Err(RangeError::Range(format!(
                "from ({from_ms}) must be before to ({to_ms})"
            )));
        }
        let step_ms = match step {
            Some(step) => parse_step(step)?,
            None => ceil_div(((to_ms - from_ms) / 60).max(1000), 1000) * 1000,
        };
        let steps = ceil_div(to_ms - from_ms, step_ms);
        if steps > MAX_STEPS {
            return Err(RangeError::Step(format!(
                "{steps} steps of {} s; at most {MAX_STEPS}: use a larger step",
                step_ms / 1000
            )));
        }
        Ok(Self {
            from_ms,
            to_ms,
            step_ms,
        })
    }

    /// The range its rollups can answer: steps rounded up to whole 5-minute windows, the range
    /// aligned on them.
    pub fn for_rollups(self) -> Self {
        let step_ms = ceil_div(self.step_ms, ROLLUP_MS).max(1) * ROLLUP_MS;
        Self {
            from_ms: self.from_ms.div_euclid(ROLLUP_MS) * ROLLUP_MS,
            to_ms: self.to_ms,
            step_ms,
        }
    }

    fn empty_steps(&self) -> Vec<Step> {
        (0..ceil_div(self.to_ms - self.from_ms, self.step_ms))
            .map(|i| Step {
                start_ms: self.from_ms + i * self.step_ms,
                photos: 0,
                last: None,
                min: None,
                max: None,
                mean: None,
                last_ms: i64::MIN,
                sum: 0,
            })
            .collect()
    }

    fn index(&self, timestamp_ms: i64) -> Option<usize> {
        (timestamp_ms >= self.from_ms && timestamp_ms < self.to_ms)
            .then(|| ((timestamp_ms - self.from_ms) / self.step_ms) as usize)
    }
}

#[allow(clippy::too_many_arguments)]
fn add(step: &mut Step, photos: u64, sum: u64, min: u64, max: u64, last: u64, last_ms: i64) {
    step.photos += photos;
    step.sum += sum;
    step.min = Some(step.min.map_or(min, |m| m.min(min)));
    step.max = Some(step.max.map_or(max, |m| m.max(max)));
    if last_ms >= step.last_ms {
        step.last = Some(last);
        step.last_ms = last_ms;
    }
    step.mean = Some(step.sum as f64 / step.photos as f64);
}

/// Steps of one camera's photos `(time, count)`.
pub fn from_events(range: &Range, events: impl IntoIterator<Item = (i64, u32)>) -> Vec<Step> {
    let mut steps = range.empty_steps();
    for (t, count) in events {
        if let Some(i) = range.index(t) {
            let c = u64::from(count);
            add(&mut steps[i], 1, c, c, c, c, t);
        }
    }
    steps
}

/// Steps of one camera's rollups (the range from [`Range::for_rollups`]).
pub fn from_rollups(range: &Range, rollups: &[Rollup]) -> Vec<Step> {
    let mut steps = range.empty_steps();
    for r in rollups {
        if let Some(i) = range.index(r.start_ms) {
            let (min, max, last) = (u64::from(r.min), u64::from(r.max), u64::from(r.last));
            add(
                &mut steps[i],
                u64::from(r.photos),
                r.sum,
                min,
                max,
                last,
                r.last_ms,
            );
        }
    }
    steps
}

/// A group's steps: per step, its cameras' values added (photos, last, min, max and mean each
/// summed: the group's mean and last are those of its cameras together; its min and max are
/// the sums of the cameras' minima and maxima, bounds of the group's low and peak).
pub fn sum(series: &[Vec<Step>], range: &Range) -> Vec<Step> {
    let mut steps = range.empty_steps();
    for camera in series {
        for (total, step) in steps.iter_mut().zip(camera) {
            if step.photos == 0 {
                continue;
            }
            total.photos += step.photos;
            total.last = Some(total.last.unwrap_or(0) + step.last.unwrap_or(0));
            total.min = Some(total.min.unwrap_or(0) + step.min.unwrap_or(0));
            total.max = Some(total.max.unwrap_or(0) + step.max.unwrap_or(0));
            total.mean = Some(total.mean.unwrap_or(0.0) + step.mean.unwrap_or(0.0));
        }
    }
    steps
}

/// Photos, min, max and mean over the range (the steps' extremes; the mean of all photos).
pub fn stats(steps: &[Step]) -> Stats {
    let with = steps.iter().filter(|s| s.photos > 0);
    let photos: u64 = with.clone().map(|s| s.photos).sum();
    let weighted: f64 = with
        .clone()
        .map(|s| s.mean.unwrap_or(0.0) * s.photos as f64)
        .sum();
    Stats {
        photos,
        min: with.clone().filter_map(|s| s.min).min(),
        max: with.clone().filter_map(|s| s.max).max(),
        mean: (photos > 0).then(|| weighted / photos as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    #[test]
    fn ranges_and_their_errors() {
        let now = 10 * 3_600_000;
        let r = Range::parse(None, None, None, now).unwrap();
        assert_eq!(
            (r.from_ms, r.to_ms, r.step_ms),
            (now - 3_600_000, now, 60_000)
        );
        let r = Range::parse(Some("1000"), Some("601000"), Some("5m"), now).unwrap();
        assert_eq!(r.step_ms, 300_000);
        assert_eq!(
            Range::parse(Some("5"), Some("5"), None, now)
                .unwrap_err()
                .code(),
            "invalid_range"
        );
        assert_eq!(
            Range::parse(Some("yesterday"), None, None, now)
                .unwrap_err()
                .code(),
            "invalid_range"
        );
        assert_eq!(
            Range::parse(None, None, Some("0"), now).unwrap_err().code(),
            "invalid_step"
        );
        assert_eq!(
            Range::parse(None, None, Some("1w"), now)
                .unwrap_err()
                .code(),
            "invalid_step"
        );
        assert_eq!(
            Range::parse(Some("0"), Some("86400000"), Some("1s"), now)
                .unwrap_err()
                .code(),
            "invalid_step"
        );
        let r = Range::parse(
            Some("2026-12-01T10:00:00Z"),
            Some("2026-12-01T11:00:00+00:00"),
            Some("600"),
            now,
        )
        .unwrap();
        assert_eq!((r.to_ms - r.from_ms, r.step_ms), (3_600_000, 600_000));
    }

    #[test]
    fn steps_from_events() {
        let range = Range {
            from_ms: 0,
            to_ms: 30 * MINUTE,
            step_ms: 10 * MINUTE,
        };
        let events = [
            (MINUTE, 4),
            (2 * MINUTE, 10),
            (3 * MINUTE, 6),
            (25 * MINUTE, 3),
            (40 * MINUTE, 99),
        ];
        let steps = from_events(&range, events);
        assert_eq!(steps.len(), 3);
        assert_eq!(
            (steps[0].photos, steps[0].last, steps[0].max, steps[0].mean),
            (3, Some(6), Some(10), Some(20.0 / 3.0))
        );
        assert_eq!(
            (steps[1].photos, steps[1].last, steps[1].mean),
            (0, None, None),
            "an empty step"
        );
        assert_eq!((steps[2].photos, steps[2].last), (1, Some(3)));
        let s = stats(&steps);
        assert_eq!((s.photos, s.min, s.max), (4, Some(3), Some(10)));
        assert!((s.mean.unwrap() - 23.0 / 4.0).abs() < 1e-9);
    }

    #[test]
    fn rollups_give_the_same_steps_as_their_events() {
        let events: Vec<(i64, u32)> = (0..120).map(|i| (i * MINUTE, (i % 17) as u32)).collect();
        let mut rollups: Vec<Rollup> = Vec::new();
        for &(t, c) in &events {
            match rollups.last_mut() {
                Some(r) if r.start_ms == crate::store::rollup_start(t) => {
                    *r = Rollup::add(Some(*r), c, t)
                }
                _ => rollups.push(Rollup::add(None, c, t)),
            }
        }
        let range = Range {
            from_ms: 0,
            to_ms: 120 * MINUTE,
            step_ms: 15 * MINUTE,
        };
        assert_eq!(from_rollups(&range, &rollups), from_events(&range, events));
        let rounded = Range {
            step_ms: 7 * MINUTE,
            ..range
        }
        .for_rollups();
        assert_eq!(rounded.step_ms, 10 * MINUTE);
    }

    #[test]
    fn a_group_adds_its_cameras() {
        let range = Range {
            from_ms: 0,
            to_ms: 20 * MINUTE,
            step_ms: 10 * MINUTE,
        };
        let a = from_events(&range, [(MINUTE, 5), (2 * MINUTE, 7)]);
        let b = from_events(&range, [(3 * MINUTE, 10)]);
        let group = sum(&[a, b], &range);
        assert_eq!(
            (group[0].photos, group[0].last, group[0].max),
            (3, Some(17), Some(17))
        );
        assert_eq!(group[0].mean, Some(16.0));
        assert_eq!(group[1].photos, 0);
    }
}
