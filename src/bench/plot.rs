//! SVG plots of records: value against message size, one line per transport.
//!
//! plotters is built with only its SVG backend and line series, without the `ttf` feature: text
//! goes into the file as `<text>` for the viewer to set, and layout uses plotters' own width
//! estimate, so plotting needs neither font files nor fontconfig/FreeType on the machine.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::output::{Section, heading, is_time_unit, ranks, sections};
use super::{BenchError, MEMCPY, Record, format_size};

const PANEL_WIDTH: u32 = 1000;
const PANEL_HEIGHT: u32 = 620;
const TITLE_HEIGHT: u32 = 50;

/// Line colours for transports in order of appearance (the Tableau 10 palette, which stays
/// distinguishable for the common kinds of colour blindness); memcpy gets [`MEMCPY_COLOR`].
const PALETTE: [RGBColor; 9] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The ceiling is grey and dashed: a reference line, not a contender.
const MEMCPY_COLOR: RGBColor = RGBColor(0x44, 0x44, 0x44);

/// Writes an SVG plot of `records` to `path`.
///
/// Value against message size, the size axis logarithmic with labels such as `4K`, `1M`, `64M`;
/// one line with markers per transport and a legend to the right of the chart; the [`MEMCPY`]
/// ceiling dashed. The value axis is named after the unit (`Bandwidth (GB/s)`), linear from zero
/// for rates, and logarithmic for times that span 20x or more (latencies from 1 byte to megabytes
/// span decades).
///
/// Records are split into sections as the table does (one per benchmark and rank count); each
/// section is a panel, stacked top to bottom in the one file under `title`, so a whole run is one
/// picture. Records with a size of 0 bytes have no place on a logarithmic axis and are left out.
///
/// Text is written as SVG `<text>` in the viewer's sans-serif font, so drawing needs no font files.
///
/// ```no_run
/// use onecopy::bench::{Record, plot_svg};
/// let records = vec![Record::new("mechanisms", "cma-read", 2, 4096, 11.2, "GB/s")];
/// plot_svg(&records, std::path::Path::new("mechanisms.svg"), "CMA vs memcpy").unwrap();
/// ```
pub fn plot_svg(records: &[Record], path: &Path, title: &str) -> Result<(), BenchError> {
    let svg = svg_string(records, title)?;
    std::fs::write(path, svg).map_err(|source| BenchError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn svg_string(records: &[Record], title: &str) -> Result<String, BenchError> {
    let drawable: Vec<Record> = records.iter().filter(|r| r.bytes > 0).cloned().collect();
    let panels = sections(&drawable);
    if panels.is_empty() {
        return Err(BenchError::NothingToPlot);
    }
    let plot = |e: &dyn std::fmt::Display| BenchError::Plot(e.to_string());
    let n = panels.len() as u32;
    let height = if n == 1 {
        PANEL_HEIGHT
    } else {
        TITLE_HEIGHT + n * PANEL_HEIGHT
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (PANEL_WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot(&e))?;
        if let [only] = panels.as_slice() {
            draw_panel(&root, only, title).map_err(|e| plot(&e))?;
        } else {
            let body = root
                .titled(title, ("sans-serif", 36))
                .map_err(|e| plot(&e))?;
            for (area, section) in body.split_evenly((panels.len(), 1)).iter().zip(&panels) {
                let h = heading(&section.bench, &section.unit);
                let caption = format!("{} ({})", h.title, ranks(section.ranks));
                draw_panel(area, section, &caption).map_err(|e| plot(&e))?;
            }
        }
        root.present().map_err(|e| plot(&e))?;
    }
    Ok(svg)
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Latencies go on a logarithmic axis only when they span this factor or more; over a narrower
/// range a log axis would have no power of ten to label.
const LOG_Y_SPAN: f64 = 20.0;

/// Legend rows, in pixels.
const LEGEND_ROW: i32 = 30;

/// One panel: caption on top, the chart, and the legend in a column to its right, where it cannot
/// hide a line (the memcpy ceiling runs along the top left, where a legend inside would sit).
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &Section,
    caption: &str,
) -> DrawResult<DB> {
    let body = area.titled(caption, ("sans-serif", 32))?;
    // The SVG font is the viewer's, so the width of a name is estimated: about 11 px a character.
    let longest = s
        .transports
        .iter()
        .map(|t| t.chars().count())
        .max()
        .unwrap_or(0) as u32;
    let legend_width = (70 + 11 * longest).clamp(160, 360);
    let (width, _) = body.dim_in_pixel();
    let (plot_area, legend_area) = body.split_horizontally(width.saturating_sub(legend_width));

    let values: Vec<f64> = (0..s.transports.len())
        .flat_map(|c| s.series(c))
        .map(|(_, v)| v)
        .filter(|v| v.is_finite())
        .collect();
    let max = values.iter().copied().fold(0.0, f64::max);
    let min_positive = values
        .iter()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    if is_time_unit(&s.unit) && max / min_positive >= LOG_Y_SPAN {
        let (lo, hi) = (min_positive / 1.5, max * 1.5);
        draw_chart(&plot_area, s, (lo..hi).log_scale())?;
    } else {
        let hi = if max > 0.0 { max * 1.1 } else { 1.0 };
        draw_chart(&plot_area, s, 0.0..hi)?;
    }
    draw_legend(&legend_area, s)
}

/// The line style and colour of each transport of a section, memcpy dashed and grey.
fn styles(s: &Section) -> Vec<(RGBColor, bool)> {
    let mut palette = PALETTE.iter().cycle();
    s.transports
        .iter()
        .map(|t| {
            if t == MEMCPY {
                (MEMCPY_COLOR, true)
            } else {
                (palette.next().copied().unwrap_or(BLACK), false)
            }
        })
        .collect()
}

fn draw_chart<DB, Y>(area: &DrawingArea<DB, Shift>, s: &Section, y_spec: Y) -> DrawResult<DB>
where
    DB: DrawingBackend,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let sizes: Vec<u64> = s.rows.keys().copied().collect();
    let (first, last) = match (sizes.first(), sizes.last()) {
        (Some(&a), Some(&b)) => (a as f64, b as f64),
        _ => return Ok(()),
    };
    // Room either side so the end markers are not cut in half by the frame.
    let x_spec = ((first / 1.5)..(last * 1.5))
        .log_scale()
        .with_key_points(size_ticks(first as u64, last as u64));

    let mut chart = ChartBuilder::on(area)
        .margin(16)
        .margin_right(8)
        .x_label_area_size(60)
        .y_label_area_size(84)
        .build_cartesian_2d(x_spec, y_spec)?;
    chart
        .configure_mesh()
        .x_desc("Message size (bytes)")
        .y_desc(axis_name(&s.unit))
        .axis_desc_style(("sans-serif", 24))
        .label_style(("sans-serif", 20))
        .x_label_formatter(&|x| format_size(x.round() as u64))
        .y_label_formatter(&|y| short_number(*y))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;

    for (column, (color, dashed)) in styles(s).into_iter().enumerate() {
        let points: Vec<(f64, f64)> = s
            .series(column)
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(b, v)| (b as f64, v))
            .collect();
        let line = color.stroke_width(2);
        if dashed {
            chart.draw_series(DashedLineSeries::new(points.clone(), 10, 6, line))?;
        } else {
            chart.draw_series(LineSeries::new(points.clone(), line))?;
        }
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    Ok(())
}

fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, s: &Section) -> DrawResult<DB> {
    let (width, _) = area.dim_in_pixel();
    let top = 24;
    let rows = s.transports.len() as i32;
    area.draw(&Rectangle::new(
        [(0, top), (width as i32 - 12, top + rows * LEGEND_ROW + 16)],
        BLACK.mix(0.4).stroke_width(1),
    ))?;
    let font = ("sans-serif", 22)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (name, (color, dashed))) in s.transports.iter().zip(styles(s)).enumerate() {
        let y = top + 8 + LEGEND_ROW / 2 + i as i32 * LEGEND_ROW;
        let (x0, x1) = (12, 48);
        let line = color.stroke_width(2);
        if dashed {
            area.draw(&DashedPathElement::new(vec![(x0, y), (x1, y)], 8, 4, line))?;
        } else {
            area.draw(&PathElement::new(vec![(x0, y), (x1, y)], line))?;
        }
        area.draw(&Circle::new(((x0 + x1) / 2, y), 4, color.filled()))?;
        area.draw(&Text::new(name.as_str(), (x1 + 10, y), font.clone()))?;
    }
    Ok(())
}

/// `Bandwidth (GB/s)`, `Latency (us)`, or the bare unit.
fn axis_name(unit: &str) -> String {
    if unit.ends_with("B/s") {
        format!("Bandwidth ({unit})")
    } else if is_time_unit(unit) {
        format!("Latency ({unit})")
    } else {
        unit.to_string()
    }
}

/// Powers of two from `first` to `last`, thinned to at most 10 ticks at an even spacing in the
/// exponent, so a 4K..256M sweep is labelled 4K, 16K, 64K, ... 256M rather than 10000, 100000.
fn size_ticks(first: u64, last: u64) -> Vec<f64> {
    let lo = first.max(1).next_power_of_two().trailing_zeros();
    let hi = 63 - last.max(1).leading_zeros();
    if hi < lo {
        // No power of two inside the range (a single non-round size): label the size itself.
        return vec![first as f64];
    }
    let count = hi - lo + 1;
    let stride = count.div_ceil(10);
    (lo..=hi)
        .step_by(stride as usize)
        .map(|e| (1u64 << e) as f64)
        .collect()
}

/// Axis numbers without trailing zeros: `0`, `2.5`, `12`, `1500`, `0.25`.
fn short_number(v: f64) -> String {
    let text = if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mechanisms() -> Vec<Record> {
        let mut records = Vec::new();
        for (i, bytes) in super::super::mechanisms_sizes().into_iter().enumerate() {
            let b = bytes as u64;
            let i = i as f64;
            records.push(Record::new(
                "mechanisms",
                MEMCPY,
                2,
                b,
                22.0 - i * 0.3,
                "GB/s",
            ));
            records.push(Record::new("mechanisms", "cma-read", 2, b, 3.0 + i, "GB/s"));
            records.push(Record::new(
                "mechanisms",
                "cma-split",
                2,
                b,
                4.0 + i * 1.5,
                "GB/s",
            ));
            records.push(Record::new(
                "mechanisms",
                "shm-copy",
                2,
                b,
                6.0 + i * 0.8,
                "GB/s",
            ));
        }
        records
    }

    /// The contents of every `<text>` element.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| t.split_once('>'))
            .filter_map(|(_, rest)| rest.split_once("</text>"))
            .map(|(content, _)| content.trim().to_string())
            .collect()
    }

    fn polylines_in(svg: &str, color: RGBColor) -> usize {
        let stroke = format!("stroke=\"#{:02X}{:02X}{:02X}\"", color.0, color.1, color.2);
        svg.split("<polyline")
            .skip(1)
            .filter(|tag| tag.split('>').next().is_some_and(|t| t.contains(&stroke)))
            .count()
    }

    #[test]
    fn writes_an_svg_with_every_transport_and_a_dashed_memcpy() {
        let dir = std::env::temp_dir().join(format!("onecopy-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mechanisms.svg");
        plot_svg(&mechanisms(), &path, "Mechanisms, 2 ranks").unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        assert!(svg.contains("<svg"));
        let texts = texts(&svg);
        let labels = [
            MEMCPY,
            "cma-read",
            "cma-split",
            "shm-copy",
            "Bandwidth (GB/s)",
            "Message size (bytes)",
            "Mechanisms, 2 ranks",
        ];
        for label in labels {
            assert!(texts.iter().any(|t| t == label), "no label {label}");
        }
        for tick in ["4K", "64K", "1M", "64M", "256M"] {
            assert!(texts.iter().any(|t| t == tick), "no tick {tick}");
        }
        // A solid line is one polyline; the dashed memcpy line is many short ones.
        assert_eq!(
            polylines_in(&svg, PALETTE[0]),
            2,
            "cma-read line and legend"
        );
        assert!(
            polylines_in(&svg, MEMCPY_COLOR) > 20,
            "memcpy is not dashed"
        );
    }

    #[test]
    fn several_benches_become_panels_and_zero_bytes_are_skipped() {
        let mut records = mechanisms();
        for bytes in [0u64, 1, 64, 4096, 1 << 20] {
            let us = 0.4 + bytes as f64 / 5000.0;
            records.push(Record::new("latency", "cma-read", 2, bytes, us, "us"));
        }
        let svg = svg_string(&records, "all").unwrap();
        let texts = texts(&svg);
        for label in [
            "all",
            "Mechanisms (2 ranks)",
            "Latency Test (2 ranks)",
            "Latency (us)",
        ] {
            assert!(texts.iter().any(|t| t == label), "no label {label}");
        }
        assert!(svg.contains(&format!("height=\"{}\"", TITLE_HEIGHT + 2 * PANEL_HEIGHT)));
    }

    #[test]
    fn refuses_nothing_and_reports_unwritable_paths() {
        assert!(matches!(
            svg_string(&[], "t"),
            Err(BenchError::NothingToPlot)
        ));
        let zero = [Record::new("latency", "x", 2, 0, 1.0, "us")];
        assert!(matches!(
            svg_string(&zero, "t"),
            Err(BenchError::NothingToPlot)
        ));
        let one = [Record::new("bw", "x", 2, 4097, 1.0, "MB/s")];
        let e = plot_svg(&one, Path::new("/nonexistent-dir/x.svg"), "t").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("could not write /nonexistent-dir/x.svg"),
            "{e}"
        );
    }

    #[test]
    fn ticks_and_numbers() {
        let k = |e: u32| (1u64 << e) as f64;
        assert_eq!(
            size_ticks(4096, 256 << 20),
            (12..=28).step_by(2).map(k).collect::<Vec<_>>()
        );
        assert_eq!(size_ticks(1, 4 << 20).len(), 8);
        assert_eq!(size_ticks(4097, 4097), vec![4097.0]);
        assert_eq!(size_ticks(4096, 4096), vec![4096.0]);
        assert_eq!(short_number(0.0), "0");
        assert_eq!(short_number(2.5), "2.5");
        assert_eq!(short_number(12.0), "12");
        assert_eq!(short_number(1500.4), "1500");
        assert_eq!(short_number(0.25), "0.25");
    }
}
