//! Where entries live. [`MemoryStore`] is the whole store of the memory backend and the
//! L1 of the Redis backend.

pub mod breaker;
mod memory;
pub mod redis;

pub use memory::MemoryStore;

/// A fill's starting point in the invalidation history: a fill is refused if something
/// it carries was invalidated after it began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FillToken(pub u64);

/// What to invalidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Every entry carrying any of these tag ids (URL and user tags included).
    Tags(Vec<u64>),
    /// Every entry whose normalised URL starts with this prefix.
    Prefix(String),
    /// Everything.
    All,
}

/// Size and churn of a store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Entries held.
    pub entries: u64,
    /// Bytes held (bodies, headers and bookkeeping).
    pub bytes: u64,
    /// The bound.
    pub max_bytes: u64,
    /// Entries evicted to stay within the bound.
    pub evictions: u64,
}
