//! Why an answer was not stored, or not served from the cache: the `detail` of
//! `Cache-Status`.

/// Why a response was not stored, or a request bypassed the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoCacheReason {
    /// The status is not stored.
    Status,
    /// The response said `no-store`.
    NoStore,
    /// The response said `private` and the rule is not `per_user`.
    Private,
    /// The response sets a cookie and the rule does not allow it.
    SetCookie,
    /// `Vary: *`.
    VaryStar,
    /// The request had `Authorization` and the response did not allow sharing.
    Authorization,
    /// `no-cache` without a validator to revalidate with.
    NoCache,
    /// No explicit freshness and no validator.
    NoFreshness,
    /// The body is larger than `proxy.max_body`.
    TooLarge,
    /// The request said `no-store`.
    RequestNoStore,
    /// The rule has `cache = false`.
    Rule,
    /// A `per_user` rule and no user in the request.
    NoUser,
    /// The method is not cached.
    Method,
    /// A range request.
    Range,
    /// A `key_body` request body over `cache.key_body_max`.
    BodyTooLarge,
    /// A protocol upgrade.
    Upgrade,
    /// The upstream's body failed mid-way.
    UpstreamBody,
    /// The entry was invalidated while it was being fetched.
    Invalidated,
    /// A `key_body` request's JSON is nested too deep to canonicalise.
    BodyTooDeep,
    /// The request was refused at the trust boundary (`400`).
    BadRequest,
    /// `cache.dry_run`: everything is forwarded, nothing stored.
    DryRun,
    /// A `key_body_fields` request whose body is not a JSON document.
    BodyNotJson,
    /// The answer's content coding is not one larder serves from the cache (gzip or
    /// none): it could reach clients that never accepted it.
    Coding,
    /// An LLM answer that did not complete: a stream without its terminal event, an error
    /// event, or no answer object.
    Incomplete,
    /// An LLM answer cut by its length or a filter (`store_truncated` stores those).
    Truncated,
    /// Not forwarded: the upstream's daily budget is spent.
    OverBudget,
    /// Not forwarded: the upstream's rate is reached.
    OverRate,
    /// Not forwarded: the upstream's requests in flight are at their bound.
    OverConcurrency,
    /// Not forwarded: the upstream asked to be left alone for a while.
    BackingOff,
}

impl NoCacheReason {
    /// Every reason, in a fixed order (a slot each for counting).
    pub const ALL: [NoCacheReason; 29] = [
        NoCacheReason::Status,
        NoCacheReason::NoStore,
        NoCacheReason::Private,
        NoCacheReason::SetCookie,
        NoCacheReason::VaryStar,
        NoCacheReason::Authorization,
        NoCacheReason::NoCache,
        NoCacheReason::NoFreshness,
        NoCacheReason::TooLarge,
        NoCacheReason::RequestNoStore,
        NoCacheReason::Rule,
        NoCacheReason::NoUser,
        NoCacheReason::Method,
        NoCacheReason::Range,
        NoCacheReason::BodyTooLarge,
        NoCacheReason::Upgrade,
        NoCacheReason::UpstreamBody,
        NoCacheReason::Invalidated,
        NoCacheReason::BodyTooDeep,
        NoCacheReason::BadRequest,
        NoCacheReason::DryRun,
        NoCacheReason::BodyNotJson,
        NoCacheReason::Coding,
        NoCacheReason::Incomplete,
        NoCacheReason::Truncated,
        NoCacheReason::OverBudget,
        NoCacheReason::OverRate,
        NoCacheReason::OverConcurrency,
        NoCacheReason::BackingOff,
    ];

    /// Its slot in [`NoCacheReason::ALL`].
    pub fn slot(self) -> usize {
        self as usize
    }

    /// The `detail` token.
    pub fn as_str(self) -> &'static str {
        match self {
            NoCacheReason::Status => "status",
            NoCacheReason::NoStore => "no-store",
            NoCacheReason::Private => "private",
            NoCacheReason::SetCookie => "set-cookie",
            NoCacheReason::VaryStar => "vary-star",
            NoCacheReason::Authorization => "authorization",
            NoCacheReason::NoCache => "no-cache",
            NoCacheReason::NoFreshness => "no-freshness",
            NoCacheReason::TooLarge => "too-large",
            NoCacheReason::RequestNoStore => "request-no-store",
            NoCacheReason::Rule => "rule",
            NoCacheReason::NoUser => "no-user",
            NoCacheReason::Method => "method",
            NoCacheReason::Range => "range",
            NoCacheReason::BodyTooLarge => "body-too-large",
            NoCacheReason::Upgrade => "upgrade",
            NoCacheReason::UpstreamBody => "upstream-body",
            NoCacheReason::Invalidated => "invalidated",
            NoCacheReason::BodyTooDeep => "body-too-deep",
            NoCacheReason::BadRequest => "bad-request",
            NoCacheReason::DryRun => "dry-run",
            NoCacheReason::BodyNotJson => "body-not-json",
            NoCacheReason::Coding => "coding",
            NoCacheReason::Incomplete => "incomplete",
            NoCacheReason::Truncated => "truncated",
            NoCacheReason::OverBudget => "budget",
            NoCacheReason::OverRate => "rate",
            NoCacheReason::OverConcurrency => "concurrency",
            NoCacheReason::BackingOff => "backoff",
        }
    }
}
