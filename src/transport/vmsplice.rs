//! `vmsplice`: the sender maps its pages into a pipe with `vmsplice` (no copy on that side), the
//! receiver copies them out with `readv`. The pipe holds at most its capacity, so large messages
//! take many rounds; the sender's pages stay referenced by the pipe until read, which is why it
//! waits for the receiver's verdict before returning.

use std::io::{IoSlice, IoSliceMut};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::pipe::{IoSliceRaw, SpliceFlags};

use super::channel::Link;
use super::{POLL_INTERVAL, Transport, TransportError, window_dst, window_src};
use crate::vm::split::IOV_MAX;

/// Pages through a pipe.
#[derive(Debug, Clone, Copy)]
pub struct Vmsplice;

/// Waits until `fd` is ready for `events`, or the interval passes.
fn ready(fd: &std::os::fd::OwnedFd, events: PollFlags) -> Result<(), TransportError> {
    let mut fds = [PollFd::new(fd, events)];
    let ts = Timespec {
        tv_sec: 0,
        tv_nsec: POLL_INTERVAL.as_nanos() as i64,
    };
    match poll(&mut fds, Some(&ts)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(TransportError::Io {
            op: "poll",
            source: e.into(),
        }),
    }
}

impl Transport for Vmsplice {
    fn name(&self) -> &'static str {
        "vmsplice"
    }

    fn unavailable(&self) -> Option<String> {
        None
    }

    fn send(&self, link: &Link, src: &[IoSlice<'_>]) -> Result<(), TransportError> {
        let total: usize = src.iter().map(|s| s.len()).sum();
        link.send_flow(6, src, false, &|k, _| {
            let pipe = link.pipe(true);
            let mut at = 0;
            while at < total {
                let part = window_src(src, at, total - at);
                let raw: Vec<IoSliceRaw<'_>> = part
                    .iter()
                    .take(IOV_MAX)
                    .map(|s| IoSliceRaw::from_slice(s))
                    .collect();
                // SAFETY: without SPLICE_F_GIFT the pipe only references our pages; they stay
                // unchanged and mapped until the receiver's verdict, which send_flow waits for.
                match unsafe { rustix::pipe::vmsplice(pipe, &raw, SpliceFlags::NONBLOCK) } {
                    Ok(n) => at += n,
                    Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {
                        if let Some(e) = link.receiver_gave_up(k) {
                            return Err(e);
                        }
                        if !link.peer().is_alive() {
                            return Err(link.peer_gone());
                        }
                        ready(pipe, PollFlags::OUT)?;
                    }
                    Err(e) => {
                        return Err(TransportError::Io {
                            op: "vmsplice",
                            source: e.into(),
                        });
                    }
                }
            }
            Ok(())
        })
    }

    fn receive(&self, link: &Link, dst: &mut [IoSliceMut<'_>]) -> Result<usize, TransportError> {
        link.receive_flow(6, dst, None, &mut |k, offer, dst| {
            let pipe = link.pipe(false);
            let mut at = 0;
            while at < offer.total {
                let mut part = window_dst(dst, at, offer.total - at);
                let n = part.len().min(IOV_MAX);
                match rustix::io::readv(pipe, &mut part[..n]) {
                    Ok(0) => return Err(link.peer_gone()),
                    Ok(n) => at += n,
                    Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {
                        if let Some(e) = link.sender_gave_up(k) {
                            return Err(e);
                        }
                        if !link.peer().is_alive() {
                            return Err(link.peer_gone());
                        }
                        ready(pipe, PollFlags::IN)?;
                    }
                    Err(e) => {
                        return Err(TransportError::Io {
                            op: "read from pipe",
                            source: e.into(),
                        });
                    }
                }
            }
            link.await_pushed(k)
        })
    }
}
