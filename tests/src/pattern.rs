//! Does a screenshot show the test pattern? The agent's test source is
//! GStreamer's SMPTE bars: across the top two thirds, grey then six
//! saturated bars (yellow, cyan, green, magenta, red, blue). A black,
//! frozen-grey or garbage frame has few or none of them.
//!
//! Colours are read coarsely (each channel low, mid or high) so H.264 and
//! scaling noise do not matter, and only runs wider than a fraction of the
//! image count as bands.

use anyhow::{Context, bail};

/// One run of similar pixels along a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    pub start: usize,
    pub end: usize,
    /// Mean colour of the run.
    pub rgb: [u8; 3],
    /// Each channel as 0 (low), 1 (mid), 2 (high).
    pub class: [u8; 3],
    pub saturated: bool,
}

/// The bands of one image row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub y: usize,
    pub bands: Vec<Band>,
}

impl Row {
    /// How many different saturated colours the row has.
    pub fn distinct_saturated(&self) -> usize {
        let mut classes: Vec<[u8; 3]> = self
            .bands
            .iter()
            .filter(|band| band.saturated)
            .map(|band| band.class)
            .collect();
        classes.sort();
        classes.dedup();
        classes.len()
    }
}

/// Decodes an 8-bit RGB(A) PNG: (width, height, RGB pixels).
pub fn decode_png(png_bytes: &[u8]) -> anyhow::Result<(usize, usize, Vec<[u8; 3]>)> {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().context("not a PNG")?;
    let size = reader
        .output_buffer_size()
        .context("PNG too large to decode")?;
    let mut buffer = vec![0; size];
    let info = reader.next_frame(&mut buffer).context("bad PNG data")?;
    let channels = match (info.color_type, info.bit_depth) {
        (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
        (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
        other => bail!("unsupported PNG format {other:?}"),
    };
    let (width, height) = (info.width as usize, info.height as usize);
    let pixels = buffer[..info.buffer_size()]
        .chunks_exact(info.line_size)
        .flat_map(|line| {
            line[..width * channels]
                .chunks_exact(channels)
                .map(|px| [px[0], px[1], px[2]])
        })
        .collect();
    Ok((width, height, pixels))
}

fn class(value: u8) -> u8 {
    match value {
        0..=63 => 0,
        64..=159 => 1,
        _ => 2,
    }
}

/// Splits row `y` into runs of one colour class at least `min_width` wide.
pub fn row_bands(width: usize, pixels: &[[u8; 3]], y: usize, min_width: usize) -> Row {
    let line = &pixels[y * width..(y + 1) * width];
    let mut bands = Vec::new();
    let mut start = 0;
    for x in 1..=width {
        let boundary = x == width || line[x].map(class) != line[start].map(class);
        if !boundary {
            continue;
        }
        if x - start >= min_width.max(1) {
            let run = &line[start..x];
            let mean = |channel: usize| {
                (run.iter().map(|px| u32::from(px[channel])).sum::<u32>() / run.len() as u32) as u8
            };
            let rgb = [mean(0), mean(1), mean(2)];
            let (max, min) = (
                rgb.iter().copied().max().unwrap_or(0),
                rgb.iter().copied().min().unwrap_or(0),
            );
            bands.push(Band {
                start,
                end: x,
                rgb,
                class: rgb.map(class),
                saturated: max >= 128 && max - min >= 96,
            });
        }
        start = x;
    }
    Row { y, bands }
}

/// Rows at 15 %, 30 % and 45 % of the height (inside the SMPTE bars).
pub fn smpte_rows(png_bytes: &[u8]) -> anyhow::Result<Vec<Row>> {
    let (width, height, pixels) = decode_png(png_bytes)?;
    if width < 70 || height < 20 {
        bail!("image too small: {width}x{height}");
    }
    Ok([0.15, 0.30, 0.45]
        .iter()
        .map(|fraction| {
            let y = (height as f64 * fraction) as usize;
            row_bands(width, &pixels, y, width / 40)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        let mut data = Vec::new();
        for y in 0..height {
            for x in 0..width {
                let [r, g, b] = pixel(x, y);
                data.extend_from_slice(&[r, g, b, 255]);
            }
        }
        writer.write_image_data(&data).unwrap();
        writer.finish().unwrap();
        out
    }

    const BARS: [[u8; 3]; 7] = [
        [191, 191, 191],
        [191, 191, 0],
        [0, 191, 191],
        [0, 191, 0],
        [191, 0, 191],
        [191, 0, 0],
        [0, 0, 191],
    ];

    #[test]
    fn smpte_bars_give_six_saturated_colours() {
        let png = encode(140, 40, |x, _| {
            let [r, g, b] = BARS[(x / 20) as usize];
            // A little coding noise.
            let noise = (x % 3) as u8 * 4;
            [r.saturating_sub(noise), g.saturating_add(noise / 2), b]
        });
        for row in smpte_rows(&png).unwrap() {
            assert_eq!(row.distinct_saturated(), 6, "{row:?}");
            assert_eq!(row.bands.len(), 7, "{row:?}");
        }
    }

    #[test]
    fn black_grey_and_two_tone_frames_do_not_pass() {
        for png in [
            encode(140, 40, |_, _| [0, 0, 0]),
            encode(140, 40, |_, _| [128, 128, 128]),
            encode(
                140,
                40,
                |x, _| if x < 70 { [200, 0, 0] } else { [0, 0, 200] },
            ),
        ] {
            for row in smpte_rows(&png).unwrap() {
                assert!(row.distinct_saturated() <= 2, "{row:?}");
            }
        }
    }

    #[test]
    fn narrow_runs_are_not_bands() {
        // Alternating colours every 2 px: noise, not bars.
        let png = encode(140, 40, |x, _| BARS[(x / 2 % 7) as usize]);
        for row in smpte_rows(&png).unwrap() {
            assert_eq!(row.bands.len(), 0, "{row:?}");
        }
    }
}
