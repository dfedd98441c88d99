//! One invalidation model for every tier: what an invalidation names, whether it covers an
//! entry, the log that keeps a fill racing it from storing what it dropped, and the wire
//! forms (the pub/sub event text and the members of Redis's invalidation log).
//!
//! ```
//! use larder::store::{Invalidation, InvalidationLog};
//! let what = Invalidation::Tags(vec![7]);
//! assert!(what.matches(&[1, 7], "/jobs/1"));
//! assert!(Invalidation::Prefix("/jobs/".into()).matches(&[], "/jobs/1"));
//! assert_eq!(Invalidation::decode(&what.encode()), Some(what.clone()));
//!
//! let mut log = InvalidationLog::new(16);
//! let before = log.epoch();
//! log.record(what);
//! assert!(log.invalidated_since(before, &[7], "/jobs/1"));
//! assert!(!log.invalidated_since(before, &[8], "/jobs/2"));
//! ```

use std::collections::VecDeque;

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

impl Invalidation {
    /// Whether this covers an entry with these tags and this normalised URL.
    pub fn matches(&self, tags: &[u64], url: &str) -> bool {
        match self {
            Invalidation::All => true,
            Invalidation::Tags(ts) => ts.iter().any(|t| tags.contains(t)),
            Invalidation::Prefix(p) => url.starts_with(p.as_str()),
        }
    }

    /// The wire form in events: `t <hex>,<hex>`, `p <prefix>` or `a`.
    pub fn encode(&self) -> String {
        match self {
            Invalidation::Tags(tags) => {
                let hexes: Vec<String> = tags.iter().map(|t| format!("{t:016x}")).collect();
                format!("t {}", hexes.join(","))
            }
            Invalidation::Prefix(p) => format!("p {p}"),
            Invalidation::All => "a".to_string(),
        }
    }

    /// Reads the wire form.
    pub fn decode(text: &str) -> Option<Invalidation> {
        match text.split_once(' ') {
            Some(("t", list)) => list
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|h| u64::from_str_radix(h, 16).ok())
                .collect::<Option<Vec<u64>>>()
                .map(Invalidation::Tags),
            Some(("p", prefix)) => Some(Invalidation::Prefix(prefix.to_string())),
            None if text == "a" => Some(Invalidation::All),
            _ => None,
        }
    }

    /// Its members in a durable invalidation log, one per tag: `t:<hex>`, `p:<prefix>`,
    /// `a` (Redis's log and its put script read the same form).
    pub fn log_members(&self) -> Vec<String> {
        match self {
            Invalidation::Tags(tags) => tags.iter().map(|t| format!("t:{t:016x}")).collect(),
            Invalidation::Prefix(p) => vec![format!("p:{p}")],
            Invalidation::All => vec!["a".to_string()],
        }
    }

    /// Reads one log member.
    pub fn from_log_member(member: &str) -> Option<Invalidation> {
        match member.split_once(':') {
            Some(("t", hex)) => u64::from_str_radix(hex, 16)
                .ok()
                .map(|t| Invalidation::Tags(vec![t])),
            Some(("p", prefix)) => Some(Invalidation::Prefix(prefix.to_string())),
            None if member == "a" => Some(Invalidation::All),
            _ => None,
        }
    }
}

/// Recent invalidations with the epoch each was given. A fill remembers the epoch when it
/// began; storing is refused if an invalidation since then covers the entry, so a slow
/// fetch never resurrects what was invalidated while it ran.
#[derive(Debug)]
pub struct InvalidationLog {
    epoch: u64,
    recent: VecDeque<(u64, Invalidation)>,
    capacity: usize,
}

impl InvalidationLog {
    /// A log remembering the last `capacity` invalidations.
    pub fn new(capacity: usize) -> InvalidationLog {
        InvalidationLog {
            epoch: 0,
            recent: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Records an invalidation; returns its epoch.
    pub fn record(&mut self, what: Invalidation) -> u64 {
        self.epoch += 1;
        self.recent.push_back((self.epoch, what));
        while self.recent.len() > self.capacity {
            self.recent.pop_front();
        }
        self.epoch
    }

    /// Whether an invalidation after epoch `since` covers an entry with these tags and URL
    /// (conservatively true when the log no longer reaches back to `since`).
    pub fn invalidated_since(&self, since: u64, tags: &[u64], url: &str) -> bool {
        if self.epoch == since {
            return false;
        }
        match self.recent.front() {
            Some((oldest, _)) if *oldest > since + 1 => return true,
            None => return true,
            _ => {}
        }
        self.recent
            .iter()
            .filter(|(epoch, _)| *epoch > since)
            .any(|(_, what)| what.matches(tags, url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms_round_trip() {
        for what in [
            Invalidation::Tags(vec![1, u64::MAX]),
            Invalidation::Prefix("/a b".into()),
            Invalidation::All,
        ] {
            assert_eq!(Invalidation::decode(&what.encode()), Some(what.clone()));
            for m in what.log_members() {
                let one = Invalidation::from_log_member(&m).unwrap();
                assert!(matches!(
                    (&one, &what),
                    (Invalidation::Tags(_), Invalidation::Tags(_))
                        | (Invalidation::Prefix(_), Invalidation::Prefix(_))
                        | (Invalidation::All, Invalidation::All)
                ));
            }
        }
    }

    #[test]
    fn a_log_that_forgot_refuses_conservatively() {
        let mut log = InvalidationLog::new(2);
        let start = log.epoch();
        for t in 0..5 {
            log.record(Invalidation::Tags(vec![t]));
        }
        assert!(log.invalidated_since(start, &[99], "/x"));
        assert!(!log.invalidated_since(log.epoch(), &[99], "/x"));
    }
}
