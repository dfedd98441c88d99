//! The layer mounted inside an axum Router, served by hyper on a loopback port.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn cache_layer_inside_an_axum_router() {
    let calls = Arc::new(AtomicU64::new(0));
    let c2 = calls.clone();
    let config = larder::Config::parse_str(
        "inline.toml",
        r#"
        [[rule]]
        name = "report"
        path = "/reports/{id}"
        ttl = "60s"
        cache_control = "public, max-age=60"
        tags = ["report:{id}"]
        "#,
    )
    .unwrap();
    let layer = larder::CacheLayer::from_config(&config).unwrap();
    let cache = layer.cache().clone();
    let app = Router::new()
        .route(
            "/reports/{id}",
            get(
                move |axum::extract::Path(id): axum::extract::Path<String>| {
                    let n = c2.fetch_add(1, Ordering::SeqCst) + 1;
                    async move { format!("report {id} (computed {n} times)") }
                },
            ),
        )
        .route("/uncached", get(|| async { "fresh every time" }))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let url = |p: &str| format!("http://{addr}{p}");
    let a = get_url(&url("/reports/1")).await;
    let b = get_url(&url("/reports/1")).await;
    assert_eq!(a.text(), "report 1 (computed 1 times)");
    assert_eq!((a.x_cache(), b.x_cache()), ("MISS", "HIT"));
    assert_eq!(b.text(), a.text());
    assert_eq!(b.header("cache-control"), "public, max-age=60");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    assert_eq!(cache.invalidate_tags(&["report:1"]).await, 1);
    assert_eq!(
        get_url(&url("/reports/1")).await.text(),
        "report 1 (computed 2 times)"
    );

    // No rule and no freshness from the handler: a plain shared cache stores nothing.
    let u = get_url(&url("/uncached")).await;
    assert_eq!(
        u.header("cache-status"),
        "larder; fwd=miss; detail=no-freshness"
    );
}

async fn get_url(url: &str) -> Got {
    send(client().get(url)).await
}
