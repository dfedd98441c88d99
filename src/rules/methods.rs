//! Sets of HTTP methods as bit masks.

use std::fmt;

use http::Method;

/// A set of HTTP methods as a bit mask.
///
/// ```
/// use larder::rules::MethodSet;
/// let set = MethodSet::from_methods(&[http::Method::GET]);
/// assert!(set.contains(&http::Method::GET));
/// assert!(!set.contains(&http::Method::POST));
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct MethodSet(u16);

const METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
    Method::TRACE,
    Method::CONNECT,
];

impl MethodSet {
    /// The empty set.
    pub const EMPTY: MethodSet = MethodSet(0);

    fn bit(method: &Method) -> u16 {
        // Compare the common methods first; the list is tiny.
        METHODS
            .iter()
            .position(|m| m == method)
            .map_or(0, |i| 1 << i)
    }

    /// Builds a set from a list of methods.
    pub fn from_methods(methods: &[Method]) -> Self {
        MethodSet(methods.iter().fold(0, |acc, m| acc | Self::bit(m)))
    }

    /// Whether `method` is in the set.
    pub fn contains(&self, method: &Method) -> bool {
        self.0 & Self::bit(method) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The union of two sets.
    pub fn union(self, other: MethodSet) -> MethodSet {
        MethodSet(self.0 | other.0)
    }

    /// The methods in the set, in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = &'static Method> + '_ {
        METHODS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, m)| m)
    }

    /// Parses one method name, accepting only the standard methods.
    pub fn parse_method(name: &str) -> Result<Method, String> {
        METHODS
            .iter()
            .find(|m| m.as_str() == name)
            .cloned()
            .ok_or_else(|| {
                format!(
                    "unknown method {name:?}; expected one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE, CONNECT"
                )
            })
    }
}

impl fmt::Debug for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(Method::as_str))
            .finish()
    }
}
