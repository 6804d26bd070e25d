//! What `peek` and `poke` need besides the `vm` layer: number parsing, hex input, hex dumps, and
//! the exit status each error maps to.

use crate::vm::VmError;

/// Exit status for a usage error (bad or missing argument, unknown command).
pub const EXIT_USAGE: i32 = 2;

/// The documented exit status for a `vm` error: 3 permission denied, 4 no such process, 5 bad
/// address, 2 invalid argument, 1 anything else.
pub fn exit_code(e: &VmError) -> i32 {
    match e {
        VmError::PermissionDenied { .. } => 3,
        VmError::NoSuchProcess { .. } => 4,
        VmError::BadAddress { .. } => 5,
        VmError::InvalidArgument { .. } => EXIT_USAGE,
        VmError::Unsupported { .. } | VmError::Os { .. } => 1,
    }
}

/// Parses `0x`-prefixed hex or decimal into a `usize`.
pub fn parse_number(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => usize::from_str_radix(&hex.replace('_', ""), 16),
        None => t.replace('_', "").parse::<usize>(),
    };
    parsed.map_err(|e| format!("'{s}' is not a number (use decimal or 0x hex): {e}"))
}

/// Parses a hex string such as `deadbeef`, `de ad be ef` or `0xdeadbeef` into bytes.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let digits: Vec<u8> = t
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b':')
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("hex '{s}' has an odd number of digits"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).map_err(|_| format!("hex '{s}' is not ASCII"))?;
            u8::from_str_radix(text, 16).map_err(|_| format!("'{text}' in '{s}' is not a hex byte"))
        })
        .collect()
}

/// An `xxd`-style dump: address, 16 bytes in hex (grouped by two), then ASCII.
pub fn hexdump(base: usize, bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, row) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:08x}: ", base + i * 16));
        for col in 0..16 {
            match row.get(col) {
                Some(b) => out.push_str(&format!("{b:02x}")),
                None => out.push_str("  "),
            }
            if col % 2 == 1 {
                out.push(' ');
            }
        }
        out.push(' ');
        out.extend(row.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0x10"), Ok(16));
        assert_eq!(parse_number("42"), Ok(42));
        assert!(parse_number("-1").is_err());
        assert!(parse_number("0xzz").is_err());
        assert!(parse_number("99999999999999999999999").is_err());
    }

    #[test]
    fn hex() {
        assert_eq!(parse_hex("de ad:BE0f"), Ok(vec![0xde, 0xad, 0xbe, 0x0f]));
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        assert_eq!(parse_hex(""), Ok(vec![]));
    }

    #[test]
    fn dump_layout() {
        let d = hexdump(0x1000, b"Hello, onecopy!\x00\x01");
        assert_eq!(
            d,
            "00001000: 4865 6c6c 6f2c 206f 6e65 636f 7079 2100  Hello, onecopy!.\n\
             00001010: 01                                       .\n"
        );
    }
}

/// A setting read once (from the environment) and kept for the life of the process, safe
/// across `fork`: a `OnceLock` that another thread was filling at the moment of a fork stays
/// "being filled" forever in the child, and the child's first read waits for a thread that does
/// not exist there (the tests fork from many threads at once). Here two threads may both compute
/// the value; they compute the same.
#[derive(Debug)]
pub struct Setting(std::sync::atomic::AtomicUsize);

impl Setting {
    /// A setting not read yet.
    pub const fn new() -> Setting {
        Setting(std::sync::atomic::AtomicUsize::new(0))
    }

    /// The value, computed by `read` the first time (values up to `usize::MAX - 1`).
    pub fn get(&self, read: impl FnOnce() -> usize) -> usize {
        use std::sync::atomic::Ordering::Relaxed;
        match self.0.load(Relaxed) {
            0 => {
                let v = read().min(usize::MAX - 1);
                self.0.store(v + 1, Relaxed);
                v
            }
            stored => stored - 1,
        }
    }
}

impl Default for Setting {
    fn default() -> Setting {
        Setting::new()
    }
}
