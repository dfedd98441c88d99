//! The journal: every invalidation the disk tier acknowledged, on disk before the
//! acknowledgement, so that nothing invalidated comes back after a crash or a restart
//! (Varnish's persistent storage was retired for exactly that). Replayed over the entries
//! found at start: a line drops every entry written before it that it covers.
//!
//! Lines are records (see [`super::record`]) of kind `Journal`, with the sequence number
//! they were given and one of these payloads:
//! - `l <invalidation>` — an invalidation made through this instance;
//! - `f <epoch> <invalidation>` — one made elsewhere in the fleet, under Redis epoch `epoch`;
//! - `w <epoch> <fleet>` — the fleet's invalidation log is applied up to `epoch` (`fleet`
//!   names the Redis it came from);
//! - `a <ms>` — the anchor, written when the journal is begun and kept by every rewrite: a
//!   journal without it (deleted, emptied by `copytruncate`, cleared by hand) beside
//!   segments holding records cannot say what was invalidated, and is damage.
//!
//! A line cut off by a crash was never acknowledged and is dropped. A damaged line is not
//! skipped: what it said is unknown, so the tier starts empty.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::record::{Damage, Kind, Record, HEADER, MAX_SEQ};
use super::segments::sync_dir;
use crate::store::Invalidation;

const NAME: &str = "journal.log";

/// One journal line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// An invalidation made through this instance.
    Local(Invalidation),
    /// An invalidation made elsewhere, under this Redis epoch.
    Fleet(u64, Invalidation),
    /// The fleet's log is applied up to this epoch, from this Redis.
    Watermark(u64, String),
    /// The journal was begun at this time (ms): it is whole from then on.
    Anchor(u64),
}

impl Line {
    /// Whether a rewrite of the journal always keeps this line (it covers no entry).
    pub fn is_kept(&self) -> bool {
        matches!(self, Line::Watermark(..) | Line::Anchor(_))
    }
}

impl Line {
    fn encode(&self) -> String {
        match self {
            Line::Local(what) => format!("l {}", what.encode()),
            Line::Fleet(epoch, what) => format!("f {epoch} {}", what.encode()),
            Line::Watermark(epoch, fleet) => format!("w {epoch} {fleet}"),
            Line::Anchor(at) => format!("a {at}"),
        }
    }

    fn decode(text: &str) -> Option<Line> {
        let (kind, rest) = text.split_once(' ')?;
        match kind {
            "l" => Invalidation::decode(rest).map(Line::Local),
            "f" => {
                let (epoch, what) = rest.split_once(' ')?;
                Some(Line::Fleet(
                    epoch.parse().ok()?,
                    Invalidation::decode(what)?,
                ))
            }
            "w" => {
                let (epoch, fleet) = rest.split_once(' ')?;
                Some(Line::Watermark(epoch.parse().ok()?, fleet.to_string()))
            }
            "a" => Some(Line::Anchor(rest.parse().ok()?)),
            _ => None,
        }
    }
}

/// What opening the journal found.
pub(super) struct Opened {
    pub journal: Journal,
    /// The journal was damaged (not merely cut off): the tier must start empty.
    pub damaged: bool,
}

/// The journal file and its lines.
pub(super) struct Journal {
    dir: PathBuf,
    file: File,
    /// Bytes of sound lines: appends go here (a failed one is cut back to it).
    len: u64,
    lines: Vec<(u64, Line)>,
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and reads its lines.
    pub fn open(dir: &Path) -> io::Result<Opened> {
        let path = dir.join(NAME);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let (lines, good, damaged) = parse(&bytes);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if good < bytes.len() {
            // A cut-off tail (or, when damaged, whatever follows the damage).
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        Ok(Opened {
            journal: Journal {
                dir: dir.to_path_buf(),
                file,
                len: good as u64,
                lines,
            },
            damaged,
        })
    }

    /// The lines, oldest first, with their sequence numbers.
    pub fn lines(&self) -> &[(u64, Line)] {
        &self.lines
    }

    /// Whether the journal holds its anchor (it was begun by this tier and never lost).
    pub fn anchored(&self) -> bool {
        self.lines.iter().any(|(_, l)| matches!(l, Line::Anchor(_)))
    }

    /// The last fleet watermark.
    pub fn watermark(&self) -> Option<(u64, &str)> {
        self.lines.iter().rev().find_map(|(_, l)| match l {
            Line::Watermark(e, f) => Some((*e, f.as_str())),
            _ => None,
        })
    }

    /// Appends lines and makes them durable before returning.
    pub fn append(&mut self, lines: Vec<(u64, Line)>) -> io::Result<()> {
        let mut buf = Vec::new();
        for (seq, line) in &lines {
            buf.extend(Record::encode(
                Kind::Journal,
                *seq,
                0,
                &[0; 16],
                line.encode().as_bytes(),
            ));
        }
        let written = self
            .file
            .write_all_at(&buf, self.len)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Not acknowledged: cut the partial line off, so the next append follows the
            // last sound one (if even that fails, the journal reads as damaged at start).
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += buf.len() as u64;
        self.lines.extend(lines);
        Ok(())
    }

    /// Rewrites the journal with only the lines `keep` keeps (and the anchor and the last
    /// watermark), atomically: a crash leaves the old journal or the new one.
    pub fn compact(&mut self, keep: impl Fn(u64, &Line) -> bool) -> io::Result<()> {
        let last_mark = self
            .lines
            .iter()
            .rposition(|(_, l)| matches!(l, Line::Watermark(..)));
        let kept: Vec<(u64, Line)> = self
            .lines
            .iter()
            .enumerate()
            .filter(|(i, (seq, l))| {
                Some(*i) == last_mark || matches!(l, Line::Anchor(_)) || keep(*seq, l)
            })
            .map(|(_, l)| l.clone())
            .collect();
        let tmp = self.dir.join(format!("{NAME}.tmp"));
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let mut len = 0;
        for (seq, line) in &kept {
            let record = Record::encode(Kind::Journal, *seq, 0, &[0; 16], line.encode().as_bytes());
            f.write_all(&record)?;
            len += record.len() as u64;
        }
        f.sync_all()?;
        // The handle is the new journal from the rename on, whatever fails after it.
        std::fs::rename(&tmp, self.dir.join(NAME))?;
        self.file = f;
        self.len = len;
        self.lines = kept;
        sync_dir(&self.dir)
    }
}

/// The lines of a journal, how many bytes of it are sound, and whether it was damaged
/// (rather than cut off by a crash).
fn parse(bytes: &[u8]) -> (Vec<(u64, Line)>, usize, bool) {
    let mut lines = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        match Record::verify(rest) {
            // A sequence number no tier could have reached is damage, not a line.
            Ok(h) if h.kind == Kind::Journal && h.seq <= MAX_SEQ => {
                let payload = &rest[HEADER..h.total()];
                let Some(line) = std::str::from_utf8(payload).ok().and_then(Line::decode) else {
                    return (lines, at, true);
                };
                lines.push((h.seq, line));
                at += h.total();
            }
            // Cut off mid-write, or a preallocated tail of zeros: never acknowledged —
            // unless a sound line follows (then a length was damaged, not cut).
            Err(Damage::Torn) => return (lines, at, sound_line_after(rest)),
            _ if rest.iter().all(|b| *b == 0) => return (lines, at, false),
            _ => return (lines, at, true),
        }
    }
    (lines, at, false)
}

/// Whether a sound journal record starts anywhere after the first byte of `rest`.
fn sound_line_after(rest: &[u8]) -> bool {
    let magic = super::record::MAGIC.to_le_bytes();
    (1..rest.len().saturating_sub(3)).any(|i| {
        rest[i..].starts_with(&magic)
            && Record::verify(&rest[i..]).is_ok_and(|h| h.kind == Kind::Journal)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_a_cut_tail_is_dropped() {
        let dir = tempdir();
        let mut j = Journal::open(&dir).unwrap().journal;
        j.append(vec![
            (3, Line::Local(Invalidation::Tags(vec![1, 2]))),
            (4, Line::Fleet(9, Invalidation::Prefix("/a b".into()))),
            (5, Line::Watermark(9, "f1".into())),
        ])
        .unwrap();
        // A crash halfway through the next append.
        let half = Record::encode(Kind::Journal, 6, 0, &[0; 16], b"l a");
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(NAME))
            .unwrap();
        f.write_all(&half[..half.len() - 2]).unwrap();
        let opened = Journal::open(&dir).unwrap();
        assert!(!opened.damaged);
        assert_eq!(opened.journal.lines().len(), 3);
        assert_eq!(opened.journal.watermark(), Some((9, "f1")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_line_is_reported_and_compaction_keeps_the_watermark() {
        let dir = tempdir();
        let mut j = Journal::open(&dir).unwrap().journal;
        j.append(vec![
            (1, Line::Local(Invalidation::All)),
            (2, Line::Watermark(4, "f".into())),
            (3, Line::Local(Invalidation::Prefix("/x".into()))),
        ])
        .unwrap();
        j.compact(|seq, _| seq > 2).unwrap();
        assert_eq!(j.lines().len(), 2);
        assert_eq!(Journal::open(&dir).unwrap().journal.lines().len(), 2);
        let mut bytes = std::fs::read(dir.join(NAME)).unwrap();
        bytes[HEADER + 2] ^= 0xff;
        std::fs::write(dir.join(NAME), bytes).unwrap();
        assert!(Journal::open(&dir).unwrap().damaged);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_length_is_not_taken_for_a_cut_tail() {
        let dir = tempdir();
        let mut j = Journal::open(&dir).unwrap().journal;
        j.append(vec![
            (1, Line::Local(Invalidation::All)),
            (2, Line::Local(Invalidation::Prefix("/a".into()))),
        ])
        .unwrap();
        // The first line's length now runs past the end of the file.
        let mut bytes = std::fs::read(dir.join(NAME)).unwrap();
        bytes[8..12].copy_from_slice(&0x000f_ffffu32.to_le_bytes());
        std::fs::write(dir.join(NAME), bytes).unwrap();
        assert!(Journal::open(&dir).unwrap().damaged);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "larder-journal-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
