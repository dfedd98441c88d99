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
    /// Every entry whose path matches this glob (`*` one segment, `**` any number).
    Pattern(String),
    /// Only the entries every one of these names (`"match": "all"`); never nested.
    Every(Vec<Invalidation>),
    /// The entries any of these names (several scopes in one call); never nested.
    Any(Vec<Invalidation>),
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
            Invalidation::Pattern(g) => crate::key::glob_matches(g, url),
            Invalidation::Every(parts) => parts.iter().all(|w| w.matches(tags, url)),
            Invalidation::Any(parts) => parts.iter().any(|w| w.matches(tags, url)),
        }
    }

    /// Whether this covers `entry`.
    pub fn covers(&self, entry: &crate::entry::Entry) -> bool {
        let tags: Vec<u64> = entry.tags().collect();
        self.matches(&tags, entry.url())
    }

    /// Tag ids whose entries include every entry this names (a tier finds its candidates
    /// through its tag index, then checks [`Invalidation::matches`]); `None` when only a
    /// walk finds them (everything, or a prefix or pattern at the root).
    ///
    /// ```
    /// use larder::store::Invalidation;
    /// use larder::key::path_prefix_id;
    /// let p = Invalidation::Prefix("/videos/7".into());
    /// assert_eq!(p.candidates(), Some(vec![path_prefix_id("/videos/")]));
    /// assert_eq!(Invalidation::Pattern("/*/x".into()).candidates(), None);
    /// ```
    pub fn candidates(&self) -> Option<Vec<u64>> {
        let directory = |p: &str| {
            let dir = &p[..p.rfind('/').map_or(0, |i| i + 1)];
            (dir.len() > 1).then(|| vec![crate::key::path_prefix_id(dir)])
        };
        match self {
            Invalidation::Tags(ts) => Some(ts.clone()),
            Invalidation::Prefix(p) => directory(p),
            Invalidation::Pattern(g) => directory(crate::key::glob_directory(g)),
            Invalidation::Every(parts) => parts
                .iter()
                .filter_map(Invalidation::candidates)
                .min_by_key(Vec::len),
            Invalidation::Any(parts) => {
                let each: Option<Vec<Vec<u64>>> =
                    parts.iter().map(Invalidation::candidates).collect();
                each.map(|lists| lists.concat())
            }
            Invalidation::All => None,
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
            Invalidation::Pattern(g) => format!("g {g}"),
            Invalidation::Every(parts) | Invalidation::Any(parts) => {
                let kind = if matches!(self, Invalidation::Every(_)) {
                    "e "
                } else {
                    "o "
                };
                let mut out = String::from(kind);
                for part in parts {
                    let enc = part.encode();
                    out.push_str(&format!("{}:{enc}", enc.len()));
                }
                out
            }
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
            Some(("g", glob)) => Some(Invalidation::Pattern(glob.to_string())),
            Some((kind @ ("e" | "o"), mut rest)) => {
                let mut parts = Vec::new();
                while !rest.is_empty() {
                    let (len, tail) = rest.split_once(':')?;
                    let len: usize = len.parse().ok()?;
                    let part = tail.get(..len)?;
                    match Invalidation::decode(part)? {
                        Invalidation::Every(_) | Invalidation::Any(_) => return None,
                        one => parts.push(one),
                    }
                    rest = &tail[len..];
                }
                let all = if kind == "e" {
                    Invalidation::Every(parts)
                } else {
                    Invalidation::Any(parts)
                };
                (!matches!(&all, Invalidation::Every(p) | Invalidation::Any(p) if p.is_empty()))
                    .then_some(all)
            }
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
            // The log only has to cover at least as much (a fill it refuses is just not
            // stored): a pattern by its literal directory, a conjunction by one part.
            Invalidation::Pattern(g) => vec![format!("p:{}", crate::key::glob_directory(g))],
            Invalidation::Every(parts) => parts
                .first()
                .map_or_else(Vec::new, Invalidation::log_members),
            Invalidation::Any(parts) => parts.iter().flat_map(Invalidation::log_members).collect(),
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
            Invalidation::Pattern("/v/*/c".into()),
            Invalidation::Every(vec![
                Invalidation::Tags(vec![3]),
                Invalidation::Prefix("/x:1".into()),
            ]),
            Invalidation::Any(vec![
                Invalidation::Tags(vec![3]),
                Invalidation::Pattern("/y/*".into()),
            ]),
            Invalidation::All,
        ] {
            assert_eq!(Invalidation::decode(&what.encode()), Some(what.clone()));
            if matches!(
                what,
                Invalidation::Pattern(_) | Invalidation::Every(_) | Invalidation::Any(_)
            ) {
                continue;
            }
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
    fn every_part_must_match() {
        let both = Invalidation::Every(vec![
            Invalidation::Tags(vec![7]),
            Invalidation::Pattern("/videos/*/comments".into()),
        ]);
        assert!(both.matches(&[7], "/videos/1/comments"));
        assert!(!both.matches(&[8], "/videos/1/comments"));
        assert!(!both.matches(&[7], "/videos/1"));
        assert_eq!(both.candidates(), Some(vec![7]));
        assert_eq!(
            Invalidation::decode("e 5:t 0001"),
            None,
            "a part's length is exact"
        );
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
