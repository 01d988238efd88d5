//! Covering a photo with overlapping square tiles, and deciding which tile owns which point.

/// Where the tiles of one axis start: the fewest tiles of `tile` pixels that cover `length`
/// with neighbours overlapping by at least `min_overlap`, spread evenly.
pub fn tile_starts(length: u32, tile: u32, min_overlap: u32) -> Vec<u32> {
    if length <= tile {
        return vec![0];
    }
    let stride = tile.saturating_sub(min_overlap).max(1);
    let count = (length - min_overlap).div_ceil(stride).max(2);
    let span = length - tile;
    (0..count)
        .map(|i| {
            ((u64::from(span) * u64::from(i) + u64::from(count - 1) / 2) / u64::from(count - 1))
                as u32
        })
        .collect()
}

/// One tile: its origin in the (scaled) photo and which of its edges are inside the photo.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tile {
    pub x: u32,
    pub y: u32,
    /// The part of the photo this tile owns: the tiles' owned parts partition the photo, each
    /// overlap split in its middle. Half-open `[x0, x1) x [y0, y1)`, photo pixels.
    pub owned: (f32, f32, f32, f32),
    /// Edges shared with a neighbouring tile: left, top, right, bottom.
    pub inner_edges: [bool; 4],
}

impl Tile {
    pub fn owns(&self, x: f32, y: f32) -> bool {
        let (x0, y0, x1, y1) = self.owned;
        (x0..x1).contains(&x) && (y0..y1).contains(&y)
    }

    /// Whether a box given in this tile's pixels touches one of its inner edges (within
    /// `margin`): a person cut there is seen whole by the neighbouring tile.
    pub fn box_touches_inner_edge(
        &self,
        (x1, y1, x2, y2): (f32, f32, f32, f32),
        side: u32,
        margin: f32,
    ) -> bool {
        let side = side as f32;
        let [left, top, right, bottom] = self.inner_edges;
        (left && x1 <= margin)
            || (top && y1 <= margin)
            || (right && x2 >= side - margin)
            || (bottom && y2 >= side - margin)
    }
}

/// The tiles covering a `width` x `height` photo, row by row.
pub fn cover(width: u32, height: u32, side: u32, min_overlap: u32) -> Vec<Tile> {
    let xs = tile_starts(width, side, min_overlap);
    let ys = tile_starts(height, side, min_overlap);
    let bounds = |starts: &[u32], i: usize, length: u32| {
        let low = if i == 0 {
            0.0
        } else {
            (starts[i - 1] + side + starts[i]) as f32 / 2.0
        };
        let high = match starts.get(i + 1) {
            Some(next) => (starts[i] + side + next) as f32 / 2.0,
            None => length as f32,
        };
        (low, high)
    };
    let mut tiles = Vec::with_capacity(xs.len() * ys.len());
    for (j, &y) in ys.iter().enumerate() {
        for (i, &x) in xs.iter().enumerate() {
            let (x0, x1) = bounds(&xs, i, width);
            let (y0, y1) = bounds(&ys, j, height);
            tiles.push(Tile {
                x,
                y,
                owned: (x0, y0, x1, y1),
                inner_edges: [i > 0, j > 0, i + 1 < xs.len(), j + 1 < ys.len()],
            });
        }
    }
    tiles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tile_when_the_photo_fits() {
        assert_eq!(tile_starts(512, 512, 64), vec![0]);
        assert_eq!(tile_starts(300, 512, 64), vec![0]);
    }

    #[test]
    fn tiles_cover_the_axis_with_the_minimum_overlap() {
        for length in [513, 683, 910, 1024, 1500, 4000] {
            let starts = tile_starts(length, 512, 64);
            assert_eq!(starts[0], 0);
            assert_eq!(
                *starts.last().unwrap() + 512,
                length,
                "the last tile ends at the edge"
            );
            for pair in starts.windows(2) {
                let overlap = pair[0] + 512 - pair[1];
                assert!(overlap >= 64, "{length}: overlap {overlap} in {starts:?}");
            }
            // One tile fewer could not keep the overlap.
            let fewer = starts.len() as u32 - 1;
            assert!(
                fewer < 2 || 512 * fewer - 64 * (fewer - 1) < length,
                "{length}: {starts:?}"
            );
        }
        assert_eq!(tile_starts(683, 512, 64), vec![0, 171]);
    }

    #[test]
    fn owned_parts_partition_the_photo() {
        let tiles = cover(1500, 900, 512, 64);
        assert_eq!(tiles.len(), 4 * 2);
        for y in (0..900).step_by(7) {
            for x in (0..1500).step_by(7) {
                let owners = tiles
                    .iter()
                    .filter(|t| t.owns(x as f32 + 0.5, y as f32 + 0.5))
                    .count();
                assert_eq!(owners, 1, "point ({x}, {y})");
            }
        }
    }

    #[test]
    fn inner_edges_are_only_the_shared_ones() {
        let tiles = cover(683, 512, 512, 64);
        assert_eq!(tiles.len(), 2);
        assert_eq!(tiles[0].inner_edges, [false, false, true, false]);
        assert_eq!(tiles[1].inner_edges, [true, false, false, false]);
        let cut = (400.0, 10.0, 512.0, 200.0);
        assert!(tiles[0].box_touches_inner_edge(cut, 512, 2.0));
        assert!(!tiles[1].box_touches_inner_edge((400.0, 10.0, 512.0, 200.0), 512, 2.0));
    }
}
