//! The calibrated defaults of the counting pipeline, in one place. Each is also a flag and an
//! environment variable of image-predict (see `configuration.rs`). The detector's scale, tiling
//! and NMS were chosen on the 15 street scenes of `../shared/evalset/dev`; the score threshold,
//! the choice between methods and the density model's settings on the 41 labelled photos of
//! `dev` and `../shared/evalset/crowds` together. `docs/calibration.md` gives the commands, the
//! figures and the photos that support each.

/// A detection counts as a person from this score on. Chosen on the 20 photos of both folders
/// with fewer than 40 people (15 ShanghaiTech B street scenes, 4 frames of a shopping-mall camera,
/// one ShanghaiTech A photo), which the detector counts: `crowd eval --counting detector
/// --score-threshold T`, T from 0.14 to 0.20. 0.17 gave the lowest mean absolute error (3.60
/// people; 0.16 4.00, 0.18 3.70) and the smallest mean error (-0.2 people: lower thresholds
/// overcount, higher ones undercount). The dev set's 15 street scenes alone agree (2.60 against
/// 2.80 at 0.18, the previous default chosen on them alone).
pub const SCORE_THRESHOLD: f32 = 0.17;

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

/// With `--counting auto`, a photo whose density glance counts at least this many people is a
/// crowd, counted by fusion (boxes plus the density outside them). On the 41 labelled photos of
/// `../shared/evalset/dev` and `crowds`, at the glance side below, the glance saw at most 28
/// people on the 21 photos with 50 people or fewer (street scenes, a shopping mall's camera) and
/// at least 52 on the 20 with more (66-3406 people); 38 is the gap's geometric middle
/// (sqrt(28.3 x 52.3)), and any value from 29 to 52 makes the same choices on those photos.
pub const DENSE_MIN_GLANCE_PEOPLE: f32 = 38.0;

/// The density glance: the whole photo with its long side scaled to this many pixels. 224 and
/// 160 were compared on the 41 photos (docs/calibration.md): both separate the two groups (gaps
/// 37-63 and 28-52 people, ratios 1.7 and 1.85), and 160 costs half the pixels (street median
/// 442 -> 362 ms in `crowd eval` on that run's machine).
pub const GLANCE_SIDE: u32 = 160;

/// The density model counts a crowd at the photo's own resolution (ShanghaiTech A, on which it
/// was trained, is about 1024 px wide), scaled down only beyond this many pixels (1024 x 1024).
/// Scales of 0.5 to 2 were compared on the 16 crowds of 100 or more people (docs/calibration.md).
pub const DENSITY_MAX_PIXELS: u64 = 1 << 20;

/// A density tile's input holds at most this many pixels (724 x 724): a 1024 x 768 photo is
/// counted in 2 tiles of 576 x 768. Against 1 << 18 (2 x 2 tiles of 576 x 448, 31 % of the
/// pixels computed twice in the margins) on the two dense dev photos: 7.9 -> 5.9 s and
/// 6.3 -> 5.5 s, peak memory of `crowd eval` 421 -> 608 MB; counts 249 and 469 -> 249 and 467.
pub const DENSITY_TILE_MAX_PIXELS: u64 = 1 << 19;

/// Context a density tile sees beyond the cells it owns, pixels. With 64, the tiled count of
/// each of the 16 crowds was within 0.9 % of the count of the whole photo in one run.
pub const DENSITY_TILE_MARGIN: u32 = 64;
