//! Timing: medians, GB/s, the generic batched timer behind every bandwidth number, and the memcpy
//! ceiling that each mechanism is compared with.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The shortest timed sample. `Instant::now()` costs tens of nanoseconds and a 4 KiB copy about a
/// hundred, so a sample of one small call would mostly measure the clock; calls are batched until
/// a sample takes at least this long, which keeps the clock's share under 0.1%.
const MIN_SAMPLE: Duration = Duration::from_micros(100);

/// The most calls in one sample, so that a closure that does nothing still ends.
const MAX_BATCH: usize = 1 << 20;

/// The median of `samples` (the mean of the middle two for an even count); sorts `samples` in
/// place. NaN for an empty slice.
///
/// The median rather than the mean because this machine is shared: a sample interrupted by another
/// tenant is an outlier to ignore, not a cost to average in.
///
/// ```
/// let mut s = [3.0, 1.0, 100.0];
/// assert_eq!(onecopy::bench::median(&mut s), 3.0);
/// ```
pub fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

/// Bandwidth in GB/s (10^9 bytes per second, as memory bandwidth is quoted).
///
/// ```
/// assert_eq!(onecopy::bench::gbps(2_000_000_000, 0.5), 4.0);
/// ```
pub fn gbps(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e9
}

/// What [`time_calls`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// Seconds per call, one entry per timed sample, in the order taken.
    pub seconds_per_call: Vec<f64>,
    /// Calls per timed sample.
    pub batch: usize,
    /// Every call made, including the warm-up and the calls that chose the batch size.
    pub calls: usize,
}

impl Timing {
    /// The median seconds per call.
    pub fn median_seconds(&self) -> f64 {
        median(&mut self.seconds_per_call.clone())
    }
}

/// Times `once` repeatedly and returns the time per call of each sample.
///
/// One untimed warm-up call first (page faults, cold caches), then calls are grouped into batches
/// long enough for the clock not to matter (at least 100 µs a sample), then samples are taken
/// until both `budget` has passed (counted from the start, warm-up included) and at least
/// `min_samples` (at least 1) samples exist. The first error from `once` is returned at once.
pub fn time_calls<E>(
    budget: Duration,
    min_samples: usize,
    mut once: impl FnMut() -> Result<(), E>,
) -> Result<Timing, E> {
    let start = Instant::now();
    let mut calls = 0;
    let mut run = |n: usize| -> Result<Duration, E> {
        let t = Instant::now();
        for _ in 0..n {
            once()?;
        }
        calls += n;
        Ok(t.elapsed())
    };

    run(1)?;
    let mut batch = 1;
    let mut samples = Vec::new();
    loop {
        let elapsed = run(batch)?;
        if elapsed >= MIN_SAMPLE || batch >= MAX_BATCH {
            samples.push(elapsed.as_secs_f64() / batch as f64);
            break;
        }
        // Grow towards the target in one or two steps rather than doubling many times, but by at
        // most 16x at once since a short first sample may be a fluke.
        let ratio = MIN_SAMPLE.as_secs_f64() / elapsed.as_secs_f64().max(1e-9);
        let grow = (ratio * 1.2).ceil().clamp(2.0, 16.0) as usize;
        batch = batch.saturating_mul(grow).min(MAX_BATCH);
    }
    while samples.len() < min_samples.max(1) || start.elapsed() < budget {
        let elapsed = run(batch)?;
        samples.push(elapsed.as_secs_f64() / batch as f64);
    }
    Ok(Timing {
        seconds_per_call: samples,
        batch,
        calls,
    })
}

/// The median GB/s of `once`, taken to move `bytes` per call, timed as [`time_calls`] does with
/// at least `min_reps` timed samples and for at least `budget`.
///
/// ```
/// use std::time::Duration;
/// let (src, mut dst) = (vec![1u8; 4096], vec![0u8; 4096]);
/// let gbps = onecopy::bench::measure(4096, Duration::from_millis(1), 5, || {
///     dst.copy_from_slice(std::hint::black_box(&src));
///     Ok::<(), std::convert::Infallible>(())
/// })
/// .unwrap();
/// assert!(gbps > 0.0);
/// ```
pub fn measure<E>(
    bytes: usize,
    budget: Duration,
    min_reps: usize,
    once: impl FnMut() -> Result<(), E>,
) -> Result<f64, E> {
    let timing = time_calls(budget, min_reps, once)?;
    let mut rates: Vec<f64> = timing
        .seconds_per_call
        .iter()
        .map(|&s| gbps(bytes, s))
        .collect();
    Ok(median(&mut rates))
}

/// The memcpy ceiling in this process, in GB/s: the median of repeated copies of `src` into `dst`
/// (same length) for at least `budget` and at least 5 samples.
///
/// Pass resident buffers (written in full, as [`super::Buffer::new`] makes them) so that no page
/// fault is timed: the transports are measured on resident buffers too.
pub fn memcpy_gbps(src: &[u8], dst: &mut [u8], budget: Duration) -> f64 {
    let bytes = src.len().min(dst.len());
    let (src, dst) = (&src[..bytes], &mut dst[..bytes]);
    let result = measure(bytes, budget, 5, || {
        // black_box on both sides: the copy must happen each time even though nobody reads `dst`.
        black_box(&mut *dst).copy_from_slice(black_box(src));
        Ok::<(), Infallible>(())
    });
    match result {
        Ok(rate) => rate,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert!(median(&mut []).is_nan());
        assert_eq!(median(&mut [5.0]), 5.0);
        assert_eq!(median(&mut [4.0, 1.0]), 2.5);
        assert_eq!(median(&mut [9.0, 1.0, 5.0, 1000.0, 2.0]), 5.0);
        let mut s = [3.0, f64::NAN, 1.0];
        // total_cmp puts NaN last, so one NaN cannot become the median of three.
        assert_eq!(median(&mut s), 3.0);
    }

    #[test]
    fn gbps_is_decimal() {
        assert_eq!(gbps(1_000_000_000, 1.0), 1.0);
        assert_eq!(gbps(4096, 1e-6), 4.096);
    }

    #[test]
    fn measure_counts_calls_and_batches_small_ones() {
        let mut calls = 0usize;
        let rate = measure(64, Duration::ZERO, 5, || {
            calls += 1;
            Ok::<(), ()>(())
        })
        .unwrap();
        assert!(rate > 0.0);
        // An empty closure takes far less than a sample, so every sample is a big batch.
        assert!(calls > 5 * 100, "only {calls} calls");

        let mut calls = 0usize;
        let timing = time_calls(Duration::ZERO, 5, || {
            calls += 1;
            std::thread::sleep(Duration::from_micros(200));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(timing.batch, 1, "a slow call needs no batching");
        assert_eq!(timing.seconds_per_call.len(), 5);
        // Warm-up, the calibration sample (kept), then four more.
        assert_eq!(timing.calls, 6);
        assert_eq!(calls, 6);
        assert!(timing.median_seconds() >= 200e-6);
    }

    #[test]
    fn measure_respects_the_budget() {
        let budget = Duration::from_millis(20);
        let t = Instant::now();
        let timing = time_calls(budget, 1, || Ok::<(), ()>(())).unwrap();
        assert!(t.elapsed() >= budget);
        assert!(timing.seconds_per_call.len() > 1);
    }

    #[test]
    fn measure_propagates_the_first_error() {
        let mut calls = 0;
        let result = measure(1, Duration::from_secs(10), 5, || {
            calls += 1;
            if calls == 3 { Err(calls) } else { Ok(()) }
        });
        assert_eq!(result, Err(3));
        assert_eq!(calls, 3);
    }

    #[test]
    fn memcpy_ceiling_is_positive() {
        let (src, mut dst) = (vec![1u8; 64 << 10], vec![2u8; 64 << 10]);
        let rate = memcpy_gbps(&src, &mut dst, Duration::from_millis(5));
        assert!(rate.is_finite() && rate > 0.0, "{rate}");
    }
}
