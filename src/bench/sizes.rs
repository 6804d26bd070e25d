//! Message-size lists: parsing `--sizes 4K,4M,64M`, the default sweeps, and short size labels.

use super::BenchError;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The largest size accepted in a size list: 64 GiB. Anything larger is almost certainly a typo
/// (each benchmark allocates at least one buffer of the size, usually two per process).
pub const MAX_SIZE_BYTES: u64 = 64 * GIB;

/// Parses a comma-separated list of message sizes, each at least 1 byte.
///
/// Each item is a whole number of bytes with an optional binary suffix, case-insensitive:
/// `K`/`KiB` (1024), `M`/`MiB` (1024²), `G`/`GiB` (1024³), or `B` for plain bytes. `KB`, `MB`
/// and `GB` are refused as ambiguous (1000 or 1024?). Spaces around items and `_` between digits
/// are allowed. The order is kept as given; a size listed twice is measured once.
///
/// ```
/// use onecopy::bench::parse_sizes;
/// assert_eq!(parse_sizes("4K, 4M,64MiB,100").unwrap(), vec![4096, 4 << 20, 64 << 20, 100]);
/// assert!(parse_sizes("4K,,8K").is_err());
/// ```
pub fn parse_sizes(s: &str) -> Result<Vec<usize>, BenchError> {
    parse_sizes_at_least(s, 1)
}

/// Like [`parse_sizes`], with `min` as the smallest size accepted (0 for benchmarks where an empty
/// message is meaningful, such as latency).
pub fn parse_sizes_at_least(s: &str, min: usize) -> Result<Vec<usize>, BenchError> {
    if s.trim().is_empty() {
        return Err(BenchError::NoSizes);
    }
    let mut sizes = Vec::new();
    for item in s.split(',') {
        let size = parse_one(item, min)?;
        if !sizes.contains(&size) {
            sizes.push(size);
        }
    }
    Ok(sizes)
}

fn parse_one(item: &str, min: usize) -> Result<usize, BenchError> {
    let invalid = |reason: String| BenchError::InvalidSize {
        item: item.trim().to_string(),
        reason,
    };
    let t = item.trim();
    if t.is_empty() {
        return Err(invalid(
            "empty item (two commas in a row, or a trailing comma?)".into(),
        ));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let digits = digits.replace('_', "");
    if digits.is_empty() {
        return Err(invalid(
            "not a number; write bytes, optionally with K, M or G (e.g. 4K, 64M)".into(),
        ));
    }
    let suffix = suffix.trim();
    let multiplier = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        "g" | "gib" => GIB,
        "kb" | "mb" | "gb" => {
            return Err(invalid(format!(
                "'{suffix}' is ambiguous; write {digits}{k} or {digits}{k}iB for a power of 1024, \
                 or the number of bytes",
                k = suffix.get(..1).unwrap_or("").to_ascii_uppercase(),
            )));
        }
        other if other.starts_with('.') => {
            return Err(invalid(
                "not a whole number; write a smaller unit (1536K rather than 1.5M)".into(),
            ));
        }
        _ => {
            return Err(invalid(format!(
                "unknown suffix '{suffix}'; use K, M or G (KiB, MiB, GiB) or none for bytes"
            )));
        }
    };
    let too_large = || {
        invalid(format!(
            "larger than the {} limit",
            format_size(MAX_SIZE_BYTES)
        ))
    };
    // A number too long for u64 is too large too, not "garbage".
    let number: u64 = digits.parse().map_err(|_| too_large())?;
    let bytes = number.checked_mul(multiplier).ok_or_else(too_large)?;
    if bytes > MAX_SIZE_BYTES {
        return Err(too_large());
    }
    let bytes = usize::try_from(bytes).map_err(|_| too_large())?;
    if bytes < min {
        return Err(invalid(format!(
            "must be at least {min} byte{}",
            if min == 1 { "" } else { "s" }
        )));
    }
    Ok(bytes)
}

/// The geometric sweep `from, from*factor, ...` up to and including `to` (when it lands on it).
///
/// Returns an empty list when `from` is 0 or larger than `to`, and just `[from]` when `factor` is
/// below 2 (a factor of 1 would never end).
///
/// ```
/// use onecopy::bench::default_sizes;
/// assert_eq!(default_sizes(4096, 1 << 20, 4), vec![4096, 16384, 65536, 262144, 1048576]);
/// ```
pub fn default_sizes(from: usize, to: usize, factor: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    if from == 0 || from > to {
        return sizes;
    }
    let mut size = from;
    loop {
        sizes.push(size);
        if factor < 2 {
            break;
        }
        match size.checked_mul(factor) {
            Some(next) if next <= to => size = next,
            _ => break,
        }
    }
    sizes
}

/// The default sizes of `onecopy bench mechanisms`: 4 KiB to 256 MiB in steps of 4x.
pub fn mechanisms_sizes() -> Vec<usize> {
    default_sizes(4 << 10, 256 << 20, 4)
}

/// A short label for a size: `4K`, `64M`, `1G` when the size is a whole number of KiB, MiB or GiB,
/// otherwise the plain byte count (`4097`). [`parse_sizes`] reads every label back.
///
/// ```
/// use onecopy::bench::format_size;
/// assert_eq!(format_size(4096), "4K");
/// assert_eq!(format_size(64 << 20), "64M");
/// assert_eq!(format_size(4097), "4097");
/// ```
pub fn format_size(bytes: u64) -> String {
    match bytes {
        0 => "0".to_string(),
        b if b.is_multiple_of(GIB) => format!("{}G", b / GIB),
        b if b.is_multiple_of(MIB) => format!("{}M", b / MIB),
        b if b.is_multiple_of(KIB) => format!("{}K", b / KIB),
        b => b.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> String {
        match parse_sizes(s) {
            Err(e) => e.to_string(),
            Ok(v) => panic!("'{s}' parsed as {v:?}"),
        }
    }

    #[test]
    fn parses_suffixes_in_order() {
        assert_eq!(
            parse_sizes("4K,4M,64M").unwrap(),
            vec![4 << 10, 4 << 20, 64 << 20]
        );
        assert_eq!(
            parse_sizes("1k, 2KiB ,3kib,1G,1gib,7,8B,1_025").unwrap(),
            vec![1024, 2048, 3072, 1 << 30, 7, 8, 1025]
        );
        assert_eq!(
            parse_sizes("64M,4K,1").unwrap(),
            vec![64 << 20, 4096, 1],
            "order as given"
        );
        assert_eq!(parse_sizes("4K,4096,8K").unwrap(), vec![4096, 8192]);
        assert_eq!(parse_sizes("64G").unwrap(), vec![64 << 30]);
    }

    #[test]
    fn refuses_bad_items_with_reasons() {
        assert!(matches!(parse_sizes(""), Err(BenchError::NoSizes)));
        assert!(matches!(parse_sizes("  "), Err(BenchError::NoSizes)));
        assert!(reason("4K,,8K").contains("empty item"));
        assert!(reason("4K,").contains("empty item"));
        assert!(reason("abc").contains("'abc': not a number"));
        assert!(reason("-4K").contains("not a number"));
        assert!(reason("4X").contains("unknown suffix 'X'"));
        assert!(reason("4 K M").contains("unknown suffix"));
        assert!(reason("4KB").contains("ambiguous; write 4K or 4KiB"));
        assert!(reason("1.5M").contains("not a whole number"));
        assert!(reason("0").contains("at least 1 byte"));
        assert!(reason("0K").contains("at least 1 byte"));
        assert!(reason("65G").contains("larger than the 64G limit"));
        assert!(reason("99999999999999999999999").contains("larger than"));
        assert!(reason("18014398509481984K").contains("larger than"));
    }

    #[test]
    fn minimum_is_configurable() {
        assert_eq!(parse_sizes_at_least("0,1,2", 0).unwrap(), vec![0, 1, 2]);
        assert!(
            parse_sizes_at_least("8,4", 8)
                .unwrap_err()
                .to_string()
                .contains("at least 8 bytes")
        );
    }

    #[test]
    fn sweeps() {
        let m = mechanisms_sizes();
        assert_eq!(m.first(), Some(&4096));
        assert_eq!(m.last(), Some(&(256 << 20)));
        assert_eq!(m.len(), 9);
        assert_eq!(default_sizes(1, 10, 2), vec![1, 2, 4, 8]);
        assert_eq!(default_sizes(5, 5, 4), vec![5]);
        assert_eq!(default_sizes(8, 4, 2), Vec::<usize>::new());
        assert_eq!(default_sizes(0, 4, 2), Vec::<usize>::new());
        assert_eq!(default_sizes(3, 100, 1), vec![3]);
        assert_eq!(default_sizes(1 << 62, usize::MAX, 4).len(), 1);
    }

    #[test]
    fn labels() {
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(1), "1");
        assert_eq!(format_size(1024), "1K");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(4 << 20), "4M");
        assert_eq!(format_size(1 << 30), "1G");
        assert_eq!(format_size(4097), "4097");
        assert_eq!(format_size(3 << 40), "3072G");
        for b in [1u64, 4096, 4097, 1536, 12 << 20, 64 << 30, 3 << 30] {
            assert_eq!(
                parse_sizes(&format_size(b)).unwrap(),
                vec![b as usize],
                "{b}"
            );
        }
    }
}
