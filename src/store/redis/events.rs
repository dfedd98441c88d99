//! What one instance tells the others over Redis pub/sub.

use crate::key::CacheKey;
use crate::store::Invalidation;

/// What one instance tells the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Remove what this names from L1.
    Invalidate(Invalidation),
    /// Mark what this names stale in L1.
    Soften(Invalidation),
    /// A fill for this key finished (stored or not): waiters may look.
    Filled(CacheKey),
}

impl Event {
    /// The wire form: `<instance> <kind> <payload>`.
    pub fn encode(&self, instance: &str) -> String {
        match self {
            Event::Invalidate(w) => format!("{instance} inv {}", w.encode()),
            Event::Soften(w) => format!("{instance} soft {}", w.encode()),
            Event::Filled(k) => format!("{instance} fill {k}"),
        }
    }

    /// Parses the wire form; returns the sender's instance id and the event.
    pub fn decode(text: &str) -> Option<(&str, Event)> {
        let (instance, rest) = text.split_once(' ')?;
        let (kind, payload) = rest.split_once(' ').unwrap_or((rest, ""));
        let event = match kind {
            "inv" => Event::Invalidate(Invalidation::decode(payload)?),
            "soft" => Event::Soften(Invalidation::decode(payload)?),
            "fill" => Event::Filled(CacheKey::from_hex(payload)?),
            _ => return None,
        };
        Some((instance, event))
    }
}
