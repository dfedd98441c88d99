//! The Admit and Store phases: whether the upstream's answer may be stored (a `304`
//! refreshing the stale entry, an uncacheable answer handed on as it streams), reading it
//! whole or streaming it while it is kept, and writing the entries to every tier.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tower::Service;

use super::admit;
use super::miss::{Fetched, Miss, Phase, StaleEntry};
use super::respond::{append_all, error_response, pass_on, respond, stamp};
use super::revalidate;
use super::stream::{self, drain_ready, Drained};
use crate::body::{buffer, Buffered, CacheBody, Inner, PassBody};
use crate::policy::{now_ms, Freshness};
use crate::status::{CacheStatus, Fwd, NoCacheReason};
use crate::store::FillTokens;

/// What an admitted answer carries besides its body, while the body is read.
struct Admitting {
    response: http::response::Parts,
    fwd: Fwd,
    tokens: FillTokens,
    response_time: u64,
    freshness: Freshness,
    /// The most the entry may hold.
    limit: usize,
}

impl<S, B, ResB> Miss<S, B>
where
    S: Inner<B, ResB> + Service<Request<CacheBody<B>>, Response = Response<ResB>>,
    B: PassBody,
    ResB: PassBody,
{
    /// Whether and for how long the answer may be stored.
    pub(super) fn decision(
        &self,
        status: StatusCode,
        response: &http::HeaderMap,
        (request_time, response_time): (u64, u64),
    ) -> Result<Freshness, NoCacheReason> {
        if self.dry_hit {
            return Err(NoCacheReason::DryRun);
        }
        let s = &*self.ctx.settings;
        let fill = self
            .fill
            .as_ref()
            .expect("fill is set before going upstream");
        admit::decide(
            s,
            s.rule(self.plan.rule),
            fill,
            &self.plan.policy,
            status,
            response,
            request_time,
            response_time,
        )
    }

    /// Admit: a `304` refreshes the stale entry (RFC 9111 §4.3.4); an answer that may not
    /// be stored, or is too large, is handed on as it streams; a storable one is read
    /// whole, or streamed to its client while it is kept.
    pub(super) async fn admit(&mut self, f: Fetched<ResB>) -> Phase<ResB> {
        if f.conditional && f.response.status == StatusCode::NOT_MODIFIED {
            if let Some(stale) = f.stale.clone() {
                return self.refresh(&stale, f).await;
            }
        }
        if self
            .fill
            .as_ref()
            .is_some_and(|fill| fill.method == http::Method::HEAD)
        {
            return self.head_answered(f).await;
        }
        if f.response.status == StatusCode::PARTIAL_CONTENT {
            return self.part_admit(f).await;
        }
        let times = (f.request_time, f.response_time);
        let freshness = match self.decision(f.response.status, &f.response.headers, times) {
            Ok(freshness) => freshness,
            Err(reason) => {
                return self.hand_on(f.response, CacheBody::stream(f.body), f.fwd, reason)
            }
        };
        let s = self.ctx.settings.clone();
        let limit = self.keep_limit();
        if f.body.size_hint().lower() > limit as u64 {
            return self.too_large(f);
        }
        let Fetched {
            response,
            body,
            fwd,
            tokens,
            response_time,
            ..
        } = f;
        let a = Admitting {
            response,
            fwd,
            tokens,
            response_time,
            freshness,
            limit,
        };
        let (a, bytes) = match self.read(body, a).await {
            Ok(read) => read,
            Err(answered) => return answered,
        };
        if let Err(reason) =
            admit::complete_answer(s.rule(self.plan.rule), &a.response.headers, &bytes)
        {
            return self.hand_on(a.response, CacheBody::full(bytes), a.fwd, reason);
        }
        let kept = match admit::keep_body(&s, &a.response.headers, bytes) {
            Ok(kept) => kept,
            Err(bytes) => {
                let body = CacheBody::full(bytes);
                return self.hand_on(a.response, body, a.fwd, NoCacheReason::UpstreamBody);
            }
        };
        let fill = self
            .fill
            .as_ref()
            .expect("fill is set before going upstream");
        let admitted = admit::build(
            &s,
            s.rule(self.plan.rule),
            fill,
            (a.response.status, &a.response.headers),
            &kept,
            a.freshness,
            a.response_time,
        );
        Phase::Store(admitted, a.fwd, a.tokens)
    }

    /// An answer too large to keep: handed on, or, for one range asked for, asked again
    /// for just that range, to be kept as a part.
    fn too_large(&mut self, f: Fetched<ResB>) -> Phase<ResB> {
        if self.ranged().is_some() && !self.ask_range && f.stale.is_none() {
            self.ask_range = true;
            return Phase::Fetch(None, f.fwd, f.tokens);
        }
        let body = CacheBody::stream(f.body);
        self.hand_on(f.response, body, f.fwd, NoCacheReason::TooLarge)
    }

    /// Reads an admitted answer's body: whole (within the limit), or — for a client that
    /// can take it as it comes, when it is not all there yet — streamed while it is kept
    /// (the answer is then given: `Err`). Too large or failed, it is answered here too.
    async fn read(&mut self, body: ResB, a: Admitting) -> Result<(Admitting, Bytes), Phase<ResB>> {
        let read = if self.streamable() {
            // What is ready now decides: complete answers take the buffered path.
            let mut body = Box::pin(body);
            match drain_ready(&mut body, a.limit) {
                Drained::Complete(b) => Buffered::Complete(b),
                Drained::TooLarge(prefix) => Buffered::TooLarge(CacheBody::prefixed(prefix, body)),
                Drained::Failed => Buffered::TimedOut,
                Drained::Pending(prefix) => return Err(self.stream(a, prefix, body)),
            }
        } else {
            buffer(body, a.limit).await
        };
        match read {
            Buffered::Complete(b) => Ok((a, b)),
            Buffered::TooLarge(rest) => {
                Err(self.hand_on(a.response, rest, a.fwd, NoCacheReason::TooLarge))
            }
            Buffered::Failed(_) | Buffered::TimedOut => Err(self.body_failed(a.fwd)),
        }
    }

    /// Streams an admitted answer to its client while its bytes are kept; the entry is
    /// stored when the body completes (see [`stream`]).
    fn stream(
        &mut self,
        a: Admitting,
        prefix: VecDeque<Bytes>,
        body: Pin<Box<ResB>>,
    ) -> Phase<ResB> {
        let status = CacheStatus::forwarded(a.fwd).stored(true);
        self.answering().record(&status);
        let later = stream::Later {
            cache: self.ctx.cache.clone(),
            settings: self.ctx.settings.clone(),
            rule: self.plan.rule,
            fill: self.fill.take().expect("fill is set before going upstream"),
            response: (a.response.status, a.response.headers),
            freshness: a.freshness,
            tokens: a.tokens,
            response_time: a.response_time,
            limit: a.limit,
            leader: self._leader.take(),
            _lease: self._lease.take(),
            _slot: self.slot.take(),
            info: self.plan.info.clone(),
        };
        Phase::Respond(stream::start(later, status, prefix, body))
    }

    /// The upstream's body failed while it was read to be kept: a `502`, counted.
    pub(super) fn body_failed(&self, fwd: Fwd) -> Phase<ResB> {
        let status = self.uncached(fwd, NoCacheReason::UpstreamBody);
        let mut resp = error_response(
            StatusCode::BAD_GATEWAY,
            "the upstream response body failed\n",
        );
        stamp(resp.headers_mut(), &status, &self.ctx.settings);
        Phase::Respond(resp)
    }

    /// The most a kept answer (or part) may hold: `max_body`, within memory's entry bound.
    pub(super) fn keep_limit(&self) -> usize {
        let max_body = self.ctx.settings.config.proxy.max_body as usize;
        max_body.min(self.ctx.cache.memory_store().max_entry())
    }

    /// Hands the upstream's answer on uncached, counted with its reason.
    pub(super) fn hand_on(
        &self,
        response: http::response::Parts,
        body: CacheBody<ResB>,
        fwd: Fwd,
        reason: NoCacheReason,
    ) -> Phase<ResB> {
        let status = self.uncached(fwd, reason);
        let s = &self.ctx.settings;
        Phase::Respond(pass_on(response, body, self.plan.info.head, status, s))
    }

    /// Counts an answer handed on uncached, and says why.
    pub(super) fn uncached(&self, fwd: Fwd, reason: NoCacheReason) -> CacheStatus {
        let status = CacheStatus::forwarded(fwd).detail(reason);
        self.answering().record(&status);
        status
    }

    /// The answer to a HEAD sent for a stale GET entry (RFC 9111 §4.3.5): a `200` that
    /// still describes the entry refreshes it like a `304`; one whose validators or length
    /// differ drops it; anything else is handed on. A HEAD answer is never stored as the
    /// GET entry.
    async fn head_answered(&mut self, f: Fetched<ResB>) -> Phase<ResB> {
        let Some(stale) = f.stale.clone() else {
            let body = CacheBody::stream(f.body);
            return self.hand_on(f.response, body, f.fwd, NoCacheReason::Method);
        };
        if f.response.status == StatusCode::OK
            && revalidate::head_matches(&stale.0, &f.response.headers)
        {
            return self.refresh(&stale, f).await;
        }
        if f.response.status == StatusCode::OK {
            self.ctx.cache.tiers().remove(&stale.1);
        }
        let body = CacheBody::stream(f.body);
        self.hand_on(f.response, body, f.fwd, NoCacheReason::Method)
    }

    /// A `304` for a revalidated entry (or a `200` to a HEAD for it): its headers and
    /// freshness refreshed and stored, or (when the merged answer may no longer be stored)
    /// served once and dropped.
    async fn refresh(&mut self, (entry, key): &StaleEntry, f: Fetched<ResB>) -> Phase<ResB> {
        let Fetched {
            response,
            tokens,
            request_time,
            response_time,
            ..
        } = f;
        let s = self.ctx.settings.clone();
        let rule = s.rule(self.plan.rule);
        let merged = revalidate::merge_304(entry, &response.headers);
        let headers =
            admit::stored_headers(&merged, rule, &s, entry.is_gzip(), entry.other_encoding());
        let status = CacheStatus::revalidated(response.status.as_u16());
        let decision = self.decision(entry.status(), &merged, (request_time, response_time));
        let cache = self.ctx.cache.clone();
        let (refreshed, status) = match decision {
            Ok(freshness) => {
                let refreshed = Arc::new(entry.refreshed(&headers, freshness, response_time));
                let stored = cache
                    .tiers()
                    .store(
                        &[(*key, refreshed.clone())],
                        &tokens,
                        (self.plan.tiers, self.plan.write),
                    )
                    .await;
                (refreshed, status.stored(stored))
            }
            Err(reason) => {
                cache.tiers().remove(key);
                let once = Arc::new(entry.refreshed(&headers, Freshness::default(), response_time));
                (once, status.detail(reason))
            }
        };
        Phase::Respond(self.answering().entry((&refreshed, key), status, now_ms()))
    }

    /// Store: the entries written to every tier the fill may write; then the related
    /// paths prefetched, and the answer served from the entry.
    pub(super) async fn store(
        &mut self,
        admitted: admit::Admitted,
        fwd: Fwd,
        tokens: FillTokens,
    ) -> Phase<ResB> {
        let stored = self
            .ctx
            .cache
            .tiers()
            .store(&admitted.store, &tokens, (self.plan.tiers, self.plan.write))
            .await;
        let mut status = CacheStatus::forwarded(fwd).stored(stored);
        if !stored {
            status = status.detail(NoCacheReason::Invalidated);
        }
        self.answering().record(&status);
        let s = &*self.ctx.settings;
        // Related paths the next request will likely want (a rule's `prefetch`).
        let fill = self
            .fill
            .as_ref()
            .expect("fill is set before going upstream");
        let prefetch = s
            .rule(self.plan.rule)
            .filter(|r| stored && !self.plan.background && !r.prefetch.is_empty());
        if let Some(r) = prefetch {
            let caps = r.pattern.captures(&fill.path).unwrap_or_default();
            let paths = r.prefetch.iter().map(|t| t.render(&caps)).collect();
            self.ctx
                .cache
                .prefetch(paths, s.users.identity_headers(&fill.headers));
        }
        let mut resp = respond(&admitted.entry, &self.plan.info, status, s, now_ms());
        // What is this request's own (a cookie, a field a qualified `private` names)
        // reaches it with the answer, never from the entry.
        append_all(resp.headers_mut(), &admitted.own);
        Phase::Respond(resp)
    }
}
