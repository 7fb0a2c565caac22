//! The admin HTTP surface: `POST /rekey` only with the configured bearer token, never from a
//! browser form, and the metrics server exposes nothing but `/metrics`, `/healthz`, `/readyz`.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use iotrelay_sidecar::admin::{Command, Published, Shared, metrics_router, router};
use tokio::sync::mpsc;
use tower::ServiceExt as _;

const TOKEN: &str = "s3cret-rekey-token";

/// A `Shared` whose owner task accepts every rekey; returns it and a counter of rekeys started.
fn shared(token_file: Option<std::path::PathBuf>) -> (Arc<Shared>, Arc<Mutex<u32>>) {
    let (tx, mut rx) = mpsc::channel(4);
    let started = Arc::new(Mutex::new(0u32));
    let s = started.clone();
    tokio::spawn(async move {
        while let Some(Command::Rekey { reply, .. }) = rx.recv().await {
            *s.lock().unwrap() += 1;
            let _ = reply.send(Ok(()));
        }
    });
    (
        Arc::new(Shared { published: Mutex::new(Published::default()), commands: tx, rekey_token_file: token_file }),
        started,
    )
}

fn token_file() -> (tempdir::Dir, std::path::PathBuf) {
    let d = tempdir::Dir::new();
    let p = d.0.join("token");
    std::fs::write(&p, format!("{TOKEN}\n")).unwrap();
    (d, p)
}

/// A scratch directory removed on drop (std only).
mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir().join(format!(
                "iotrelay-admin-test-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn rekey(app: axum::Router, headers: &[(&str, &str)]) -> StatusCode {
    let mut b = Request::post("/rekey?tunnel=tunnel1&sa=child");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    app.oneshot(b.body(Body::empty()).unwrap()).await.unwrap().status()
}

#[tokio::test]
async fn rekey_is_disabled_without_a_token_file() {
    let (s, started) = shared(None);
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(rekey(router(s), &[("authorization", &bearer)]).await, StatusCode::NOT_FOUND);
    assert_eq!(*started.lock().unwrap(), 0);
}

#[tokio::test]
async fn rekey_needs_the_bearer_token() {
    let (_d, path) = token_file();
    let (s, started) = shared(Some(path));
    let app = router(s);
    assert_eq!(rekey(app.clone(), &[]).await, StatusCode::UNAUTHORIZED);
    assert_eq!(rekey(app.clone(), &[("authorization", "Bearer wrong")]).await, StatusCode::FORBIDDEN);
    assert_eq!(rekey(app.clone(), &[("authorization", "Bearer ")]).await, StatusCode::FORBIDDEN);
    assert_eq!(rekey(app.clone(), &[("authorization", TOKEN)]).await, StatusCode::FORBIDDEN);
    let long = format!("Bearer {TOKEN}x");
    assert_eq!(rekey(app.clone(), &[("authorization", &long)]).await, StatusCode::FORBIDDEN);
    assert_eq!(*started.lock().unwrap(), 0, "a refused request must not start a rekey");
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(rekey(app.clone(), &[("authorization", &bearer)]).await, StatusCode::ACCEPTED);
    assert_eq!(*started.lock().unwrap(), 1);
}

#[tokio::test]
async fn rekey_refuses_browser_cross_site_requests() {
    let (_d, path) = token_file();
    let (s, started) = shared(Some(path));
    let app = router(s);
    let bearer = format!("Bearer {TOKEN}");
    for ct in ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain;charset=UTF-8"] {
        let got = rekey(app.clone(), &[("authorization", &bearer), ("content-type", ct)]).await;
        assert_eq!(got, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}");
    }
    let got = rekey(app.clone(), &[("authorization", &bearer), ("sec-fetch-site", "cross-site")]).await;
    assert_eq!(got, StatusCode::FORBIDDEN);
    assert_eq!(*started.lock().unwrap(), 0);
}

#[tokio::test]
async fn metrics_server_serves_only_metrics_and_probes() {
    let (_d, path) = token_file();
    let (s, started) = shared(Some(path));
    let app = metrics_router(s);
    let get = |p: &'static str| Request::get(p).body(Body::empty()).unwrap();
    let m = app.clone().oneshot(get("/metrics")).await.unwrap();
    assert_eq!(m.status(), StatusCode::OK);
    let body = axum::body::to_bytes(m.into_body(), 1 << 20).await.unwrap();
    let body = String::from_utf8_lossy(&body);
    // Every ingress lane's bound and drop counter is exported, also before any traffic.
    for lane in ["established", "forward", "handshake"] {
        assert!(body.contains(&format!("iotrelay_ingress_budget_bytes{{lane=\"{lane}\"}} 0")), "{body}");
        assert!(body.contains(&format!("iotrelay_ingress_drops_total{{lane=\"{lane}\"}} 0")), "{body}");
    }
    assert!(body.contains("iotrelay_ingress_not_peer_drops_total 0"), "{body}");
    assert_eq!(app.clone().oneshot(get("/healthz")).await.unwrap().status(), StatusCode::OK);
    // Not ready (no tunnel), but answered.
    assert_eq!(app.clone().oneshot(get("/readyz")).await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.clone().oneshot(get("/status")).await.unwrap().status(), StatusCode::NOT_FOUND);
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(rekey(app, &[("authorization", &bearer)]).await, StatusCode::NOT_FOUND);
    assert_eq!(*started.lock().unwrap(), 0);
}
