//! Streaming fills: an admitted answer reaches its client as the upstream sends it while the
//! same bytes are kept for the entry, and requests for the same key that arrive meanwhile
//! follow it live ([`crate::coalesce::stream`]). The entry is made and stored when the body
//! completes; a body that fails is never stored (its readers see an error, not a clean
//! end); one that grows past the bound turns into pass-through for everyone on it.
//!
//! What is ready at once is drained first: a body that completes without waiting (small
//! answers, the usual case) takes the buffered path, whose `Cache-Status` is exact.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{HeaderValue, AGE, CONTENT_LENGTH};
use http::{HeaderMap, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;

use super::admit::{self, FillRequest};
use super::miss::LeaseGuard;
use super::respond::{self, stamp, ReqInfo};
use crate::body::{concat, CacheBody, PassBody};
use crate::cache::{Cache, Settings};
use crate::coalesce::stream::{Audience, FillReader, FillStream};
use crate::coalesce::LeaderGuard;
use crate::llm::{Provider, Shape};
use crate::policy::{vary_names, Freshness};
use crate::status::{CacheStatus, NoCacheReason, TierSet};
use crate::store::FillTokens;

/// What polling a body without waiting found.
pub(super) enum Drained {
    /// The whole body.
    Complete(Bytes),
    /// More than the bound: what was read.
    TooLarge(VecDeque<Bytes>),
    /// The body failed.
    Failed,
    /// What was ready; the rest is still coming.
    Pending(VecDeque<Bytes>),
}

/// Reads the frames of `body` that are ready now, up to `limit` bytes.
pub(super) fn drain_ready<B: PassBody>(body: &mut Pin<Box<B>>, limit: usize) -> Drained {
    let mut frames = VecDeque::new();
    let mut total = 0;
    loop {
        match body.frame().now_or_never() {
            None => return Drained::Pending(frames),
            Some(None) => return Drained::Complete(concat(frames, total)),
            Some(Some(Err(_))) => return Drained::Failed,
            Some(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    total += data.len();
                    frames.push_back(data);
                    if total > limit {
                        return Drained::TooLarge(frames);
                    }
                }
            }
        }
    }
}

/// What storing the entry needs once the body is complete.
pub(super) struct Later {
    pub cache: Cache,
    pub settings: Arc<Settings>,
    pub rule: Option<usize>,
    pub fill: FillRequest,
    pub response: (StatusCode, HeaderMap),
    pub freshness: Freshness,
    pub tokens: FillTokens,
    pub response_time: u64,
    /// The most the entry may hold.
    pub limit: usize,
    /// Held until the entry is stored: followers then read it.
    pub leader: Option<LeaderGuard>,
    pub _lease: Option<LeaseGuard>,
    /// The place upstream the fill holds until its body is read.
    pub _slot: Option<crate::budget::Slot>,
    /// What the request that caused the fill asked for (its body's shape, for LLM rules).
    pub info: ReqInfo,
}

impl Later {
    /// Makes and stores the entry, then prefetches the rule's related paths.
    async fn store(self, bytes: Bytes) {
        let s = &*self.settings;
        let rule = s.rule(self.rule);
        if let Err(reason) = admit::complete_answer(rule, &self.response.1, &bytes) {
            s.counters(self.rule).record_not_stored(reason);
            return;
        }
        let Ok(kept) = admit::keep_body(s, &self.response.1, bytes) else {
            return;
        };
        let admitted = admit::build(
            s,
            rule,
            &self.fill,
            (self.response.0, &self.response.1),
            &kept,
            self.freshness,
            self.response_time,
        );
        let allowed = rule.map_or((TierSet::ALL, None), |r| (r.tiers, r.write));
        let stored = self
            .cache
            .tiers()
            .store(&admitted.store, &self.tokens, allowed)
            .await;
        if let Some(r) = rule.filter(|r| stored && !r.prefetch.is_empty()) {
            let caps = r.pattern.captures(&self.fill.path).unwrap_or_default();
            let paths = r.prefetch.iter().map(|t| t.render(&caps)).collect();
            self.cache
                .prefetch(paths, s.users.identity_headers(&self.fill.headers));
        }
    }
}

/// Starts a streaming fill: the client's response (headers now, bytes as they come), with
/// the rest of the body read by a task of its own that stores the entry at the end.
pub(super) fn start<ResB: PassBody>(
    later: Later,
    status: CacheStatus,
    prefix: VecDeque<Bytes>,
    body: Pin<Box<ResB>>,
) -> Response<CacheBody<ResB>> {
    let s = later.settings.clone();
    let code = later.response.0;
    let response = &later.response.1;
    let mut headers = admit::stored_headers(response, s.rule(later.rule), &s, true, true);
    // The upstream's length, only if it is the length of the bytes that follow.
    let held: u64 = prefix.iter().map(|b| b.len() as u64).sum();
    let exact = body.size_hint().exact().map(|rest| rest + held);
    if let Some(len) = response.get(CONTENT_LENGTH) {
        headers.insert(CONTENT_LENGTH, len.clone());
        respond::keep_length_if(&mut headers, exact);
    }
    headers.insert(
        AGE,
        HeaderValue::from(later.freshness.initial_age_ms / 1000),
    );
    let fill = FillStream::new(code, headers.clone(), audience(&later.fill, response));
    for chunk in prefix {
        fill.push(chunk);
    }
    if let Some(leader) = &later.leader {
        leader.publish(fill.clone());
    }
    let reader = fill_body(fill.reader(), &later.info);
    // The fields that are this request's own (a cookie, what a qualified `private` names)
    // reach it, and only it.
    let own = admit::own_fields(
        response,
        &admit::personal_fields(response, &s, s.rule(later.rule)),
    );
    respond::append_all(&mut headers, &own);
    tokio::spawn(drive(body, fill, later));
    stamp(&mut headers, &status, &s);
    let mut resp = Response::new(reader);
    *resp.status_mut() = code;
    *resp.headers_mut() = headers;
    resp
}

/// The body a client gets from a fill as it arrives: as it comes, or — for an LLM chat
/// stream whose client did not ask for the usage chunk — without it.
pub(super) fn fill_body<B>(reader: FillReader, info: &ReqInfo) -> CacheBody<B> {
    match info.llm {
        Some((Provider::OpenAiChat, ask)) if ask.shape == Shape::Stream && !ask.include_usage => {
            CacheBody::fill_without_usage(reader)
        }
        _ => CacheBody::fill(reader),
    }
}

/// Who may follow the fill: requests that the stored answer would serve (the same `Vary`
/// variant as the request that caused it).
fn audience(fill: &FillRequest, response: &HeaderMap) -> Audience {
    let names = vary_names(response, false);
    if names.is_empty() {
        return Audience::Everyone;
    }
    let variant = fill.key.variant(&names, &fill.headers);
    Audience::Variant(names, variant)
}

/// Reads the body into the fill; stores the entry if the body completed within the bound.
async fn drive<ResB: PassBody>(mut body: Pin<Box<ResB>>, fill: Arc<FillStream>, later: Later) {
    let mut keeping = true;
    loop {
        if !std::future::poll_fn(|cx| fill.poll_room(cx)).await {
            // Not kept and nobody reading: the rest is not wanted.
            return;
        }
        match body.frame().await {
            None => break,
            Some(Err(_)) => {
                fill.fail();
                later
                    .settings
                    .counters(later.rule)
                    .record_not_stored(NoCacheReason::UpstreamBody);
                return;
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    fill.push(data);
                    if keeping && fill.received() > later.limit {
                        // Too large to store: everyone on it keeps receiving it all.
                        fill.stop_keeping();
                        keeping = false;
                    }
                }
            }
        }
    }
    // Stored before the readers see the end: an answered fill is in every tier (on disk,
    // with write-through).
    if let Some(bytes) = fill.body().filter(|_| keeping) {
        later.store(bytes).await;
    }
    fill.finish();
}
