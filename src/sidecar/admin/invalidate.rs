//! `POST /admin/invalidate`: tags, URLs, a URL prefix, a path pattern, a tag prefix or a
//! user — any of them, or with `"match": "all"` only what matches every scope given —
//! hard or soft, and with `?wait=all` acknowledged by every live instance.

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::{error, json_response, parse, paths_only, Admin};
use crate::cache::Target;

/// How long `?wait=all` waits for the fleet unless `wait_ms` says otherwise.
const FLEET_WAIT: Duration = Duration::from_secs(5);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InvalidateRequest {
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    urls: Vec<String>,
    prefix: Option<String>,
    /// A path glob: `*` one segment, `**` any number.
    pattern: Option<String>,
    /// Every tag starting with this.
    tag_prefix: Option<String>,
    /// A user's raw identity (the value of a header or cookie source).
    user: Option<String>,
    /// A user's id: the value of a `header:` source, or the claim of a `jwt:` source.
    user_id: Option<String>,
    /// `"all"`: only entries every scope matches; `"any"` (the default): any scope.
    #[serde(rename = "match")]
    match_: Option<String>,
    /// Mark stale instead of removing (a soft purge).
    #[serde(default)]
    soft: bool,
    /// `"PURGE_ALL"`: yes, even a scope that matches every entry.
    confirm: Option<String>,
}

impl InvalidateRequest {
    /// Each scope given, as a target of its own.
    fn scopes(&self) -> Vec<Target> {
        let mut out = Vec::new();
        let each_tag = self.match_all();
        if each_tag {
            out.extend(self.tags.iter().map(|t| Target::Tags(vec![t.clone()])));
            out.extend(self.urls.iter().map(|u| Target::Urls(vec![u.clone()])));
        } else {
            if !self.tags.is_empty() {
                out.push(Target::Tags(self.tags.clone()));
            }
            if !self.urls.is_empty() {
                out.push(Target::Urls(self.urls.clone()));
            }
        }
        out.extend(self.prefix.clone().map(Target::Prefix));
        out.extend(self.pattern.clone().map(Target::Pattern));
        out.extend(self.tag_prefix.clone().map(Target::TagPrefix));
        out.extend(self.user.clone().map(Target::User));
        out.extend(self.user_id.clone().map(Target::User));
        out
    }

    fn match_all(&self) -> bool {
        self.match_.as_deref() == Some("all")
    }

    /// Whether a scope matches every entry (every stored URL starts with `/`): that is a
    /// purge, and needs a purge's confirmation.
    fn matches_everything(&self) -> bool {
        let root = |p: &Option<String>| p.as_deref().is_some_and(|p| p.is_empty() || p == "/");
        let everything = root(&self.prefix) || self.pattern.as_deref() == Some("/**");
        // With "all", another scope narrows it.
        everything && (!self.match_all() || self.scopes().len() == 1)
    }

    /// The target: one scope, any of several, or (`"match": "all"`) every one.
    fn target(&self) -> Result<Target, String> {
        match self.match_.as_deref() {
            None | Some("any") | Some("all") => {}
            Some(other) => return Err(format!("match must be \"any\" or \"all\", not {other:?}")),
        }
        let mut scopes = self.scopes();
        if let Some(problem) = scopes.iter().find_map(Target::problem) {
            return Err(problem);
        }
        Ok(match (scopes.len(), self.match_all()) {
            (1, _) => scopes.remove(0),
            (_, true) => Target::Every(scopes),
            (_, false) => Target::Any(scopes),
        })
    }
}

/// The wait `?wait=all[&wait_ms=N]` asks for.
fn fleet_wait(query: &str) -> Result<Option<Duration>, String> {
    let mut wait = None;
    let mut bound = FLEET_WAIT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("wait", "all")) => wait = Some(()),
            Some(("wait", other)) => return Err(format!("wait must be \"all\", not {other:?}")),
            Some(("wait_ms", n)) => {
                let ms: u64 = n
                    .parse()
                    .map_err(|_| format!("wait_ms {n:?} is not a number"))?;
                bound = Duration::from_millis(ms.min(60_000));
            }
            _ => {}
        }
    }
    Ok(wait.map(|_| bound))
}

impl Admin {
    /// `POST /admin/invalidate[?wait=all]`.
    pub(super) async fn invalidate(&self, query: &str, body: &[u8]) -> Response<Full<Bytes>> {
        let req: InvalidateRequest = match parse(
            body,
            "{\"tags\":[..]}, {\"urls\":[..]}, {\"prefix\":\"..\"}, {\"pattern\":\"..\"}, {\"tag_prefix\":\"..\"}, {\"user_id\":\"..\"} or {\"user\":\"..\"}, with \"match\":\"all\" for every scope at once",
        ) {
            Ok(r) => r,
            Err(resp) => return *resp,
        };
        if req.scopes().is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                "nothing to invalidate: give tags, urls, prefix, pattern, tag_prefix, user_id or user",
            );
        }
        if req.matches_everything() && req.confirm.as_deref() != Some("PURGE_ALL") {
            return error(
                StatusCode::BAD_REQUEST,
                "this scope matches every entry: add \"confirm\":\"PURGE_ALL\" (larder ctl: --yes), or use /admin/purge",
            );
        }
        if let Err(resp) = paths_only(&req.urls) {
            return *resp;
        }
        let (target, wait) = match (req.target(), fleet_wait(query)) {
            (Ok(t), Ok(w)) => (t, w),
            (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
        };
        let done = self
            .cache
            .invalidate_confirmed(&target, req.soft, wait)
            .await;
        let mut body = json!({ "invalidated": done.entries });
        if wait.is_some() {
            body["applied"] = json!(done.applied);
            body["missing"] = json!(done.missing);
            if !done.fleet_answered {
                body["fleet"] = json!("redis did not answer: the other instances were not asked");
            }
        }
        json_response(StatusCode::OK, body)
    }
}
