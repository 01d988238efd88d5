//! Pixels in and out: decoding an uploaded photo upright, and drawing the annotated thumbnail.

use std::io::Cursor;

use common::validate::{InputError, check_photo};
use common::wire::PersonBox;
use fast_image_resize::{FilterType as ResizeFilter, ResizeAlg, ResizeOptions, Resizer};
use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image::{
    DynamicImage, ImageBuffer, ImageDecoder, ImageFormat, ImageReader, Limits, Luma, Rgb, RgbImage,
};

use crate::model::{Counted, DensityMap};

/// The long side of the thumbnail pushed to the dashboard.
pub const THUMBNAIL_MAX_SIDE: u32 = 640;
const THUMBNAIL_JPEG_QUALITY: u8 = 80;
const BOX_COLOUR: Rgb<u8> = Rgb([255, 64, 32]);
const HEAT_MAX_ALPHA: f32 = 0.7;

/// Decodes JPEG, PNG or WebP into RGB, turned upright according to its EXIF orientation.
/// The header is checked first (format by magic bytes, pixel count), so an oversized image is
/// refused before its pixels are allocated.
pub fn decode_upright(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, InputError> {
    let header = check_photo(bytes, max_pixels)?;
    if header.format == ImageFormat::Jpeg && !jpeg_reaches_end_of_image(bytes) {
        return Err(InputError::Undecodable(
            "the JPEG data ends before its end-of-image marker: the file is truncated".into(),
        ));
    }
    let undecodable = |e: image::ImageError| InputError::Undecodable(e.to_string());
    let mut reader = ImageReader::with_format(Cursor::new(bytes), header.format);
    let mut limits = Limits::default();
    // Enough for the declared pixels as RGBA 16-bit plus decoder scratch, and not more.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let orientation = decoder.orientation().map_err(undecodable)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
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

/// Scales `photo` so that its long side fits `max_side` (never up), keeping its aspect ratio.
pub fn fit_within(photo: &RgbImage, max_side: u32) -> RgbImage {
    let (width, height) = photo.dimensions();
    let long = width.max(height);
    if long <= max_side {
        return photo.clone();
    }
    let scale = max_side as f32 / long as f32;
    let w = ((width as f32 * scale).round() as u32).max(1);
    let h = ((height as f32 * scale).round() as u32).max(1);
    resize_rgb(photo, w, h)
}

/// A JPEG of `photo` at most [`THUMBNAIL_MAX_SIDE`] on its long side, with each box outlined.
pub fn annotated_thumbnail(photo: &RgbImage, counted: &Counted) -> Vec<u8> {
    let mut thumb = fit_within(photo, THUMBNAIL_MAX_SIDE);
    match &counted.density {
        Some(map) => overlay_density(&mut thumb, map),
        None => draw_boxes(&mut thumb, &counted.boxes),
    }
    let mut jpeg = Vec::with_capacity(64 * 1024);
    JpegEncoder::new_with_quality(&mut jpeg, THUMBNAIL_JPEG_QUALITY)
        .encode_image(&thumb)
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

/// Blends the density map over the thumbnail as heat: transparent where nobody is, up to
/// [`HEAT_MAX_ALPHA`] of the heat colour where the map peaks. The map is stretched to the
/// thumbnail (its last cells may reach a few pixels past the photo's edge).
fn overlay_density(thumb: &mut RgbImage, map: &DensityMap) {
    let peak = map.values.iter().copied().fold(0.0f32, f32::max);
    if peak <= 0.0 || map.columns == 0 || map.rows == 0 {
        return;
    }
    let cells: ImageBuffer<Luma<f32>, Vec<f32>> =
        ImageBuffer::from_fn(map.columns, map.rows, |x, y| {
            Luma([(map.values[(y * map.columns + x) as usize] / peak).clamp(0.0, 1.0)])
        });
    let heat = imageops::resize(&cells, thumb.width(), thumb.height(), FilterType::Triangle);
    for (pixel, level) in thumb.pixels_mut().zip(heat.pixels()) {
        let t = level[0].clamp(0.0, 1.0);
        let alpha = HEAT_MAX_ALPHA * t;
        // From orange at low density to yellow-white at the peak.
        let colour = [255.0, 96.0 + 159.0 * t, 32.0 + 160.0 * t * t];
        for (channel, c) in pixel.0.iter_mut().zip(colour) {
            *channel = (f32::from(*channel) * (1.0 - alpha) + c * alpha).round() as u8;
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
    use crate::model::Method;

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

    #[test]
    fn exif_orientation_is_applied() {
        // A minimal big-endian TIFF block with one tag: Orientation (0x0112) = 6, "rotate 90° clockwise".
        let exif = vec![
            0x4D, 0x4D, 0x00, 0x2A, 0x00, 0x00, 0x00, 0x08, 0x00, 0x01, 0x01, 0x12, 0x00, 0x03,
            0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let photo = RgbImage::from_pixel(30, 20, Rgb([200, 200, 200]));
        let mut jpeg = Vec::new();
        let mut encoder = JpegEncoder::new_with_quality(&mut jpeg, 90);
        image::ImageEncoder::set_exif_metadata(&mut encoder, exif).unwrap();
        encoder.encode_image(&photo).unwrap();
        let decoded = decode_upright(&jpeg, 10_000).unwrap();
        assert_eq!(decoded.dimensions(), (20, 30));
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
        let jpeg = annotated_thumbnail(&photo, &counted(boxes.to_vec(), None));
        let thumb = image::load_from_memory(&jpeg).unwrap().into_rgb8();
        assert_eq!(thumb.dimensions(), (640, 480));
        // On the box's top edge the pixel is the box colour (JPEG-approximately); inside it is black.
        let edge = thumb.get_pixel(200, 121);
        assert!(edge[0] > 180 && edge[2] < 120, "edge pixel {edge:?}");
        let inside = thumb.get_pixel(240, 240);
        assert!(inside[0] < 40, "inside pixel {inside:?}");
    }

    fn counted(boxes: Vec<PersonBox>, density: Option<DensityMap>) -> Counted {
        Counted {
            count: 1,
            method: if density.is_some() {
                Method::Density
            } else {
                Method::Detector
            },
            reason: String::new(),
            model: "test",
            candidate_heads: 0,
            boxes,
            density,
            preprocess_ms: 0.0,
            inference_ms: 0.0,
            postprocess_ms: 0.0,
        }
    }

    #[test]
    fn dense_thumbnails_show_heat_where_the_density_is() {
        let photo = RgbImage::from_pixel(800, 400, Rgb([0, 0, 0]));
        // Left half crowded, right half empty.
        let map = DensityMap {
            columns: 8,
            rows: 4,
            values: (0..32).map(|i| if i % 8 < 4 { 2.0 } else { 0.0 }).collect(),
        };
        let box_far_right = PersonBox {
            x1: 0.9,
            y1: 0.1,
            x2: 0.95,
            y2: 0.9,
            score: 0.9,
        };
        let jpeg = annotated_thumbnail(&photo, &counted(vec![box_far_right], Some(map)));
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

    #[test]
    fn boxes_outside_the_image_are_clipped_not_a_panic() {
        let mut image = RgbImage::new(10, 10);
        draw_rectangle_outline(&mut image, (-1, -1, 50, 50), 2, BOX_COLOUR);
        assert_eq!(*image.get_pixel(0, 0), BOX_COLOUR);
        assert_eq!(*image.get_pixel(5, 5), Rgb([0, 0, 0]));
    }
}
