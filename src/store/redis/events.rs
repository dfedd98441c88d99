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
    /// The invalidation sent just before this one (same sender) went out at `sent_ms`:
    /// receivers count how long it took them to apply it, and answer with an
    /// [`Event::Ack`] when `ack` asks for it (`?wait=all`).
    Mark {
        /// The sender's number for it.
        id: u64,
        /// When the invalidation went out (ms since the epoch, the sender's clock).
        sent_ms: u64,
        /// Whether the sender waits for an [`Event::Ack`].
        ack: bool,
    },
    /// The sender applied the invalidation marked `id` of instance `to`.
    Ack {
        /// The mark's number.
        id: u64,
        /// The instance that sent the mark.
        to: String,
    },
}

impl Event {
    /// The wire form: `<instance> <kind> <payload>`.
    pub fn encode(&self, instance: &str) -> String {
        match self {
            Event::Invalidate(w) => format!("{instance} inv {}", w.encode()),
            Event::Soften(w) => format!("{instance} soft {}", w.encode()),
            Event::Filled(k) => format!("{instance} fill {k}"),
            Event::Mark { id, sent_ms, ack } => {
                format!("{instance} mark {id} {sent_ms} {}", u8::from(*ack))
            }
            Event::Ack { id, to } => format!("{instance} ack {id} {to}"),
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
            "mark" => {
                let mut f = payload.split(' ');
                Event::Mark {
                    id: f.next()?.parse().ok()?,
                    sent_ms: f.next()?.parse().ok()?,
                    ack: f.next()? == "1",
                }
            }
            "ack" => {
                let (id, to) = payload.split_once(' ')?;
                Event::Ack {
                    id: id.parse().ok()?,
                    to: to.to_string(),
                }
            }
            _ => return None,
        };
        Some((instance, event))
    }
}
