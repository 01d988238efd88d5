//! Pixels in and out: decoding an uploaded photo upright, and drawing the annotated thumbnail.

use std::io::Cursor;

use common::validate::{InputError, check_photo};
use common::wire::{ImageSize, PersonBox};
use fast_image_resize::{FilterType as ResizeFilter, ResizeAlg, ResizeOptions, Resizer};
use image::imageops::{self, FilterType};
use image::metadata::Orientation;
use image::{
    DynamicImage, GrayImage, ImageBuffer, ImageDecoder, ImageFormat, ImageReader, Limits, Luma,
    Rgb, RgbImage,
};

use common::zones::Zone;

use crate::model::{Counted, DensityMap, Method};

/// The long side of the thumbnail pushed to the dashboard.
pub const THUMBNAIL_MAX_SIDE: u32 = 640;
const THUMBNAIL_JPEG_QUALITY: u8 = 80;
const BOX_COLOUR: Rgb<u8> = Rgb([255, 64, 32]);
const ZONE_COLOUR: Rgb<u8> = Rgb([0, 229, 255]);
const HEAT_MAX_ALPHA: f32 = 0.85;
/// The photo under the heat is shown at this share of its brightness, in grey, so that the
/// heat's colours are not confused with the scene's.
const UNDER_HEAT_BRIGHTNESS: f32 = 0.55;
/// Density below this share of the map's high level is left uncoloured.
const HEAT_FLOOR: f32 = 0.03;

/// A photo decoded upright.
#[derive(Debug)]
pub struct DecodedPhoto {
    /// The pixels: the whole photo, at a reduced scale when a large JPEG allowed it.
    pub pixels: RgbImage,
    /// The photo's own upright size, whatever the scale it was decoded at.
    pub size: ImageSize,
}

/// Decodes JPEG, PNG or WebP into RGB, turned upright according to its EXIF orientation, at
/// full size. The header is checked first (format by magic bytes, pixel count), so an oversized
/// image is refused before its pixels are allocated.
pub fn decode_upright(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, InputError> {
    decode_upright_at_least(bytes, max_pixels, |width, height| (width, height)).map(|p| p.pixels)
}

/// Photos from this many pixels on are decoded at reduced scale when they can be. Whole against
/// reduced, quality-90 JPEGs needing 683x512, median of 11 (`reduced_decoding timing` example):
/// 4000x3000 (to 1/4) 59-60 against 38-40 ms, 8000x6000 (to 1/8) 204-208 against 118 ms; with
/// this threshold at 0, 1920x1080 (1/2) 9.6 against 12.4 ms and 2732x2048 (1/4) 22.6 against
/// 26.5 ms. `jpeg-decoder`'s entropy decoding is slower than that of zune-jpeg (`image`'s JPEG
/// decoder, which has no reduced-scale decoding); from about 8 megapixels on, the smaller
/// transform, colour conversion and buffers win.
pub const REDUCED_DECODE_MIN_PIXELS: u64 = 8_000_000;

/// Decodes like [`decode_upright`], but a JPEG of [`REDUCED_DECODE_MIN_PIXELS`] or more, larger
/// than `needed(width, height)` needs (its upright size in, the smallest useful size out), is
/// decoded at 1/2, 1/4 or 1/8 scale: the largest reduction that still gives at least the needed
/// size on both axes. The reduction happens in the DCT domain (each 8x8 block's low frequencies
/// only are transformed back): a 12-megapixel photo counted at 683x512 is decoded at 1000x750,
/// a 36 MB buffer becomes 2.25 MB.
pub fn decode_upright_at_least(
    bytes: &[u8],
    max_pixels: u64,
    needed: impl FnOnce(u32, u32) -> (u32, u32),
) -> Result<DecodedPhoto, InputError> {
    let header = check_photo(bytes, max_pixels)?;
    let undecodable = |e: image::ImageError| InputError::Undecodable(e.to_string());
    if header.format == ImageFormat::Jpeg {
        if !jpeg_reaches_end_of_image(bytes) {
            return Err(InputError::Undecodable(
                "the JPEG data ends before its end-of-image marker: the file is truncated".into(),
            ));
        }
        let pixels = u64::from(header.width) * u64::from(header.height);
        if pixels >= REDUCED_DECODE_MIN_PIXELS
            && let Some(photo) = decode_jpeg_reduced(bytes, max_pixels, needed)
        {
            return Ok(photo);
        }
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), header.format);
    let mut limits = Limits::default();
    // Enough for the declared pixels as RGBA 16-bit plus decoder scratch, and not more.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let orientation = decoder.orientation().map_err(undecodable)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    image.apply_orientation(orientation);
    let pixels = image.into_rgb8();
    let size = ImageSize {
        width: pixels.width(),
        height: pixels.height(),
    };
    Ok(DecodedPhoto { pixels, size })
}

/// The JPEG at the largest DCT-domain reduction that keeps `needed`, with `jpeg-decoder` (the
/// `image` crate's JPEG decoder has no reduced-scale decoding). `None` when no reduction fits,
/// for colour models other than grey and YCbCr/RGB (CMYK), and when `jpeg-decoder` cannot read
/// the file: the full-size path then decodes it, or gives the error.
fn decode_jpeg_reduced(
    bytes: &[u8],
    max_pixels: u64,
    needed: impl FnOnce(u32, u32) -> (u32, u32),
) -> Option<DecodedPhoto> {
    use jpeg_decoder::PixelFormat;
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.set_max_decoding_buffer_size(usize::try_from(max_pixels.saturating_mul(4)).ok()?);
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    if !matches!(info.pixel_format, PixelFormat::L8 | PixelFormat::RGB24) {
        return None;
    }
    let orientation = decoder
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let turned = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let stored = (u32::from(info.width), u32::from(info.height));
    let upright = if turned { (stored.1, stored.0) } else { stored };
    let (need_w, need_h) = needed(upright.0, upright.1);
    let (need_w, need_h) = if turned {
        (need_h, need_w)
    } else {
        (need_w, need_h)
    };
    let reduced = |d: u32| (stored.0.div_ceil(d), stored.1.div_ceil(d));
    let divisor = [8, 4, 2].into_iter().find(|&d| {
        let (w, h) = reduced(d);
        w >= need_w && h >= need_h
    })?;
    let (width, height) = reduced(divisor);
    // jpeg-decoder picks the smallest scale reaching the request on either axis; asking for the
    // exact reduced size makes that our scale, checked below.
    let scaled = decoder.scale(width as u16, height as u16).ok()?;
    if (u32::from(scaled.0), u32::from(scaled.1)) != (width, height) {
        return None;
    }
    let data = decoder.decode().ok()?;
    let mut image = match info.pixel_format {
        PixelFormat::RGB24 => DynamicImage::ImageRgb8(RgbImage::from_raw(width, height, data)?),
        _ => DynamicImage::ImageLuma8(GrayImage::from_raw(width, height, data)?),
    };
    image.apply_orientation(orientation);
    Some(DecodedPhoto {
        pixels: image.into_rgb8(),
        size: ImageSize {
            width: upright.0,
            height: upright.1,
        },
    })
}

/// Walks the JPEG marker structure and tells whether it reaches the end-of-image marker.
///
/// The `image` crate's JPEG decoder conceals a file cut short by filling the missing blocks with
/// grey, and a count made on part of a photo would be a wrong answer given with confidence. No
/// decoder option turns that off, hence this walk. Segments are skipped by their declared length
/// (so an EXIF thumbnail's own markers are not mistaken for the photo's); inside entropy-coded
/// data a marker is `0xFF` followed by anything but `0x00` (a stuffed byte) or a restart marker.
fn jpeg_reaches_end_of_image(bytes: &[u8]) -> bool {
    const STUFFED_ZERO: u8 = 0x00;
    const TEM: u8 = 0x01;
    const END_OF_IMAGE: u8 = 0xD9;
    let mut at = 2; // after the start-of-image marker, which the format sniffer checked
    loop {
        let Some(offset) = bytes[at.min(bytes.len())..].iter().position(|&b| b == 0xFF) else {
            return false;
        };
        at += offset;
        while bytes.get(at) == Some(&0xFF) {
            at += 1; // fill bytes before a marker
        }
        let Some(&marker) = bytes.get(at) else {
            return false;
        };
        at += 1;
        match marker {
            END_OF_IMAGE => return true,
            STUFFED_ZERO | TEM | 0xD0..=0xD8 => {} // no length field follows
            _ => {
                let Some(length) = bytes.get(at..at + 2) else {
                    return false;
                };
                let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
                if length < 2 {
                    return false;
                }
                at += length;
            }
        }
    }
}

/// Scales an RGB image to exactly `width` x `height` with a triangle (bilinear) filter whose
/// support widens with the reduction, so every source pixel contributes (the filter of
/// `image`'s `FilterType::Triangle`). `image`'s own resize convolves in f32 one pixel at a time;
/// `fast_image_resize` runs the same filter in fixed point with SIMD, several times faster.
pub fn resize_rgb(photo: &RgbImage, width: u32, height: u32) -> RgbImage {
    let mut resized = RgbImage::new(width, height);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(ResizeFilter::Bilinear));
    Resizer::new()
        .resize(photo, &mut resized, &options)
        .expect("source and target are both 8-bit RGB buffers of their declared sizes");
    resized
}

/// The size of a `width` x `height` image whose long side is brought down to `max_side` (never
/// up), keeping its aspect ratio.
pub fn fitted_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= max_side {
        return (width, height);
    }
    let scale = max_side as f32 / long as f32;
    let scaled = |v: u32| ((v as f32 * scale).round() as u32).max(1);
    (scaled(width), scaled(height))
}

/// Scales `photo` to [`fitted_size`].
pub fn fit_within(photo: &RgbImage, max_side: u32) -> RgbImage {
    let (width, height) = fitted_size(photo.width(), photo.height(), max_side);
    if (width, height) == photo.dimensions() {
        return photo.clone();
    }
    resize_rgb(photo, width, height)
}

/// A JPEG of `photo` at most [`THUMBNAIL_MAX_SIDE`] on its long side, with each box outlined
/// (detector counts) or the density as heat (density counts), and the camera's zones drawn.
pub fn annotated_thumbnail(photo: &RgbImage, counted: &Counted, zones: &[Zone]) -> Vec<u8> {
    let mut thumb = fit_within(photo, THUMBNAIL_MAX_SIDE);
    if let Some(map) = &counted.density {
        overlay_density(&mut thumb, map);
    }
    // The density method's count is the map alone; its boxes (the detector's look) are not drawn.
    if counted.method != Method::Density {
        draw_boxes(&mut thumb, &counted.boxes);
    }
    for zone in zones {
        draw_polygon(&mut thumb, &zone.points, ZONE_COLOUR);
    }
    // jpeg-encoder rather than `image`'s encoder: with SIMD, 2.3 against 7.2 ms for a 640x480
    // thumbnail here, and a smaller file (74 against 91 kB at the same quality setting).
    let mut jpeg = Vec::with_capacity(96 * 1024);
    let (width, height) = thumb.dimensions();
    jpeg_encoder::Encoder::new(&mut jpeg, THUMBNAIL_JPEG_QUALITY)
        .encode(
            thumb.as_raw(),
            u16::try_from(width).expect("thumbnails are at most THUMBNAIL_MAX_SIDE wide"),
            u16::try_from(height).expect("thumbnails are at most THUMBNAIL_MAX_SIDE high"),
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("encoding an in-memory RGB image cannot fail");
    jpeg
}

fn draw_boxes(thumb: &mut RgbImage, boxes: &[PersonBox]) {
    let (w, h) = thumb.dimensions();
    let thickness = (w.max(h) / 320).max(2);
    for b in boxes {
        let x1 = (b.x1 * w as f32) as i64;
        let y1 = (b.y1 * h as f32) as i64;
        let x2 = (b.x2 * w as f32) as i64;
        let y2 = (b.y2 * h as f32) as i64;
        draw_rectangle_outline(thumb, (x1, y1, x2, y2), thickness, BOX_COLOUR);
    }
}

/// The density map as heat over the thumbnail: the photo in darkened grey, and over it a
/// colour ramp from transparent violet (few people) through red and orange to yellow (the
/// densest cells), scaled to the map's 98th percentile so that a few hot cells do not wash the
/// rest out. The map is stretched to the thumbnail (its last cells may reach a few pixels past
/// the photo's edge).
fn overlay_density(thumb: &mut RgbImage, map: &DensityMap) {
    let mut positive: Vec<f32> = map.values.iter().copied().filter(|&v| v > 0.0).collect();
    if positive.is_empty() || map.columns == 0 || map.rows == 0 {
        return;
    }
    positive.sort_by(f32::total_cmp);
    let high = positive[(positive.len() * 98 / 100).min(positive.len() - 1)].max(f32::MIN_POSITIVE);
    let cells: ImageBuffer<Luma<f32>, Vec<f32>> =
        ImageBuffer::from_fn(map.columns, map.rows, |x, y| {
            Luma([(map.values[(y * map.columns + x) as usize] / high).clamp(0.0, 1.0)])
        });
    let heat = imageops::resize(&cells, thumb.width(), thumb.height(), FilterType::Triangle);
    for (pixel, level) in thumb.pixels_mut().zip(heat.pixels()) {
        let [r, g, b] = pixel.0.map(f32::from);
        let grey = (0.299 * r + 0.587 * g + 0.114 * b) * UNDER_HEAT_BRIGHTNESS;
        let t = level[0].clamp(0.0, 1.0);
        let (colour, alpha) = if t < HEAT_FLOOR {
            ([grey; 3], 0.0)
        } else {
            (heat_colour(t), HEAT_MAX_ALPHA * (0.35 + 0.65 * t))
        };
        for (channel, c) in pixel.0.iter_mut().zip(colour) {
            *channel = (grey * (1.0 - alpha) + c * alpha).round().clamp(0.0, 255.0) as u8;
        }
    }
}

/// A colour for density level `t` (0..1), on a violet, red, orange, yellow ramp (after the
/// "inferno" colour map: readable in grey as well, as it brightens steadily).
fn heat_colour(t: f32) -> [f32; 3] {
    const STOPS: [(f32, [f32; 3]); 5] = [
        (0.0, [80.0, 18.0, 123.0]),
        (0.35, [182.0, 54.0, 121.0]),
        (0.6, [251.0, 113.0, 38.0]),
        (0.85, [252.0, 196.0, 52.0]),
        (1.0, [252.0, 255.0, 164.0]),
    ];
    let upper = STOPS
        .iter()
        .position(|(at, _)| *at >= t)
        .unwrap_or(STOPS.len() - 1)
        .max(1);
    let ((a, ca), (b, cb)) = (STOPS[upper - 1], STOPS[upper]);
    let f = ((t - a) / (b - a)).clamp(0.0, 1.0);
    std::array::from_fn(|i| ca[i] + (cb[i] - ca[i]) * f)
}

/// Outlines a polygon given in fractions of the image (a zone), 2 px or more wide.
fn draw_polygon(image: &mut RgbImage, points: &[[f32; 2]], colour: Rgb<u8>) {
    let (w, h) = (image.width() as f32, image.height() as f32);
    let thickness = (image.width().max(image.height()) / 320).max(2) as i64;
    for i in 0..points.len() {
        let [x1, y1] = points[i];
        let [x2, y2] = points[(i + 1) % points.len()];
        let (ax, ay, bx, by) = (x1 * w, y1 * h, x2 * w, y2 * h);
        let steps = ((bx - ax).abs().max((by - ay).abs()).ceil() as usize).max(1);
        for s in 0..=steps {
            let f = s as f32 / steps as f32;
            let (x, y) = ((ax + (bx - ax) * f) as i64, (ay + (by - ay) * f) as i64);
            draw_rectangle_filled(
                image,
                (x - thickness / 2, y - thickness / 2, thickness),
                colour,
            );
        }
    }
}

fn draw_rectangle_filled(image: &mut RgbImage, (x, y, side): (i64, i64, i64), colour: Rgb<u8>) {
    let (w, h) = (image.width() as i64, image.height() as i64);
    for yy in y.max(0)..(y + side).min(h) {
        for xx in x.max(0)..(x + side).min(w) {
            image.put_pixel(xx as u32, yy as u32, colour);
        }
    }
}

/// Outlines a rectangle, clipped to the image. Hand-written: the only drawing the stack needs,
/// and not worth a dependency on imageproc and its tree.
fn draw_rectangle_outline(
    image: &mut RgbImage,
    (x1, y1, x2, y2): (i64, i64, i64, i64),
    thickness: u32,
    colour: Rgb<u8>,
) {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let t = thickness as i64;
    let mut fill = |xa: i64, ya: i64, xb: i64, yb: i64| {
        for y in ya.max(0)..yb.min(h) {
            for x in xa.max(0)..xb.min(w) {
                image.put_pixel(x as u32, y as u32, colour);
            }
        }
    };
    fill(x1, y1, x2, y1 + t); // top
    fill(x1, y2 - t, x2, y2); // bottom
    fill(x1, y1, x1 + t, y2); // left
    fill(x2 - t, y1, x2, y2); // right
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;

    fn encode(image: &RgbImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        image.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    #[test]
    fn decodes_the_supported_formats() {
        let photo = RgbImage::from_pixel(30, 20, Rgb([10, 200, 30]));
        for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::WebP] {
            let decoded = decode_upright(&encode(&photo, format), 10_000).unwrap();
            assert_eq!(decoded.dimensions(), (30, 20), "{format:?}");
        }
    }

    #[test]
    fn a_truncated_jpeg_is_refused_and_a_complete_one_is_not() {
        let mut photo = RgbImage::new(256, 192);
        for (x, y, pixel) in photo.enumerate_pixels_mut() {
            *pixel = Rgb([(x ^ y) as u8, (x * y) as u8, 0xFF]); // 0xFF bytes in the data
        }
        let jpeg = encode(&photo, ImageFormat::Jpeg);
        assert!(decode_upright(&jpeg, 1 << 20).is_ok());
        let mut with_trailer = jpeg.clone();
        with_trailer.extend_from_slice(b"trailing bytes after the image");
        assert!(decode_upright(&with_trailer, 1 << 20).is_ok());
        assert!(
            jpeg.len() > 4_000,
            "the cuts below must fall in the entropy-coded data"
        );
        for cut in [jpeg.len() - 2, jpeg.len() / 2, 2_000] {
            match decode_upright(&jpeg[..cut], 1 << 20) {
                Err(InputError::Undecodable(message)) => assert!(message.contains("truncated")),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    /// A JPEG of `photo` whose EXIF says "rotate 90° clockwise" (orientation 6).
    fn jpeg_turned_clockwise(photo: &RgbImage) -> Vec<u8> {
        // A minimal big-endian TIFF block with one tag: Orientation (0x0112) = 6.
        let exif = vec![
            0x4D, 0x4D, 0x00, 0x2A, 0x00, 0x00, 0x00, 0x08, 0x00, 0x01, 0x01, 0x12, 0x00, 0x03,
            0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let mut jpeg = Vec::new();
        let mut encoder = JpegEncoder::new_with_quality(&mut jpeg, 90);
        image::ImageEncoder::set_exif_metadata(&mut encoder, exif).unwrap();
        encoder.encode_image(photo).unwrap();
        jpeg
    }

    #[test]
    fn exif_orientation_is_applied() {
        let photo = RgbImage::from_pixel(30, 20, Rgb([200, 200, 200]));
        let decoded = decode_upright(&jpeg_turned_clockwise(&photo), 10_000).unwrap();
        assert_eq!(decoded.dimensions(), (20, 30));
    }

    /// Smooth ramps under a checkerboard of 40-pixel squares: edges and gradients to compare.
    fn pattern(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            let square = ((x / 40 + y / 40) % 2) as u8;
            Rgb([
                (x * 255 / width) as u8,
                (y * 255 / height) as u8,
                40 + 160 * square,
            ])
        })
    }

    /// Mean absolute difference per channel of two images of one size.
    fn mean_difference(a: &RgbImage, b: &RgbImage) -> f64 {
        assert_eq!(a.dimensions(), b.dimensions());
        let total: u64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(&p, &q)| u64::from(p.abs_diff(q)))
            .sum();
        total as f64 / a.as_raw().len() as f64
    }

    const LIMIT: u64 = 50_000_000;

    #[test]
    fn large_jpegs_are_decoded_at_the_largest_reduction_that_keeps_the_needed_size() {
        let photo = pattern(4000, 2000);
        const { assert!(4000 * 2000 >= REDUCED_DECODE_MIN_PIXELS) };
        let jpeg = encode(&photo, ImageFormat::Jpeg);
        let full = decode_upright(&jpeg, LIMIT).unwrap();
        assert_eq!(full.dimensions(), (4000, 2000));
        for (needed, expected) in [
            ((480, 240), (500, 250)),   // 1/8
            ((501, 240), (1000, 500)),  // 1/8 one pixel short in width: 1/4
            ((900, 501), (2000, 1000)), // 1/2
            ((2001, 10), (4000, 2000)), // no reduction keeps the width
        ] {
            let decoded = decode_upright_at_least(&jpeg, LIMIT, |w, h| {
                assert_eq!((w, h), (4000, 2000), "asked with the photo's own size");
                needed
            })
            .unwrap();
            assert_eq!(decoded.pixels.dimensions(), expected, "needing {needed:?}");
            assert_eq!((decoded.size.width, decoded.size.height), (4000, 2000));
            // The same picture as the full decode scaled down, up to JPEG and filter detail
            // (the DCT reduction averages blocks, the resize filter is a wider triangle).
            let scaled = resize_rgb(&full, expected.0, expected.1);
            let difference = mean_difference(&decoded.pixels, &scaled);
            assert!(
                difference < 8.0,
                "needing {needed:?}: mean difference {difference}"
            );
        }
    }

    #[test]
    fn photos_below_the_reduction_threshold_are_decoded_whole() {
        let jpeg = encode(&pattern(3000, 2000), ImageFormat::Jpeg);
        let decoded = decode_upright_at_least(&jpeg, LIMIT, |_, _| (100, 100)).unwrap();
        assert_eq!(decoded.pixels.dimensions(), (3000, 2000));
    }

    #[test]
    fn a_reduced_decode_is_turned_upright_like_a_full_one() {
        let jpeg = jpeg_turned_clockwise(&pattern(4000, 2000));
        let full = decode_upright(&jpeg, LIMIT).unwrap();
        assert_eq!(full.dimensions(), (2000, 4000));
        // Needs are given upright: 250 wide, 500 high is 1/8 of the upright photo.
        let decoded = decode_upright_at_least(&jpeg, LIMIT, |w, h| {
            assert_eq!((w, h), (2000, 4000));
            (250, 500)
        })
        .unwrap();
        assert_eq!(decoded.pixels.dimensions(), (250, 500));
        assert_eq!((decoded.size.width, decoded.size.height), (2000, 4000));
        let expected = resize_rgb(&full, 250, 500);
        let difference = mean_difference(&decoded.pixels, &expected);
        assert!(difference < 8.0, "mean difference {difference}");
        // The measure tells orientations apart: turned the wrong way, it is far larger.
        let wrong_way = mean_difference(&decoded.pixels, &imageops::rotate180(&expected));
        assert!(
            wrong_way > 4.0 * difference,
            "{wrong_way} against {difference}"
        );
    }

    #[test]
    fn a_grey_jpeg_is_reduced_to_grey_rgb() {
        let grey = image::GrayImage::from_fn(4000, 2000, |x, _| Luma([(x * 255 / 4000) as u8]));
        let mut jpeg = Vec::new();
        grey.write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .unwrap();
        let decoded = decode_upright_at_least(&jpeg, LIMIT, |_, _| (500, 250)).unwrap();
        assert_eq!(decoded.pixels.dimensions(), (500, 250));
        let pixel = decoded.pixels.get_pixel(250, 125);
        assert_eq!(pixel[0], pixel[1]);
        assert_eq!(pixel[1], pixel[2]);
        assert!(
            (120..=136).contains(&pixel[0]),
            "middle of the ramp: {pixel:?}"
        );
    }

    #[test]
    fn thumbnail_is_bounded_and_boxes_are_drawn() {
        let photo = RgbImage::from_pixel(1600, 1200, Rgb([0, 0, 0]));
        let boxes = [PersonBox {
            x1: 0.25,
            y1: 0.25,
            x2: 0.5,
            y2: 0.75,
            score: 0.9,
        }];
        let jpeg = annotated_thumbnail(&photo, &counted(boxes.to_vec(), None), &[]);
        let thumb = image::load_from_memory(&jpeg).unwrap().into_rgb8();
        assert_eq!(thumb.dimensions(), (640, 480));
        // On the box's top edge the pixel is the box colour (JPEG-approximately); inside it is black.
        let edge = thumb.get_pixel(200, 121);
        assert!(edge[0] > 180 && edge[2] < 120, "edge pixel {edge:?}");
        let inside = thumb.get_pixel(240, 240);
        assert!(inside[0] < 40, "inside pixel {inside:?}");
    }

    fn counted(boxes: Vec<PersonBox>, density: Option<DensityMap>) -> Counted {
        Counted::made_of(boxes, density)
    }

    #[test]
    fn dense_thumbnails_show_heat_where_the_density_is() {
        let photo = RgbImage::from_pixel(800, 400, Rgb([0, 0, 0]));
        // Left half crowded, right half empty.
        let map = DensityMap {
            columns: 8,
            rows: 4,
            values: (0..32).map(|i| if i % 8 < 4 { 2.0 } else { 0.0 }).collect(),
            cell_fraction: (1.0 / 8.0, 1.0 / 4.0),
        };
        let box_far_right = PersonBox {
            x1: 0.9,
            y1: 0.1,
            x2: 0.95,
            y2: 0.9,
            score: 0.9,
        };
        let jpeg = annotated_thumbnail(&photo, &counted(vec![box_far_right], Some(map)), &[]);
        let thumb = image::load_from_memory(&jpeg).unwrap().into_rgb8();
        assert_eq!(thumb.dimensions(), (640, 320));
        let hot = thumb.get_pixel(80, 160);
        assert!(hot[0] > 150, "crowded part is heated: {hot:?}");
        let cold = thumb.get_pixel(560, 160);
        assert!(cold[0] < 40, "empty part untouched: {cold:?}");
        let no_box = thumb.get_pixel(580, 100);
        assert!(
            no_box[0] < 40,
            "boxes are not drawn on a density thumbnail: {no_box:?}"
        );
    }

    /// The heat ramp brightens steadily (readable in grey too) and ends in pale yellow.
    #[test]
    fn the_heat_ramp_brightens_steadily() {
        let luma = |[r, g, b]: [f32; 3]| 0.299 * r + 0.587 * g + 0.114 * b;
        let levels: Vec<f32> = (0..=20)
            .map(|i| luma(heat_colour(i as f32 / 20.0)))
            .collect();
        assert!(levels.windows(2).all(|w| w[1] > w[0]), "{levels:?}");
        assert_eq!(heat_colour(1.0), [252.0, 255.0, 164.0]);
    }

    #[test]
    fn zones_are_outlined() {
        let photo = RgbImage::from_pixel(640, 480, Rgb([0, 0, 0]));
        let zone = Zone {
            name: "door".into(),
            points: vec![[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]],
        };
        let jpeg = annotated_thumbnail(&photo, &counted(Vec::new(), None), &[zone]);
        let thumb = image::load_from_memory(&jpeg).unwrap().into_rgb8();
        let edge = thumb.get_pixel(320, 120);
        assert!(
            edge[1] > 150 && edge[2] > 150 && edge[0] < 100,
            "zone edge {edge:?}"
        );
        assert!(thumb.get_pixel(320, 240)[1] < 40, "inside untouched");
    }

    #[test]
    fn boxes_outside_the_image_are_clipped_not_a_panic() {
        let mut image = RgbImage::new(10, 10);
        draw_rectangle_outline(&mut image, (-1, -1, 50, 50), 2, BOX_COLOUR);
        assert_eq!(*image.get_pixel(0, 0), BOX_COLOUR);
        assert_eq!(*image.get_pixel(5, 5), Rgb([0, 0, 0]));
    }
}
