//! What an LLM answer stored in an entry is worth to its hits, worked out once per entry:
//! its usage (what each hit saved) and its other shapes (a stream folded into JSON, an
//! object made into a stream), so that a hit of either shape costs a copy, not a parse.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::entry::Entry;
use crate::llm::{self, Ask, Provider, Shape, Usage, Verdict};

/// One entry's LLM facts (kept in the entry's derived slot).
pub(super) struct Facts {
    /// The stored answer's shape.
    stored: Shape,
    /// Its usage, if it has one.
    pub usage: Option<Usage>,
    /// The answer in each other form a client may ask for: JSON, a stream with the usage
    /// chunk, a stream without (`None` inside: served as stored).
    renderings: [OnceLock<Option<Bytes>>; 3],
}

impl Facts {
    /// The facts of `entry`, read once.
    pub fn of(entry: &Entry, provider: Provider) -> &Facts {
        static NONE: OnceLock<Facts> = OnceLock::new();
        entry
            .derived(|e| Facts::read(e, provider))
            .unwrap_or_else(|| {
                NONE.get_or_init(|| Facts {
                    stored: Shape::Json,
                    usage: None,
                    renderings: Default::default(),
                })
            })
    }

    fn read(entry: &Entry, provider: Provider) -> Facts {
        let ct = entry.header_value("content-type");
        let stored = llm::shape_of(ct.as_ref().and_then(|v| v.to_str().ok()));
        let usage =
            entry
                .decoded_body()
                .ok()
                .and_then(|body| match provider.judge(stored, &body) {
                    Verdict::Complete(u) | Verdict::Truncated(u) => Some(u),
                    Verdict::Incomplete => None,
                });
        Facts {
            stored,
            usage,
            renderings: Default::default(),
        }
    }

    /// The answer in the form `ask` wants, if that is not the stored one.
    pub fn rendering(&self, entry: &Entry, provider: Provider, ask: Ask) -> Option<Bytes> {
        let slot = match (ask.shape, ask.include_usage) {
            (Shape::Json, _) => 0,
            (Shape::Stream, true) => 1,
            (Shape::Stream, false) => 2,
        };
        self.renderings[slot]
            .get_or_init(|| {
                let body = entry.decoded_body().ok()?;
                provider.reshape(self.stored, &body, ask).map(Bytes::from)
            })
            .clone()
    }
}
