//! The connection loop and the shutdown. The address is bound before the model loads
//! (/health answers at once, /ready once the model is loaded). Connections speak
//! HTTP/1.1 with a header-read timeout, which also closes idle keep-alive connections.
//! On SIGTERM or SIGINT: /ready turns false and new requests get 503 while the accepted
//! ones are answered (within the drain timeout); then connections close, the inference
//! thread finishes, and `run` returns.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use super::{App, Loaded, Settings};
use crate::logging;

/// Threads that tokenize requests and extract files' text at once; more wait in turn.
const BLOCKING_THREADS: usize = 8;

/// Serves until SIGTERM or SIGINT. `load` runs on the inference thread; a model that
/// fails to load ends the server with its error. Returns whether every accepted
/// request was answered.
pub fn run(settings: Settings, load: impl FnOnce() -> Result<Loaded> + Send + 'static) -> Result<bool> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // The HTTP side only parses, queues and answers; tokenizing and extracting run
        // on the blocking pool, the encoder on its own thread. Tokenizing runs on the
        // rayon pool anyway: more blocking threads than a few would only wait there, each
        // with its own allocator heap (hundreds of MB under overload, measured).
        .worker_threads(2)
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("docclass-http")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(settings, load))
}

async fn serve(settings: Settings, load: impl FnOnce() -> Result<Loaded> + Send + 'static) -> Result<bool> {
    let listener =
        TcpListener::bind(settings.listen).await.with_context(|| format!("cannot listen on {}", settings.listen))?;
    let address = listener.local_addr()?;
    let app = Arc::new(App::new(settings));
    logging::info(
        "listening",
        &format!("listening on http://{address} (loading the model)"),
        json!({"address": address.to_string()}),
    );

    let (loaded_sender, mut loaded) = oneshot::channel();
    let worker_app = app.clone();
    let worker = std::thread::Builder::new()
        .name("docclass-inference".into())
        .spawn(move || super::worker::run(worker_app, load, loaded_sender))
        .context("starting the inference thread")?;

    let (stop_sender, stop) = watch::channel(false);
    let graceful = GracefulShutdown::new();
    let accepting = tokio::spawn(accept(listener, app.clone(), stop, graceful));

    let mut signal = Box::pin(shutdown_signal());
    let mut loading = true;
    loop {
        tokio::select! {
            outcome = &mut loaded, if loading => match outcome {
                Ok(Ok(())) => {
                    loading = false;
                    logging::info("ready", &format!("ready on http://{address}"), json!({"address": address.to_string()}));
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => anyhow::bail!("the inference thread stopped while loading the model"),
            },
            name = &mut signal => {
                logging::info("draining", &format!("{name}: draining (new requests get 503)"), json!({"signal": name}));
                break;
            }
        }
    }

    app.draining.store(true, Ordering::SeqCst);
    let drained = wait_for_in_flight(&app, app.settings.drain_timeout).await;
    stop_sender.send(true).ok();
    let graceful = accepting.await.context("the connection loop")?;
    // Connections now only hold answered requests: they close as soon as the answers
    // are written (a client that does not read them is not waited for long).
    tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await.ok();
    app.queue.close();
    tokio::task::spawn_blocking(move || worker.join()).await.ok();
    let unanswered = app.in_flight.load(Ordering::SeqCst);
    if drained {
        logging::info("stopped", "every accepted request was answered; stopped", json!({}));
    } else {
        logging::warning(
            "drain_timeout",
            &format!("{unanswered} accepted requests were still unanswered after --drain-timeout; stopped"),
            json!({"unanswered": unanswered}),
        );
    }
    Ok(drained)
}

/// Accepts connections until `stop`, each served under the header-read timeout and
/// watched by `graceful`, which the caller then shuts down.
async fn accept(
    listener: TcpListener,
    app: Arc<App>,
    mut stop: watch::Receiver<bool>,
    graceful: GracefulShutdown,
) -> GracefulShutdown {
    let guard = axum::middleware::from_fn_with_state(app.clone(), super::guard::guard);
    let router = super::api::routes().layer(guard).with_state(app.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(app.settings.header_timeout);
    let mut stopping = false;
    loop {
        let connection = if stopping {
            // Connections the kernel completed before the listener closes are served too
            // (with 503, the server is draining) rather than reset with the listener.
            match tokio::time::timeout(Duration::ZERO, listener.accept()).await {
                Ok(connection) => connection,
                Err(_) => return graceful,
            }
        } else {
            tokio::select! {
                connection = listener.accept() => connection,
                _ = stop.changed() => {
                    stopping = true;
                    continue;
                }
            }
        };
        let stream = match connection {
            Ok((stream, _)) => {
                // Answers go out as soon as they are written, not after the client's
                // delayed acknowledgement (40 ms on Linux).
                stream.set_nodelay(true).ok();
                stream
            }
            Err(e) => {
                // Out of file descriptors, say: not a reason to stop serving the others.
                logging::warning("accept_failed", &format!("cannot accept a connection: {e}"), json!({}));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |request| tower::ServiceExt::oneshot(router.clone(), request));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that hangs up or times out ends only its own connection.
            connection.await.ok();
        });
    }
}

/// Until no accepted request is left, or `limit` has passed: whether none is left.
async fn wait_for_in_flight(app: &App, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while app.in_flight.load(Ordering::SeqCst) > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Resolves on SIGTERM (a platform stopping the pod) or SIGINT (Ctrl-C), with its name.
async fn shutdown_signal() -> &'static str {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
