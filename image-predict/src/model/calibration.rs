//! The calibrated defaults of the counting pipeline, in one place. Each is also a flag and an
//! environment variable of image-predict (see `configuration.rs`); the values were chosen by
//! measurement on `../shared/evalset/dev` (15 street scenes with 6-39 people, 2 dense crowds with
//! 271 and 413), as recorded in `docs/calibration.md`, which gives the commands and the figures.

/// A detection counts as a person from this score on. Swept 0.16-0.22 with tract and two tiles:
/// 0.18 gave the lowest street-scene error (2.67 people); 0.17 gave 2.80, 0.19 gave 3.47.
/// Re-measured with the tiles single-threaded: 0.17 2.60, 0.18 2.80, 0.19 3.47 (noise-level
/// swap of the two best; see docs/calibration.md).
pub const SCORE_THRESHOLD: f32 = 0.18;

/// Person boxes overlapping more than this intersection-over-union are one person.
pub const NMS_IOU: f32 = 0.5;

/// The detector sees the photo scaled so that its short side is this many pixels, then covered
/// by square tiles of the model's input side (512) along the long side: a 4:3 photo becomes
/// 683x512 in two tiles. Whole-photo letterboxing (long side 512) missed small people (error
/// about 5 people); scales of 600, 640 and 720 (4 tiles) were no better than this one.
pub const DETECTOR_SHORT_SIDE: u32 = 512;

/// At most this many tiles per photo; a longer panorama is scaled down until it fits.
pub const DETECTOR_MAX_TILES: usize = 6;

/// Neighbouring tiles overlap by at least this many pixels, so a person cut by one tile's edge is
/// seen whole in the next one (boxes touching an inner tile edge are dropped for that reason).
pub const TILE_MIN_OVERLAP: u32 = 64;

/// A local maximum of the detector's person heatmap at least this high is a "candidate head":
/// far too weak to count as a person, but in a dense crowd there are hundreds of them.
pub const CANDIDATE_HEAD_SCORE: f32 = 0.05;

/// With `--counting auto`, a photo with at least this many candidate heads is a dense crowd and
/// the density model counts it. Measured with tract: street scenes 29-179, dense crowds 400 and
/// 560; 260 lies near the geometric middle of the gap (179 x 1.45 = 260 = 400 / 1.54).
pub const DENSE_MIN_CANDIDATE_HEADS: u32 = 260;

/// The density model sees the photo letterboxed into a square of this side. Measured with tract
/// on the two dense crowds (docs/calibration.md): 448 px +5.9% and +6.8% of the truth in 2.9 s,
/// 512 px +8.9% and +10.4% in 3.9 s, 576 px +11.1% and +11.1% in 5.0 s.
pub const DENSITY_INPUT_SIDE: u32 = 448;
