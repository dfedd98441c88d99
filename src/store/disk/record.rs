//! The on-disk record: a fixed header with a magic number, a format version, the record's
//! kind, its length, a sequence number, the fleet epoch and a CRC-32 over everything but
//! itself, then the key and the payload (an entry's bytes, or a journal line).
//!
//! ```text
//! 0  u32  magic "LDSK"          16 u64 sequence number (orders entries and invalidations)
//! 4  u8   format version        24 u64 fleet epoch (Redis's invalidation epoch at the fill)
//! 5  u8   kind                  32 [u8; 16] key (zeros in the journal)
//! 6  u16  reserved (0)          48 payload
//! 8  u32  payload length
//! 12 u32  CRC-32 of bytes 0..12 and 16..end
//! ```
//!
//! A record torn by a crash (shorter than its length says) or changed on disk (its CRC does
//! not match) is never used: a torn tail is cut off at recovery, a damaged record is a miss.
//!
//! ```
//! use larder::store::disk::record::{Kind, Record};
//! let bytes = Record::encode(Kind::Entry, 7, 3, &[1; 16], b"payload");
//! let header = Record::header(&bytes).unwrap();
//! assert_eq!((header.kind, header.seq, header.fleet, header.len), (Kind::Entry, 7, 3, 7));
//! assert!(Record::verify(&bytes).is_ok());
//! let mut bad = bytes.clone();
//! bad[50] ^= 1;
//! assert!(Record::verify(&bad).is_err());
//! ```

/// The first bytes of every record.
pub const MAGIC: u32 = u32::from_le_bytes(*b"LDSK");
/// The record format this build writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER: usize = 48;
/// The largest payload a record may claim (a length beyond is damage).
pub const MAX_PAYLOAD: usize = 1 << 30;
/// The largest sequence number a record may carry: one per record and journal line, so a
/// million a second for a hundred years stays below it. A record claiming more was not
/// written by a tier (it would wrap the counter, and no later invalidation would cover
/// it): damage.
pub const MAX_SEQ: u64 = 1 << 52;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A stored entry under its key.
    Entry,
    /// A journal line: an invalidation (applying to every entry with a lower sequence
    /// number) or the fleet watermark.
    Journal,
}

/// A record's header, read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What it holds.
    pub kind: Kind,
    /// Its sequence number.
    pub seq: u64,
    /// Its fleet epoch.
    pub fleet: u64,
    /// Its key.
    pub key: [u8; 16],
    /// Payload bytes.
    pub len: usize,
}

impl Header {
    /// Bytes of the whole record.
    pub fn total(&self) -> usize {
        HEADER + self.len
    }
}

/// Why a record cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Not a record, or of a format this build does not read.
    Header,
    /// Shorter than its header says (a torn write).
    Torn,
    /// Its bytes changed since they were written.
    Checksum,
}

/// Encoding and checking records.
pub struct Record;

fn crc(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..12]);
    h.update(&bytes[16..]);
    h.finalize()
}

impl Record {
    /// A whole record.
    pub fn encode(kind: Kind, seq: u64, fleet: u64, key: &[u8; 16], payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + payload.len());
        Record::encode_into(&mut out, kind, seq, fleet, key, payload);
        out
    }

    /// Appends a whole record to `out`.
    pub fn encode_into(
        out: &mut Vec<u8>,
        kind: Kind,
        seq: u64,
        fleet: u64,
        key: &[u8; 16],
        payload: &[u8],
    ) {
        let start = out.len();
        out.reserve(HEADER + payload.len());
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.push(VERSION);
        out.push(match kind {
            Kind::Entry => 1,
            Kind::Journal => 2,
        });
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&fleet.to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(payload);
        let sum = crc(&out[start..]);
        out[start + 12..start + 16].copy_from_slice(&sum.to_le_bytes());
    }

    /// The header at the start of `bytes` (at least [`HEADER`] of them).
    pub fn header(bytes: &[u8]) -> Result<Header, Damage> {
        let h = bytes.get(..HEADER).ok_or(Damage::Torn)?;
        let word = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        if word(0) != MAGIC || h[4] != VERSION || h[6] != 0 || h[7] != 0 {
            return Err(Damage::Header);
        }
        let kind = match h[5] {
            1 => Kind::Entry,
            2 => Kind::Journal,
            _ => return Err(Damage::Header),
        };
        let len = word(8) as usize;
        if len > MAX_PAYLOAD {
            return Err(Damage::Header);
        }
        let long = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&h[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let mut key = [0u8; 16];
        key.copy_from_slice(&h[32..48]);
        Ok(Header {
            kind,
            seq: long(16),
            fleet: long(24),
            key,
            len,
        })
    }

    /// Checks a whole record (header and payload) against its CRC; its header if sound.
    pub fn verify(bytes: &[u8]) -> Result<Header, Damage> {
        let header = Record::header(bytes)?;
        if bytes.len() < header.total() {
            return Err(Damage::Torn);
        }
        let bytes = &bytes[..header.total()];
        let stored = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        if crc(bytes) != stored {
            return Err(Damage::Checksum);
        }
        Ok(header)
    }
}
