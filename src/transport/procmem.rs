//! `procmem`: the receiver reads the sender's memory through `/proc/PID/mem` with `preadv`
//! (scattering into its own buffers). Same permission as CMA (ptrace attach), but a file
//! descriptor per peer and a seek per contiguous piece. A seccomp filter that blocks the CMA
//! system calls may leave this one open.

use std::io::IoSliceMut;
use std::os::fd::AsFd;

use super::{TransportError, window, window_dst};
use crate::vm::{Process, RemoteRange, VmError};

/// A peer's `/proc/PID/mem`, open for reading.
#[derive(Debug)]
pub struct MemFile {
    file: std::fs::File,
}

impl MemFile {
    /// Opens `peer`'s memory file.
    pub fn open(peer: &Process) -> Result<MemFile, TransportError> {
        let pid = peer.pid();
        let file = std::fs::File::open(format!("/proc/{pid}/mem")).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => {
                    TransportError::Vm(VmError::PermissionDenied {
                        pid,
                        reason: crate::vm::diagnose_denial(pid),
                    })
                }
                Some(libc::ENOENT) | Some(libc::ESRCH) => {
                    TransportError::Vm(VmError::NoSuchProcess {
                        pid,
                        why: "has exited",
                    })
                }
                _ => TransportError::Io {
                    op: "open /proc/PID/mem",
                    source: e,
                },
            }
        })?;
        Ok(MemFile { file })
    }

    /// Pulls bytes `[from, to)` of the peer's `remote` ranges into the same bytes of `dst`, at
    /// most `chunk` bytes a call; fails unless every byte moved (a fault is
    /// [`VmError::BadAddress`] with the count and address, as with CMA).
    pub fn pull(
        &self,
        peer: &Process,
        remote: &[RemoteRange],
        dst: &mut [IoSliceMut<'_>],
        from: usize,
        to: usize,
        chunk: usize,
    ) -> Result<(), TransportError> {
        let mut at = from;
        while at < to {
            let len = chunk.max(1).min(to - at);
            for r in window(remote.iter().copied(), at, len) {
                self.read_range(peer, dst, r, at, from)?;
                at += r.len;
            }
        }
        Ok(())
    }

    /// Fills bytes `[at, at + r.len)` of `dst` from the peer's range `r`.
    fn read_range(
        &self,
        peer: &Process,
        dst: &mut [IoSliceMut<'_>],
        r: RemoteRange,
        at: usize,
        from: usize,
    ) -> Result<(), TransportError> {
        let mut got = 0;
        while got < r.len {
            let mut part = window_dst(dst, at + got, r.len - got);
            let pieces = part.len().min(crate::vm::split::IOV_MAX);
            let part = &mut part[..pieces];
            let addr = r.addr + got;
            match rustix::io::preadv(self.file.as_fd(), part, addr as u64) {
                Ok(n) if n > 0 => got += n,
                // End of file: the process's memory is gone (it is exiting), not a bad address.
                Ok(_) => {
                    return Err(VmError::NoSuchProcess {
                        pid: peer.pid(),
                        why: "has exited",
                    }
                    .into());
                }
                // An address past `i64::MAX` is an offset the file refuses (EINVAL): no process
                // has memory there.
                Err(rustix::io::Errno::INVAL) if addr > i64::MAX as usize => {
                    return Err(VmError::BadAddress {
                        transferred: at + got - from,
                        addr,
                    }
                    .into());
                }
                Err(rustix::io::Errno::IO) | Err(rustix::io::Errno::FAULT) => {
                    if !peer.is_alive() {
                        return Err(VmError::NoSuchProcess {
                            pid: peer.pid(),
                            why: "has exited",
                        }
                        .into());
                    }
                    return Err(VmError::BadAddress {
                        transferred: at + got - from,
                        addr: r.addr + got,
                    }
                    .into());
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(TransportError::io("preadv /proc/PID/mem", e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_through_its_memory_file() {
        let me = Process::from_pid(std::process::id() as i32).expect("self");
        let file = MemFile::open(&me).expect("own memory file");
        let src: Vec<u8> = (0..9000u32).map(|i| (i * 13) as u8).collect();
        let remote = [RemoteRange::new(src.as_ptr() as usize, src.len())];
        let (mut a, mut b) = (vec![0u8; 1234], vec![0u8; 9000 - 1234]);
        let mut dst = [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)];
        file.pull(&me, &remote, &mut dst, 0, 9000, 4096)
            .expect("pull");
        let joined: Vec<u8> = a.iter().chain(&b).copied().collect();
        assert_eq!(joined, src);
        let bad = [RemoteRange::new(8, 100)];
        let mut one = [IoSliceMut::new(&mut a[..100])];
        match file.pull(&me, &bad, &mut one, 0, 100, 64) {
            Err(TransportError::Vm(VmError::BadAddress { transferred, addr })) => {
                assert_eq!((transferred, addr), (0, 8));
            }
            other => panic!("unmapped memory read as {other:?}"),
        }
        let high = 0xffff_8000_0000_0000;
        let past = [RemoteRange::new(high, 100)];
        match file.pull(&me, &past, &mut one, 0, 100, 64) {
            Err(TransportError::Vm(VmError::BadAddress { transferred, addr })) => {
                assert_eq!((transferred, addr), (0, high));
            }
            other => panic!("an address past i64::MAX read as {other:?}"),
        }
    }
}
