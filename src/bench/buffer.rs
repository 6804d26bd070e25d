//! Benchmark buffers: page-aligned anonymous memory, resident before timing, with 4 KiB pages or
//! transparent huge pages.

use std::ops::{Deref, DerefMut};

use super::BenchError;

/// Which pages back a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pages {
    /// Ordinary 4 KiB pages (what a `Vec` gets under the default THP setting `madvise`).
    #[default]
    Small,
    /// Transparent huge pages, asked for with `MADV_HUGEPAGE` (the kernel may still decline).
    Huge,
}

impl std::str::FromStr for Pages {
    type Err = BenchError;
    fn from_str(s: &str) -> Result<Self, BenchError> {
        match s {
            "4k" | "small" => Ok(Pages::Small),
            "huge" | "thp" | "2m" => Ok(Pages::Huge),
            other => Err(BenchError::InvalidOption(format!(
                "--pages {other}: use 4k or huge"
            ))),
        }
    }
}

/// A resident, page-aligned byte buffer.
#[derive(Debug)]
pub struct Buffer {
    map: Option<memmap2::MmapMut>,
}

impl Buffer {
    /// `len` bytes, every one written with `fill` so that all pages are resident.
    pub fn new(len: usize, pages: Pages, fill: u8) -> Result<Buffer, BenchError> {
        if len == 0 {
            return Ok(Buffer { map: None });
        }
        let mut map = memmap2::MmapMut::map_anon(len)
            .map_err(|source| BenchError::Alloc { bytes: len, source })?;
        if pages == Pages::Huge {
            // Advice only: where THP is disabled the buffer simply keeps small pages.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        map.fill(fill);
        Ok(Buffer { map: Some(map) })
    }
}

impl Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.map.as_deref_mut().unwrap_or(&mut [])
    }
}
