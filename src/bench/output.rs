//! Rendering records as a table for people, CSV for spreadsheets, or JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use super::{BenchError, MEMCPY, Record, format_size};

/// How `onecopy bench` prints its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned columns, one table per benchmark (see [`render`]).
    #[default]
    Table,
    /// `bench,transport,ranks,bytes,value,unit` and one line per record.
    Csv,
    /// One JSON array of records, one record per line.
    Json,
}

impl FromStr for Format {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            _ => Err(BenchError::UnknownFormat(s.to_string())),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Json => "json",
        })
    }
}

/// Renders `records` in `format`; the result ends with a newline unless it is empty.
///
/// The table has one section per benchmark and rank count (and unit), rows sorted by size, one
/// column per transport in the order the transports first appear in `records`, and `-` where a
/// transport has no value for a size; when a size was measured twice the later record wins.
/// - `mechanisms`: sizes as `4K`/`64M`, values with two decimals, and, where a [`MEMCPY`] record
///   exists for the size, each transport's ratio to it: `11.20 (0.51x)`. The memcpy ceiling is
///   measured in one process, so its `ranks` does not matter: it joins every section of its
///   benchmark.
/// - `latency`, `bw`, `bibw`: headed like the OSU micro-benchmarks (`# Size  Latency (us)`), sizes
///   in bytes, so the numbers line up against OSU's own output.
/// - any other benchmark (collectives): `# Size  Avg Latency(us)` for time units, else the unit.
pub fn render(records: &[Record], format: Format) -> String {
    match format {
        Format::Table => table(records),
        Format::Csv => csv(records),
        Format::Json => json(records),
    }
}

fn json(records: &[Record]) -> String {
    if records.is_empty() {
        return "[]\n".to_string();
    }
    let lines: Vec<String> = records
        .iter()
        .map(|r| {
            // Strings, integers and floats always serialize (non-finite floats become null), so
            // this cannot fail whatever a benchmark measured.
            let one = serde_json::to_string(r).expect("a Record always serializes to JSON");
            format!("  {one}")
        })
        .collect();
    format!("[\n{}\n]\n", lines.join(",\n"))
}

fn csv(records: &[Record]) -> String {
    let mut out = String::from("bench,transport,ranks,bytes,value,unit\n");
    for r in records {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            csv_field(&r.table()),
            csv_field(&r.transport),
            r.ranks,
            r.bytes,
            r.value,
            csv_field(&r.unit)
        );
    }
    out
}

/// Quotes a field the RFC 4180 way when it needs it; names chosen by a user may hold commas.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The records of one benchmark at one rank count, arranged as a grid of size by transport.
pub(super) struct Section {
    pub bench: String,
    pub ranks: u32,
    pub unit: String,
    /// In the order each first appears in the records.
    pub transports: Vec<String>,
    /// Size → one value per transport.
    pub rows: BTreeMap<u64, Vec<Option<f64>>>,
}

impl Section {
    fn memcpy_column(&self) -> Option<usize> {
        self.transports.iter().position(|t| t == MEMCPY)
    }

    /// The (size, value) points of one transport, by size.
    pub fn series(&self, column: usize) -> Vec<(u64, f64)> {
        self.rows
            .iter()
            .filter_map(|(&bytes, cells)| cells.get(column).copied().flatten().map(|v| (bytes, v)))
            .collect()
    }
}

/// Splits records into sections: one per (bench, ranks, unit) in order of first appearance, with
/// each memcpy record joining every section of its bench and unit (it ran in one process, so its
/// rank count says nothing); memcpy records of a bench with nothing else form their own sections.
pub(super) fn sections(records: &[Record]) -> Vec<Section> {
    let mut transport_order: Vec<&str> = Vec::new();
    for r in records {
        if !transport_order.contains(&r.transport.as_str()) {
            transport_order.push(&r.transport);
        }
    }
    let is_memcpy = |r: &Record| r.transport == MEMCPY;
    let has_others = |r: &Record| {
        records
            .iter()
            .any(|o| !is_memcpy(o) && o.table() == r.table() && o.unit == r.unit)
    };
    let mut keys: Vec<(String, u32, &str)> = Vec::new();
    for r in records {
        if is_memcpy(r) && has_others(r) {
            continue;
        }
        let key = (r.table(), r.ranks, r.unit.as_str());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(bench, ranks, unit)| {
            let belongs = |r: &Record| {
                r.table() == bench
                    && r.unit == unit
                    && (r.ranks == ranks || (is_memcpy(r) && has_others(r)))
            };
            let members: Vec<&Record> = records.iter().filter(|r| belongs(r)).collect();
            let transports: Vec<String> = transport_order
                .iter()
                .filter(|t| members.iter().any(|r| r.transport == **t))
                .map(|t| t.to_string())
                .collect();
            let mut rows: BTreeMap<u64, Vec<Option<f64>>> = BTreeMap::new();
            for r in members {
                if let Some(col) = transports.iter().position(|t| *t == r.transport) {
                    rows.entry(r.bytes)
                        .or_insert_with(|| vec![None; transports.len()])[col] = Some(r.value);
                }
            }
            Section {
                bench,
                ranks,
                unit: unit.to_string(),
                transports,
                rows,
            }
        })
        .collect()
}

/// What a benchmark's numbers are called, OSU-style.
pub(super) struct Heading {
    /// `Latency Test`, after `# onecopy`.
    pub title: String,
    /// `Latency (us)`, after `# Size`.
    pub quantity: String,
}

pub(super) fn heading(bench: &str, unit: &str) -> Heading {
    let (title, quantity) = match bench {
        "mechanisms" => ("Mechanisms".to_string(), unit.to_string()),
        "latency" => ("Latency Test".to_string(), format!("Latency ({unit})")),
        "bw" => ("Bandwidth Test".to_string(), format!("Bandwidth ({unit})")),
        "bibw" => (
            "Bi-Directional Bandwidth Test".to_string(),
            format!("Bi-Bandwidth ({unit})"),
        ),
        other if is_time_unit(unit) => (
            format!("{} Latency Test", capitalized(other)),
            format!("Avg Latency({unit})"),
        ),
        other => (capitalized(other), format!("Value ({unit})")),
    };
    Heading { title, quantity }
}

/// `1 rank`, `2 ranks`.
pub(super) fn ranks(n: u32) -> String {
    if n == 1 {
        "1 rank".to_string()
    } else {
        format!("{n} ranks")
    }
}

pub(super) fn is_time_unit(unit: &str) -> bool {
    matches!(unit, "s" | "ms" | "us" | "µs" | "ns")
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn table(records: &[Record]) -> String {
    sections(records)
        .iter()
        .map(|s| {
            if s.bench == "mechanisms" {
                mechanisms_table(s)
            } else {
                osu_table(s)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn value_cell(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{v:.2}"),
        None => "-".to_string(),
    }
}

fn mechanisms_table(s: &Section) -> String {
    let memcpy = s.memcpy_column();
    let title = match memcpy {
        Some(_) => format!(
            "# onecopy Mechanisms ({}): {}, and in parentheses the ratio to memcpy in one process\n",
            ranks(s.ranks),
            s.unit
        ),
        None => format!("# onecopy Mechanisms ({}): {}\n", ranks(s.ranks), s.unit),
    };
    let header: Vec<String> = std::iter::once("# Size".to_string())
        .chain(s.transports.iter().cloned())
        .collect();
    let rows: Vec<Vec<String>> = s
        .rows
        .iter()
        .map(|(&bytes, cells)| {
            let ceiling = memcpy
                .and_then(|m| cells[m])
                .filter(|c| c.is_finite() && *c > 0.0);
            let mut row = vec![format_size(bytes)];
            for (col, &cell) in cells.iter().enumerate() {
                row.push(match (cell, ceiling) {
                    (Some(v), Some(c)) if Some(col) != memcpy => format!("{v:.2} ({:.2}x)", v / c),
                    _ => value_cell(cell),
                });
            }
            row
        })
        .collect();
    title + &align(&[header], &rows)
}

fn osu_table(s: &Section) -> String {
    let h = heading(&s.bench, &s.unit);
    let mut out = String::new();
    let value_columns = s.transports.len();
    if value_columns == 1 {
        let _ = writeln!(
            out,
            "# onecopy {} ({}, {})",
            h.title,
            ranks(s.ranks),
            s.transports[0]
        );
    } else {
        let _ = writeln!(out, "# onecopy {} ({})", h.title, ranks(s.ranks));
    }
    let mut headers = vec![
        std::iter::once("# Size".to_string())
            .chain(std::iter::once(h.quantity))
            .chain(std::iter::repeat_n(
                String::new(),
                value_columns.saturating_sub(1),
            ))
            .collect::<Vec<_>>(),
    ];
    if value_columns > 1 {
        headers.push(
            std::iter::once("#".to_string())
                .chain(s.transports.iter().cloned())
                .collect(),
        );
    }
    let rows: Vec<Vec<String>> = s
        .rows
        .iter()
        .map(|(&bytes, cells)| {
            std::iter::once(bytes.to_string())
                .chain(cells.iter().map(|&c| value_cell(c)))
                .collect()
        })
        .collect();
    out + &align(&headers, &rows)
}

/// Left-aligns the first column and right-aligns the rest, each as wide as its widest cell (at
/// least 10), two spaces apart. A header cell may be left empty to let the previous one spill
/// over it (the OSU quantity spanning several transport columns).
fn align(headers: &[Vec<String>], rows: &[Vec<String>]) -> String {
    let columns = headers.iter().chain(rows).map(Vec::len).max().unwrap_or(0);
    let width = |col: usize, min: usize| {
        let spans_next = |line: &Vec<String>| {
            line.get(col + 1).is_some_and(String::is_empty) && col + 1 < columns
        };
        headers
            .iter()
            .filter(|h| !spans_next(h))
            .chain(rows)
            .filter_map(|line| line.get(col))
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0)
            .max(min)
    };
    let widths: Vec<usize> = (0..columns)
        .map(|c| if c == 0 { width(c, 6) } else { width(c, 10) })
        .collect();
    let mut out = String::new();
    for line in headers.iter().chain(rows) {
        let mut text = String::new();
        let mut col = 0;
        while col < line.len() {
            let cell = &line[col];
            // A cell followed by empty header cells is right-aligned over all their columns.
            let mut span = 1;
            while col + span < line.len() && line[col + span].is_empty() {
                span += 1;
            }
            let w: usize = widths[col..col + span].iter().sum::<usize>() + 2 * (span - 1);
            if col == 0 {
                let _ = write!(text, "{cell:<w$}");
            } else {
                let _ = write!(text, "  {cell:>w$}");
            }
            col += span;
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mech(transport: &str, bytes: u64, value: f64) -> Record {
        Record::new("mechanisms", transport, 2, bytes, value, "GB/s")
    }

    fn sample() -> Vec<Record> {
        vec![
            mech("memcpy", 4096, 22.0),
            mech("cma-read", 4096, 11.2),
            mech("shm-copy", 4096, 5.5),
            mech("memcpy", 64 << 20, 20.0),
            mech("cma-read", 64 << 20, 6.0),
            Record::new("latency", "cma-read", 2, 1, 0.45, "us"),
            Record::new("latency", "cma-read", 2, 4096, 1.5, "us"),
            Record::new("bw", "cma-read", 2, 4096, 3000.0, "MB/s"),
            Record::new("bw", "shm-copy", 2, 4096, 2500.5, "MB/s"),
            Record::new("bw", "shm-copy", 2, 8192, 2600.0, "MB/s"),
            Record::new("bibw", "cma-read", 2, 4096, 5000.0, "MB/s"),
            Record::new("allreduce", "cma-read", 4, 8, 2.5, "us"),
        ]
    }

    #[test]
    fn format_names() {
        assert_eq!("table".parse::<Format>().unwrap(), Format::Table);
        assert_eq!("CSV".parse::<Format>().unwrap(), Format::Csv);
        assert_eq!(" json".parse::<Format>().unwrap(), Format::Json);
        let e = "xml".parse::<Format>().unwrap_err().to_string();
        assert_eq!(e, "unknown output format 'xml': use table, csv or json");
        for f in [Format::Table, Format::Csv, Format::Json] {
            assert_eq!(f.to_string().parse::<Format>().unwrap(), f);
        }
    }

    #[test]
    fn json_round_trips() {
        let records = sample();
        let text = render(&records, Format::Json);
        let back: Vec<Record> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, records);
        assert_eq!(text.lines().count(), records.len() + 2, "one record a line");
        let empty: Vec<Record> = serde_json::from_str(&render(&[], Format::Json)).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_record() {
        let records = sample();
        let text = render(&records, Format::Csv);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "bench,transport,ranks,bytes,value,unit");
        assert_eq!(lines.len(), records.len() + 1);
        assert_eq!(lines[1], "mechanisms,memcpy,2,4096,22,GB/s");
        assert_eq!(lines[2], "mechanisms,cma-read,2,4096,11.2,GB/s");
        let odd = render(&[mech("a,\"b\"", 1, 1.0)], Format::Csv);
        assert!(odd.contains("mechanisms,\"a,\"\"b\"\"\",2,"), "{odd}");
    }

    #[test]
    fn mechanisms_table_shows_ratios_to_memcpy() {
        let text = render(&sample(), Format::Table);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("# onecopy Mechanisms (2 ranks): GB/s"));
        let header: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(header, ["#", "Size", "memcpy", "cma-read", "shm-copy"]);
        assert!(lines[2].starts_with("4K"));
        assert!(lines[2].contains("22.00"));
        assert!(lines[2].contains("11.20 (0.51x)"));
        assert!(lines[2].contains("5.50 (0.25x)"));
        assert!(lines[3].starts_with("64M"));
        assert!(lines[3].contains("6.00 (0.30x)"));
        assert!(
            lines[3].trim_end().ends_with('-'),
            "missing cell: {}",
            lines[3]
        );
        // Right-aligned: every row as long as the header (the missing cell included).
        assert_eq!(lines[2].len(), lines[1].len());
        assert_eq!(lines[3].len(), lines[1].len());
    }

    #[test]
    fn memcpy_joins_sections_whatever_its_rank_count() {
        let records = vec![
            Record::new("mechanisms", "memcpy", 1, 4096, 20.0, "GB/s"),
            mech("cma-read", 4096, 10.0),
        ];
        let text = render(&records, Format::Table);
        assert_eq!(text.matches("# onecopy").count(), 1, "{text}");
        assert!(text.contains("10.00 (0.50x)"));
        let alone = render(&records[..1], Format::Table);
        assert!(alone.contains("(1 rank)") && alone.contains("20.00"));
        assert!(!alone.contains("x)"));
    }

    #[test]
    fn osu_headings() {
        let text = render(&sample(), Format::Table);
        assert!(text.contains("# onecopy Latency Test (2 ranks, cma-read)\n"));
        assert!(text.contains("Latency (us)"));
        assert!(text.contains("# onecopy Bandwidth Test (2 ranks)\n"));
        assert!(text.contains("Bandwidth (MB/s)"));
        assert!(text.contains("# onecopy Bi-Directional Bandwidth Test (2 ranks, cma-read)\n"));
        assert!(text.contains("Bi-Bandwidth (MB/s)"));
        assert!(text.contains("# onecopy Allreduce Latency Test (4 ranks, cma-read)\n"));
        assert!(text.contains("Avg Latency(us)"));

        let latency: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("# onecopy Latency"))
            .take(4)
            .collect();
        assert!(latency[1].starts_with("# Size") && latency[1].ends_with("Latency (us)"));
        assert_eq!(
            latency[2].split_whitespace().collect::<Vec<_>>(),
            ["1", "0.45"]
        );
        assert_eq!(
            latency[2].len(),
            latency[1].len(),
            "values under the heading"
        );

        let bw: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("# onecopy Bandwidth"))
            .take(5)
            .collect();
        assert_eq!(
            bw[2].split_whitespace().collect::<Vec<_>>(),
            ["#", "cma-read", "shm-copy"]
        );
        assert_eq!(
            bw[3].split_whitespace().collect::<Vec<_>>(),
            ["4096", "3000.00", "2500.50"]
        );
        assert_eq!(
            bw[4].split_whitespace().collect::<Vec<_>>(),
            ["8192", "-", "2600.00"]
        );
        assert_eq!(bw[1].len(), bw[3].len());
    }

    #[test]
    fn generic_benches_and_empty_input() {
        assert_eq!(render(&[], Format::Table), "");
        let text = render(
            &[Record::new("pingpong", "x", 2, 1 << 20, 7.0, "GB/s")],
            Format::Table,
        );
        assert!(
            text.starts_with("# onecopy Pingpong (2 ranks, x)\n"),
            "{text}"
        );
        assert!(text.contains("Value (GB/s)") && text.contains("1048576") && text.contains("7.00"));
    }

    #[test]
    fn later_records_win_and_rows_are_sorted() {
        let records = vec![
            mech("cma-read", 8192, 1.0),
            mech("cma-read", 4096, 2.0),
            mech("cma-read", 4096, 3.0),
        ];
        let text = render(&records, Format::Table);
        let rows: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(
            rows[0].split_whitespace().collect::<Vec<_>>(),
            ["4K", "3.00"]
        );
        assert_eq!(
            rows[1].split_whitespace().collect::<Vec<_>>(),
            ["8K", "1.00"]
        );
    }
}
