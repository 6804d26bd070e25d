//! `--tag-output`: the ranks' stdout and stderr arrive on pipes, and one thread copies them to the
//! launcher's stdout and stderr a whole line at a time, each line prefixed with `[RANK] `.
//!
//! One thread polls every pipe (rather than a thread per pipe, which at 4096 ranks would be 8192
//! threads), and it is not the supervising thread, so a slow reader of the launcher's output (a
//! pager, a full pipe) never delays noticing that a rank failed. Since this thread is the only
//! writer of forwarded lines and writes each batch under the stream's lock, lines are never
//! interleaved, with each other or with the launcher's own messages.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

/// A line longer than this is forwarded in pieces of this size, each tagged and ended with a
/// newline, so that a rank writing without newlines cannot make the launcher buffer without bound.
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// Once every rank has ended, how long the pipes may stay silent before the forwarder stops
/// waiting for end-of-file. Everything a rank wrote before it exited is already in the pipe and is
/// read at once; the wait only matters when a process the rank started in the background still
/// holds the pipe open.
pub const DRAIN_IDLE: Duration = Duration::from_millis(100);

/// Once every rank has ended, the longest the forwarder keeps copying, even from a background
/// process that never stops writing, so that the launcher always exits.
pub const DRAIN_LIMIT: Duration = Duration::from_millis(500);

/// One pipe from one rank.
pub(super) struct Stream {
    /// The rank it comes from.
    pub rank: usize,
    /// The pipe's read end.
    pub fd: OwnedFd,
    /// Whether it carries the rank's stderr (else its stdout).
    pub stderr: bool,
}

/// Copies every stream to the launcher's stdout or stderr until each reaches end-of-file, or, once
/// `ended` becomes readable (every rank has ended), until they all stay silent for [`DRAIN_IDLE`]
/// or [`DRAIN_LIMIT`] has passed.
pub(super) fn forward(streams: Vec<Stream>, ended: OwnedFd) {
    struct Open {
        stream: Stream,
        pending: Vec<u8>,
    }
    let mut open: Vec<Open> = streams
        .into_iter()
        .map(|stream| Open {
            stream,
            pending: Vec::new(),
        })
        .collect();
    // When the ranks ended, once they have.
    let mut draining: Option<Instant> = None;
    let mut buf = vec![0u8; MAX_LINE_BYTES];
    while !open.is_empty() {
        let readable: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = open
                .iter()
                .map(|o| PollFd::new(&o.stream.fd, PollFlags::IN))
                .collect();
            if draining.is_none() {
                fds.push(PollFd::new(&ended, PollFlags::IN));
            }
            let timeout = match draining {
                Some(since) => {
                    let left = DRAIN_LIMIT.saturating_sub(since.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    Some(timespec(left.min(DRAIN_IDLE)))
                }
                None => None,
            };
            match poll(&mut fds, timeout.as_ref()) {
                Ok(0) => break,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                // Poll cannot fail on valid descriptors; if it does, stop rather than spin.
                Err(_) => break,
            }
            if draining.is_none() && !fds.pop().is_some_and(|f| f.revents().is_empty()) {
                draining = Some(Instant::now());
            }
            fds.iter().map(|f| !f.revents().is_empty()).collect()
        };
        let mut index = 0;
        open.retain_mut(|o| {
            let ready = readable[index];
            index += 1;
            if !ready {
                return true;
            }
            match rustix::io::read(o.stream.fd.as_fd(), &mut buf) {
                Ok(0) => {
                    emit(&o.stream, &mut o.pending, true);
                    false
                }
                Ok(n) => {
                    o.pending.extend_from_slice(&buf[..n]);
                    emit(&o.stream, &mut o.pending, false);
                    true
                }
                Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => true,
                // A pipe's read end cannot otherwise fail; treat it as the end of the stream.
                Err(_) => {
                    emit(&o.stream, &mut o.pending, true);
                    false
                }
            }
        });
    }
    for mut o in open {
        emit(&o.stream, &mut o.pending, true);
    }
    let _ = std::io::stdout().flush();
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// Writes the complete lines in `pending` (all of it when `end`), tagged, in one locked write.
fn emit(stream: &Stream, pending: &mut Vec<u8>, end: bool) {
    let tag = format!("[{}] ", stream.rank);
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let rest = &pending[start..];
        if rest.is_empty() {
            break;
        }
        let line_end = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if end || rest.len() >= MAX_LINE_BYTES => rest.len().min(MAX_LINE_BYTES),
            None => break,
        };
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(&rest[..line_end]);
        if out.last() != Some(&b'\n') {
            out.push(b'\n');
        }
        start += line_end;
    }
    pending.drain(..start);
    if out.is_empty() {
        return;
    }
    // A write error (the reader went away) must not stop the draining: a rank blocked on a full
    // pipe would never finish. The lines are dropped instead.
    let _ = if stream.stderr {
        std::io::stderr().lock().write_all(&out)
    } else {
        std::io::stdout().lock().write_all(&out)
    };
}
