//! What one peer may hold of the API server: at most [`MAX_CONNECTIONS`] connections in all
//! and [`MAX_CONNECTIONS_PER_PEER`] from one address, each closed after [`IDLE_TIMEOUT`]
//! without a byte moved while no request of it is being answered. A caller needs no token to
//! open a connection, so these bounds are what keeps an unauthenticated peer from using up the
//! server's descriptors.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections served at once (a worker holds a few).
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections of one peer address: half of all, so that no single peer takes every place
/// (workers behind one NAT share an address, hence not less).
pub const MAX_CONNECTIONS_PER_PEER: usize = 512;
/// A connection that moved no byte for this long, with no request being answered, is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The connections held, in all and by peer.
#[derive(Debug)]
pub struct ConnLimits {
    total: Arc<Semaphore>,
    by_peer: Mutex<HashMap<IpAddr, usize>>,
    per_peer: usize,
}

/// A connection's place in the limits, given back when dropped.
#[derive(Debug)]
pub struct ConnPermit {
    _total: OwnedSemaphorePermit,
    limits: Arc<ConnLimits>,
    peer: IpAddr,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut by_peer = self
            .limits
            .by_peer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                by_peer.remove(&self.peer);
            }
        }
    }
}

impl ConnLimits {
    /// `total` connections in all, `per_peer` from one address.
    pub fn new(total: usize, per_peer: usize) -> Arc<Self> {
        Arc::new(ConnLimits {
            total: Arc::new(Semaphore::new(total)),
            by_peer: Mutex::new(HashMap::new()),
            per_peer,
        })
    }

    /// A place for a new connection of `peer`, if there is one.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<ConnPermit> {
        let total = self.total.clone().try_acquire_owned().ok()?;
        let mut by_peer = self.by_peer.lock().unwrap_or_else(|e| e.into_inner());
        let n = by_peer.entry(peer).or_insert(0);
        if *n >= self.per_peer {
            return None;
        }
        *n += 1;
        Some(ConnPermit {
            _total: total,
            limits: self.clone(),
            peer,
        })
    }
}

/// When a connection last moved a byte, and how many of its requests are being answered.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether the connection moved nothing for `limit` and answers no request.
    pub fn idle_for(&self, limit: Duration) -> bool {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.origin.elapsed().saturating_sub(last) >= limit
    }

    /// Counts a request as being answered until the guard drops.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request being answered ([`Activity::request`]).
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's stream, recording in its [`Activity`] each byte moved.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    /// `inner`, watched by `activity`.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        activity.touch();
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let out = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(out, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        out
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let out = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(out, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        out
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Waits for `task` (a connection) to end, aborting it once it has been idle for `limit`.
pub async fn close_when_idle(
    mut task: tokio::task::JoinHandle<impl Send + 'static>,
    activity: Arc<Activity>,
    limit: Duration,
    permit: ConnPermit,
) {
    let check = (limit / 4).max(Duration::from_millis(10));
    loop {
        tokio::select! {
            // The place is given back as soon as the connection ends.
            _ = &mut task => break,
            _ = tokio::time::sleep(check) => {
                if activity.idle_for(limit) {
                    tracing::debug!(peer = %permit.peer, "closing an idle connection");
                    task.abort();
                    break;
                }
            }
        }
    }
    drop(permit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_bounded_in_all_and_by_peer() {
        let limits = ConnLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let a1 = limits.admit(a).expect("a1");
        let _a2 = limits.admit(a).expect("a2");
        assert!(limits.admit(a).is_none(), "two per peer");
        let _b1 = limits.admit(b).expect("b1");
        assert!(limits.admit(b).is_none(), "three in all");
        drop(a1);
        assert!(limits.admit(a).is_some(), "a place came back");
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_but_not_one_answering_a_request() {
        let limits = ConnLimits::new(4, 4);
        let limit = Duration::from_millis(100);
        let activity = Arc::new(Activity::default());
        let busy = activity.request();
        let task = tokio::spawn(std::future::pending::<()>());
        let abort = task.abort_handle();
        let watcher = tokio::spawn(close_when_idle(
            task,
            activity.clone(),
            limit,
            limits
                .admit("10.0.0.1".parse().expect("ip"))
                .expect("permit"),
        ));
        tokio::time::sleep(limit * 3).await;
        assert!(!abort.is_finished(), "a request is being answered");
        drop(busy);
        tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .expect("closed once idle")
            .expect("watcher");
        assert!(abort.is_finished());
        assert!(limits.admit("10.0.0.1".parse().expect("ip")).is_some());
    }

    #[tokio::test]
    async fn a_connection_that_ends_gives_its_place_back_at_once() {
        let limits = ConnLimits::new(1, 1);
        let peer: IpAddr = "10.0.0.1".parse().expect("ip");
        let task = tokio::spawn(async {});
        let watcher = tokio::spawn(close_when_idle(
            task,
            Arc::new(Activity::default()),
            Duration::from_secs(3600),
            limits.admit(peer).expect("permit"),
        ));
        tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .expect("the watcher ends with the connection, not at its next check")
            .expect("watcher");
        assert!(limits.admit(peer).is_some());
    }
}
