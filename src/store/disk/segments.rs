//! Segment files: append-only, numbered, a fixed size at most; the oldest is deleted when
//! the tier is over its bound (first in, first out, as a circular log).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::{Kind, Record, HEADER};
use crate::entry::{Entry, Peeked};

/// One segment file.
pub(super) struct Segment {
    pub id: u32,
    pub file: Arc<File>,
    /// Bytes written (or reserved for writes in progress).
    pub len: u64,
    /// The lowest sequence number of a record in it (`u64::MAX` while empty).
    pub min_seq: u64,
}

/// The largest segment id (eight digits in the file name).
pub(super) const MAX_ID: u32 = 99_999_999;

/// The path of segment `id` in `dir`.
pub(super) fn path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.seg"))
}

/// The segment ids in `dir`, oldest first.
pub(super) fn list(dir: &Path) -> io::Result<Vec<u32>> {
    let mut ids: Vec<u32> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let digits = name.strip_suffix(".seg")?;
            if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Opens segment `id` for reading and appending (created if absent).
pub(super) fn open(dir: &Path, id: u32) -> io::Result<Segment> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path(dir, id))?;
    let len = file.metadata()?.len();
    Ok(Segment {
        id,
        file: Arc::new(file),
        len,
        min_seq: u64::MAX,
    })
}

/// Makes a directory's entries (new or removed files) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Deletes segments `ids` (those already gone are fine) and makes that durable.
pub(super) fn remove(dir: &Path, ids: &[u32]) -> io::Result<()> {
    for id in ids {
        match std::fs::remove_file(path(dir, *id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    sync_dir(dir)
}

/// Bytes free for an unprivileged writer on the file system holding `dir`.
pub(super) fn free_bytes(dir: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// The most an entry's index fields (its header, tags and URL) may take: 65,535 tags and a
/// URL far longer than any request head. A record claiming more is damage, not read.
const MAX_PEEK: usize = 1 << 20;

/// One entry record found by a scan: where it is and what an index needs of it.
pub(super) struct Found {
    pub offset: u64,
    pub total: u32,
    pub seq: u64,
    pub fleet: u64,
    pub key: [u8; 16],
    pub meta: Peeked,
}

/// Reads `len` bytes at `offset`, or fewer at the end of the file.
fn read_upto(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = file.read_at(&mut buf[got..], offset + got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    Ok(buf)
}

/// Scans a segment's records (headers and the index fields of entries, not whole bodies:
/// their checksums are verified when they are read). Stops at the first record that is
/// torn or not an entry record — a crash's tail, or damage — and returns the length up to
/// it, so the caller can cut the file there.
pub(super) fn scan(seg: &Segment, mut found: impl FnMut(Found)) -> io::Result<u64> {
    let mut offset = 0u64;
    while offset < seg.len {
        let head = read_upto(&seg.file, offset, HEADER + 64)?;
        let Ok(header) = Record::header(&head) else {
            break;
        };
        let end = offset + header.total() as u64;
        if end > seg.len || header.len < 64 || header.kind != Kind::Entry {
            break;
        }
        let Some(need) = Entry::peek_len(&head[HEADER..]).filter(|n| *n <= MAX_PEEK) else {
            break;
        };
        let prefix = if need <= 64 {
            head[HEADER..].to_vec()
        } else {
            read_upto(&seg.file, offset + HEADER as u64, need.min(header.len))?
        };
        if let Some(meta) = Entry::peek(&prefix) {
            found(Found {
                offset,
                total: header.total() as u32,
                seq: header.seq,
                fleet: header.fleet,
                key: header.key,
                meta,
            });
        }
        offset = end;
    }
    Ok(offset)
}
