//! The measurement harness behind `onecopy bench`: size lists, timing, the memcpy ceiling, and
//! the table, CSV, JSON and SVG output every benchmark shares.
//!
//! A benchmark produces [`Record`]s, one number each (a size, a transport, a value in a unit);
//! everything here works on those records and knows nothing of how they were measured. Running
//! transports and ranks is the job of the benchmarks themselves, not of this module.
//!
//! ```
//! use onecopy::bench::{Format, Record, render};
//! let records = vec![
//!     Record::new("mechanisms", "memcpy", 2, 4096, 22.0, "GB/s"),
//!     Record::new("mechanisms", "cma-read", 2, 4096, 11.0, "GB/s"),
//! ];
//! assert!(render(&records, Format::Table).contains("11.00 (0.50x)"));
//! let csv = render(&records, "csv".parse().unwrap());
//! assert_eq!(csv.lines().count(), 3);
//! ```

mod buffer;
pub mod coll;
pub mod datatype;
mod error;
mod job;
pub mod mechanisms;
mod output;
pub mod overlap;
pub mod p2p;
mod plot;
mod progress;
mod sizes;
mod timing;
pub mod tune;

use serde::{Deserialize, Deserializer, Serialize};

pub use buffer::{Buffer, Pages};
pub use error::BenchError;
pub use output::{Format, render};
pub use plot::plot_svg;
pub use progress::Progress;
pub use sizes::{
    MAX_SIZE_BYTES, default_sizes, format_size, mechanisms_sizes, parse_sizes, parse_sizes_at_least,
};
pub use timing::{Timing, gbps, measure, median, memcpy_gbps, time_calls};

/// The name of the transport that stands for one `memcpy` inside one process: the ceiling that
/// the table compares every mechanism with, and that the plot draws dashed.
pub const MEMCPY: &str = "memcpy";

/// One measured number, the unit of output of every benchmark.
///
/// As JSON the fields come in this order:
/// `{"bench":"mechanisms","transport":"cma-read","ranks":2,"bytes":4096,"value":3.2,"unit":"GB/s"}`.
/// A value that is not finite is written as `null` (JSON has no NaN) and read back as NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Which benchmark: `mechanisms`, `latency`, `bw`, `bibw`, `datatype`, or a collective such
    /// as `allreduce`.
    pub bench: String,
    /// `datatype`: which layout (`vector`, `column`); absent for the other benchmarks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// Which mechanism or transport moved the bytes (`cma-read`, `shm-copy`, [`MEMCPY`], ...).
    pub transport: String,
    /// How many processes took part.
    pub ranks: u32,
    /// Message size in bytes.
    pub bytes: u64,
    /// The measured value, in `unit`.
    #[serde(deserialize_with = "null_as_nan")]
    pub value: f64,
    /// `GB/s`, `MB/s` or `us`.
    pub unit: String,
}

impl Record {
    /// A record from its parts.
    pub fn new(
        bench: &str,
        transport: &str,
        ranks: u32,
        bytes: u64,
        value: f64,
        unit: &str,
    ) -> Self {
        Record {
            bench: bench.to_string(),
            layout: None,
            transport: transport.to_string(),
            ranks,
            bytes,
            value,
            unit: unit.to_string(),
        }
    }
}

impl Record {
    /// The same record for layout `layout` (`datatype`).
    pub fn with_layout(mut self, layout: &str) -> Self {
        self.layout = Some(layout.to_string());
        self
    }

    /// The table it belongs in: its bench, and its layout if it has one (`datatype vector`).
    pub fn table(&self) -> String {
        match &self.layout {
            Some(layout) => format!("{} {layout}", self.bench),
            None => self.bench.clone(),
        }
    }
}

fn null_as_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_json_field_order() {
        let r = Record::new("mechanisms", "cma-read", 2, 4096, 3.2, "GB/s");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"bench":"mechanisms","transport":"cma-read","ranks":2,"bytes":4096,"value":3.2,"unit":"GB/s"}"#
        );
        let spaced = r#"{"bench": "mechanisms", "transport": "cma-read", "ranks": 2, "bytes": 4096, "value": 3.2, "unit": "GB/s"}"#;
        assert_eq!(serde_json::from_str::<Record>(spaced).unwrap(), r);
    }

    #[test]
    fn non_finite_values_round_trip_as_null() {
        let r = Record::new("latency", "cma-read", 2, 0, f64::NAN, "us");
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""value":null"#), "{json}");
        assert!(
            serde_json::from_str::<Record>(&json)
                .unwrap()
                .value
                .is_nan()
        );
    }
}
