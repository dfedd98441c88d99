//! The memory store's map hasher: keyed, one multiply per key word.

use std::hash::{BuildHasher, Hasher};

/// Keys are uniform hashes already, but of inputs a client chooses: a client that
/// searched for URLs whose keys share their low bits could crowd one bucket chain. So the
/// map mixes each key word with a per-process secret (one multiply), which costs a
/// nanosecond and leaves nothing to search for.
#[derive(Clone, Copy)]
pub(crate) struct KeyHasherBuilder(pub(crate) u64);

impl Default for KeyHasherBuilder {
    fn default() -> Self {
        // std's RandomState is seeded from the OS once per process.
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x6c61_7264_6572u64);
        KeyHasherBuilder(seed | 1)
    }
}

impl BuildHasher for KeyHasherBuilder {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            seed: self.0,
            state: 0,
        }
    }
}

pub(crate) struct KeyHasher {
    seed: u64,
    state: u64,
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.state
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Folded multiply: the high and low halves of the 128-bit product, xored.
        let product = u128::from(n ^ self.state ^ self.seed) * u128::from(0x9e37_79b9_7f4a_7c15u64);
        self.state = (product as u64) ^ ((product >> 64) as u64);
    }
}
