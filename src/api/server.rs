//! Serving the API: TCP accept loop, TLS handshake under a timeout, HTTP/1.1 + HTTP/2 (hyper-util)
//! with a header-read timeout, a cap on open connections, a request id and an access-log line per
//! request (path only: query strings may hold search terms such as phone numbers), and graceful
//! shutdown that lets in-flight requests finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;
use tracing::Instrument;

use super::metrics::Metrics;
use super::ClientAddr;

#[derive(Clone)]
pub struct ServeOptions {
    pub tls: Option<TlsAcceptor>,
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub metrics: Arc<Metrics>,
}

fn request_id() -> String {
    let b: [u8; 8] = rand::random();
    hex::encode(b)
}

/// Serve `filter` on `listener` until `shutdown` resolves; then wait (bounded) for open requests.
pub async fn serve<F, R>(listener: TcpListener, filter: F, opts: ServeOptions, shutdown: impl Future<Output = ()>)
where
    F: warp::Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: warp::Reply,
    F::Future: Send,
{
    let svc = warp::service(filter);
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(opts.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            opts.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (svc, opts2, watcher) = (svc.clone(), opts.clone(), graceful.watcher());
        let req_metrics = opts.metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let hyper_svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                let mut svc = svc.clone();
                let metrics = req_metrics.clone();
                let id = request_id();
                req.extensions_mut().insert(ClientAddr(peer));
                let (method, path) = (req.method().clone(), req.uri().path().to_string());
                let span = tracing::info_span!("request", id = %id, method = %method, path = %path);
                async move {
                    let start = Instant::now();
                    let mut resp = match svc.call(req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    let status = resp.status().as_u16();
                    let elapsed = start.elapsed();
                    metrics.observe(method.as_str(), status, elapsed);
                    tracing::info!(status, ms = elapsed.as_secs_f64() * 1000.0, "served");
                    let h = resp.headers_mut();
                    if let Ok(v) = http::HeaderValue::from_str(&id) {
                        h.insert("x-request-id", v);
                    }
                    h.insert("x-content-type-options", http::HeaderValue::from_static("nosniff"));
                    h.entry(http::header::CACHE_CONTROL).or_insert(http::HeaderValue::from_static("no-store"));
                    Ok::<_, Infallible>(resp)
                }
                .instrument(span)
            });
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(opts2.header_read_timeout);
            match &opts2.tls {
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(opts2.handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            opts2.metrics.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            opts2.metrics.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(peer = %peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), hyper_svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), hyper_svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    // In-flight requests get a bounded time to finish; idle keep-alive connections close now.
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections did not finish within 30 s of shutdown");
    }
}

/// Bind helper that names the address in its error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}
