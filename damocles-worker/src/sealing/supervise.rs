//! Keeps a thread's body running: a body that panics is logged with the thread's index and
//! plan, counted (`damocles_worker_thread_restarts_total`, the `restarts` of `worker list`,
//! the panic as its last error) and started again after a backoff (1 s doubling to 60 s; back
//! to 1 s after a run of a minute), until the daemon stops. A sealing thread resumes its
//! sector from the record in its sealing store.
//!
//! The daemon's async loops (the WorkerPing loop) are kept running the same way by
//! [`spawn_restarting`], counted in `damocles_worker_task_restarts_total`.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::sealing::control::ThreadControl;

/// The first pause before a restart.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A run this long resets the backoff.
const STABLE_RUN: Duration = Duration::from_secs(60);

/// Runs `run(first)`, and after each panic `run(remake()?)`, until `run` returns or the
/// daemon stops. A `remake` that fails is retried with the same backoff.
pub fn run_restarting<T>(
    ctrl: &ThreadControl,
    first: T,
    remake: impl Fn() -> anyhow::Result<T>,
    run: impl Fn(T),
) {
    let mut next = Some(first);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let body = match next.take() {
            Some(body) => body,
            None => match remake() {
                Ok(body) => body,
                Err(e) => {
                    let text = format!("{e:#}");
                    tracing::error!(thread = ctrl.index(), error = %text, retry_in = ?backoff, "the thread cannot start again; retrying");
                    ctrl.record_restart(text);
                    if ctrl.sleep_until_stop(backoff).is_err() {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let started = Instant::now();
        let Err(panic) = catch_unwind(AssertUnwindSafe(|| run(body))) else {
            return;
        };
        if ctrl.is_stopped() {
            return;
        }
        if started.elapsed() >= STABLE_RUN {
            backoff = FIRST_BACKOFF;
        }
        let message = vc_processors::protocol::panic_message(&*panic);
        let plan = ctrl.info().plan;
        tracing::error!(thread = ctrl.index(), plan = %plan, panic = %message, retry_in = ?backoff, "thread panicked; restarting it");
        metrics::counter!("damocles_worker_thread_restarts_total", "thread" => ctrl.index().to_string())
            .increment(1);
        ctrl.record_restart(format!("panic: {message}"));
        if ctrl.sleep_until_stop(backoff).is_err() {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Aborts the task it holds when dropped, so aborting the loop's task aborts its current run.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Spawns the loop `make` builds on `rt`, and builds and spawns it again after it panics
/// (logged with `task`, counted, after the threads' backoff). It ends when a run returns;
/// aborting the returned handle aborts the loop and its current run.
pub fn spawn_restarting<F, Fut>(
    rt: &tokio::runtime::Handle,
    task: &'static str,
    make: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    rt.spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = Instant::now();
            let mut run = AbortOnDrop(tokio::spawn(make()));
            let outcome = (&mut run.0).await;
            match outcome {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    let message = vc_processors::protocol::panic_message(&*e.into_panic());
                    if started.elapsed() >= STABLE_RUN {
                        backoff = FIRST_BACKOFF;
                    }
                    tracing::error!(task, panic = %message, retry_in = ?backoff, "background loop panicked; restarting it");
                    metrics::counter!("damocles_worker_task_restarts_total", "task" => task)
                        .increment(1);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(_) => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn a_panicking_body_is_made_again_and_the_restart_is_shown() {
        let ctrl = ThreadControl::new(3, Some("/s".into()), "sealer");
        let runs = AtomicU32::new(0);
        let remade = AtomicU32::new(0);
        run_restarting(
            &ctrl,
            "first",
            || {
                remade.fetch_add(1, Ordering::SeqCst);
                Ok("again")
            },
            |body| {
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    assert_eq!(body, "first");
                    panic!("planner bug");
                }
                assert_eq!(body, "again");
            },
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(remade.load(Ordering::SeqCst), 1);
        let info = ctrl.info();
        assert_eq!(info.restarts, 1);
        let error = info.last_error.expect("last error");
        assert!(error.contains("panic: planner bug"), "{error}");
    }

    #[test]
    fn a_panicking_loop_is_spawned_again_and_an_abort_ends_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        /// Set when the run holding it is dropped.
        struct DropFlag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for DropFlag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let runs = std::sync::Arc::new(AtomicU32::new(0));
        let second_run_dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, dropped) = (runs.clone(), second_run_dropped.clone());
        let handle = spawn_restarting(rt.handle(), "ping", move || {
            let (r, dropped) = (r.clone(), dropped.clone());
            async move {
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("ping bug");
                }
                let _flag = DropFlag(dropped);
                std::future::pending::<()>().await;
            }
        });
        rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(10);
            while runs.load(Ordering::SeqCst) < 2 {
                assert!(Instant::now() < deadline, "the loop was not spawned again");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(!second_run_dropped.load(Ordering::SeqCst));
            handle.abort();
            assert!(handle.await.expect_err("aborted").is_cancelled());
            // The abort reaches the run the loop spawned.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !second_run_dropped.load(Ordering::SeqCst) {
                assert!(
                    Instant::now() < deadline,
                    "the current run outlived the abort"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_stopped_daemon_does_not_restart_a_panicked_thread() {
        let ctrl = ThreadControl::new(0, None, "wdpost");
        ctrl.stop();
        let runs = AtomicU32::new(0);
        run_restarting(
            &ctrl,
            (),
            || Ok(()),
            |()| {
                runs.fetch_add(1, Ordering::SeqCst);
                panic!("while stopping");
            },
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(ctrl.info().restarts, 0);
    }
}
