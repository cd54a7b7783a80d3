//! The child side of the protocol: read requests on stdin, answer on stdout.
//!
//! [`run_consumer`] is the whole main loop of a processor child: it applies the start-up
//! placement of [`crate::sys`], prints the ready line, then runs every request on its own thread
//! (at most [`ConsumerOptions::max_concurrent`] at once; beyond that it stops reading stdin
//! until one finishes) and writes each response as soon as it is ready.
//!
//! Differences from damocles (see `docs/compatibility.md`):
//! - a request line that does not parse is answered with an error response whenever its `id`
//!   can be read, instead of being dropped (which left the producer waiting forever);
//! - a line that is not UTF-8 is treated like any unparsable line instead of ending the child;
//! - a panic inside a processor becomes an error response; the panic hook is not touched;
//! - on EOF the consumer finishes the requests it has accepted, writes their responses and
//!   returns `Ok(())`, so `cat requests.jsonl | my-processor` answers every line.

use std::io::{self, BufRead, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use tracing::{debug, info_span, warn};

use crate::protocol::{
    excerpt, looks_like_object, panic_message, read_line_limited, ready_message, salvage_id,
    trim_line_end, LineRead, Processor, Request, Response, Task,
};

/// Options of the consumer loop.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// The most requests processed at once. Default 256: in practice the producer's own
    /// `concurrent` setting is the limit; this only guards against runaway thread creation.
    pub max_concurrent: usize,
    /// Apply the NUMA / cgroup placement named by the environment before the ready line.
    pub apply_placement: bool,
    /// Longest request line read ([`crate::protocol::DEFAULT_MAX_LINE`]); a longer one ends the
    /// loop with [`ConsumerError::LineTooLong`].
    pub max_line: usize,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            max_concurrent: 256,
            apply_placement: true,
            max_line: crate::protocol::DEFAULT_MAX_LINE,
        }
    }
}

/// Why a consumer loop stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The ready line could not be written.
    #[error("{stage}: cannot write the ready line: {source}")]
    Ready {
        /// The stage served.
        stage: &'static str,
        /// The write error.
        #[source]
        source: io::Error,
    },
    /// A request line went on past [`ConsumerOptions::max_line`].
    #[error("{stage}: a request line is longer than {max} bytes (max_line)")]
    LineTooLong {
        /// The stage served.
        stage: &'static str,
        /// The limit.
        max: usize,
    },
    /// Reading stdin failed (other than EOF).
    #[error("{stage}: cannot read requests from stdin: {source}")]
    Input {
        /// The stage served.
        stage: &'static str,
        /// The read error.
        #[source]
        source: io::Error,
    },
    /// stdout broke: no response can reach the producer any more.
    #[error("{stage}: cannot write responses to stdout: {source}")]
    Output {
        /// The stage served.
        stage: &'static str,
        /// The write error.
        #[source]
        source: io::Error,
    },
}

/// Runs the consumer loop on this process's stdin and stdout until stdin ends.
pub fn run_consumer<T, P>(processor: P, options: ConsumerOptions) -> Result<(), ConsumerError>
where
    T: Task,
    P: Processor<T> + 'static,
{
    let _placement = options
        .apply_placement
        .then(crate::sys::apply_placement_from_env);
    let stdin = io::stdin();
    let input = stdin.lock();
    let output = io::stdout();
    serve::<T, P, _, _>(Arc::new(processor), input, output, &options)
}

/// The consumer loop over any input and output; [`run_consumer`] calls it with stdin/stdout.
pub fn serve<T, P, R, W>(
    processor: Arc<P>,
    mut input: R,
    output: W,
    options: &ConsumerOptions,
) -> Result<(), ConsumerError>
where
    T: Task,
    P: Processor<T> + 'static,
    R: BufRead,
    W: Write + Send + 'static,
{
    let stage = T::STAGE;
    let out = Arc::new(Output {
        writer: Mutex::new(output),
        broken: AtomicBool::new(false),
        first_error: Mutex::new(None),
    });
    {
        let mut w = out.writer.lock().unwrap_or_else(|p| p.into_inner());
        writeln!(w, "{}", ready_message(stage))
            .and_then(|_| w.flush())
            .map_err(|source| ConsumerError::Ready { stage, source })?;
    }

    let slots = Arc::new(Slots::new(options.max_concurrent.max(1)));
    let mut line = Vec::with_capacity(4096);
    let result = loop {
        match read_line_limited(&mut input, &mut line, options.max_line) {
            Ok(LineRead::Eof) => break Ok(()),
            Ok(LineRead::Line) => {}
            Ok(LineRead::TooLong) => {
                break Err(ConsumerError::LineTooLong {
                    stage,
                    max: options.max_line,
                })
            }
            Err(source) => break Err(ConsumerError::Input { stage, source }),
        }
        if let Some(source) = out.take_error() {
            break Err(ConsumerError::Output { stage, source });
        }
        let body = trim_line_end(&line);
        if body.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = if looks_like_object(body) {
            serde_json::from_slice::<Request<T>>(body).map_err(|e| e.to_string())
        } else {
            Err("a request is a JSON object".to_string())
        };
        match parsed {
            Ok(req) => {
                let id = req.id;
                let slot = Slots::acquire(&slots);
                let processor = processor.clone();
                let task_out = out.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("{stage}-req-{id}"))
                    .spawn(move || {
                        let span = info_span!("request", stage, id);
                        let _enter = span.enter();
                        let response = run_one(&*processor, req);
                        task_out.write(id, &response);
                        // The slot is freed when `slot` drops, even if writing panicked.
                        drop(slot);
                    });
                if let Err(e) = spawned {
                    // The closure and its slot were dropped with the failed spawn.
                    warn!(stage, id, "cannot start a thread for the request: {e}");
                    let resp: Response<T::Output> =
                        Response::err(id, format!("cannot start a thread for the request: {e}"));
                    out.write(id, &resp);
                }
            }
            Err(e) => match salvage_id(body) {
                Some(id) => {
                    warn!(stage, id, "invalid request: {e}");
                    let resp: Response<T::Output> =
                        Response::err(id, format!("invalid {stage} request: {e}"));
                    out.write(id, &resp);
                }
                None => warn!(
                    stage,
                    "ignoring an input line with no readable id ({e}): {}",
                    excerpt(body, 200)
                ),
            },
        }
    };
    // Finish what was accepted: the producer (or a pipe) may still be reading.
    slots.wait_idle();
    match (result, out.take_error()) {
        (Err(e), _) => Err(e),
        (Ok(()), Some(source)) => Err(ConsumerError::Output { stage, source }),
        (Ok(()), None) => Ok(()),
    }
}

fn run_one<T: Task, P: Processor<T> + ?Sized>(
    processor: &P,
    req: Request<T>,
) -> Response<T::Output> {
    let id = req.id;
    match catch_unwind(AssertUnwindSafe(|| processor.process(req.task))) {
        Ok(Ok(output)) => Response::ok(id, output),
        // `{:?}` of anyhow::Error keeps the whole cause chain ("msg\n\nCaused by: …").
        Ok(Err(e)) => Response::err(id, format!("{e:?}")),
        Err(panic) => Response::err(id, format!("panic: {}", panic_message(&*panic))),
    }
}

struct Output<W> {
    writer: Mutex<W>,
    broken: AtomicBool,
    /// The first write error, kept so the main loop can report it.
    first_error: Mutex<Option<io::Error>>,
}

impl<W: Write> Output<W> {
    fn write<O: serde::Serialize>(&self, id: u64, response: &Response<O>) {
        let mut line = match serde_json::to_vec(response) {
            Ok(line) => line,
            Err(e) => {
                warn!(id, "cannot serialise the output: {e}");
                match serde_json::to_vec(&Response::<()>::err(
                    id,
                    format!("cannot serialise the output: {e}"),
                )) {
                    Ok(line) => line,
                    Err(_) => return,
                }
            }
        };
        line.push(b'\n');
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if self.broken.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = w.write_all(&line).and_then(|_| w.flush()) {
            warn!(id, "cannot write the response: {e}");
            self.broken.store(true, Ordering::Release);
            let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert(e);
        } else {
            debug!(id, bytes = line.len(), "response written");
        }
    }

    fn take_error(&self) -> Option<io::Error> {
        if !self.broken.load(Ordering::Acquire) {
            return None;
        }
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            first
                .take()
                .unwrap_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "stdout closed")),
        )
    }
}

/// A slot held by one running request.
struct SlotGuard(Arc<Slots>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A counting semaphore for request threads.
struct Slots {
    busy: Mutex<usize>,
    changed: Condvar,
    max: usize,
}

impl Slots {
    fn new(max: usize) -> Self {
        Slots {
            busy: Mutex::new(0),
            changed: Condvar::new(),
            max,
        }
    }

    /// Waits for a free slot; it is given back when the guard drops.
    fn acquire(slots: &Arc<Slots>) -> SlotGuard {
        let mut busy = slots.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy >= slots.max {
            busy = slots.changed.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        *busy += 1;
        SlotGuard(slots.clone())
    }

    fn release(&self) {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        *busy = busy.saturating_sub(1);
        self.changed.notify_all();
    }

    fn wait_idle(&self) {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy > 0 {
            busy = self.changed.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Sqr(u32);
    impl Task for Sqr {
        const STAGE: &'static str = "sqr";
        type Output = u64;
    }

    struct SqrProc;
    impl Processor<Sqr> for SqrProc {
        fn name(&self) -> String {
            "sqr".into()
        }
        fn process(&self, task: Sqr) -> anyhow::Result<u64> {
            match task.0 {
                0 => panic!("zero is not allowed"),
                n if n > 10086 => anyhow::bail!("too large"),
                n => {
                    // Later requests finish first, so responses come back out of order.
                    std::thread::sleep(Duration::from_millis(u64::from(50 / n)));
                    Ok(u64::from(n) * u64::from(n))
                }
            }
        }
    }

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn run(input: &[u8], max_concurrent: usize) -> Vec<String> {
        let sink = Sink::default();
        let opts = ConsumerOptions {
            max_concurrent,
            apply_placement: false,
            ..ConsumerOptions::default()
        };
        serve::<Sqr, _, _, _>(Arc::new(SqrProc), input, sink.clone(), &opts).expect("serve");
        let bytes = sink.0.lock().expect("sink").clone();
        String::from_utf8(bytes)
            .expect("utf8")
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn ready_line_first_then_every_request_answered_on_eof() {
        let lines = run(
            b"{\"id\":1,\"task\":1}\n{\"id\":2,\"task\":5}\n\n{\"id\":3,\"task\":50}\n",
            8,
        );
        assert_eq!(lines[0], "sqr processor ready");
        let mut rest: Vec<_> = lines[1..].to_vec();
        rest.sort();
        assert_eq!(
            rest,
            vec![
                r#"{"id":1,"err_msg":null,"output":1}"#,
                r#"{"id":2,"err_msg":null,"output":25}"#,
                r#"{"id":3,"err_msg":null,"output":2500}"#,
            ]
        );
    }

    #[test]
    fn errors_panics_and_unparsable_requests_get_error_responses() {
        let input = b"{\"id\":1,\"task\":99999}\n{\"id\":2,\"task\":0}\n{\"id\":3,\"task\":\"x\"}\n\xff\xfe garbage\n{\"id\":4,\"task\":\"\xff\"}\n";
        let lines = run(input, 1);
        assert_eq!(lines[0], "sqr processor ready");
        let mut by_id = std::collections::BTreeMap::new();
        for l in &lines[1..] {
            let r: Response<u64> = serde_json::from_str(l).expect("response json");
            by_id.insert(r.id, r);
        }
        assert_eq!(by_id.len(), 4, "{lines:?}");
        assert!(by_id[&1]
            .err_msg
            .as_deref()
            .unwrap_or("")
            .contains("too large"));
        assert!(by_id[&2]
            .err_msg
            .as_deref()
            .unwrap_or("")
            .contains("panic: zero is not allowed"));
        assert!(by_id[&3]
            .err_msg
            .as_deref()
            .unwrap_or("")
            .contains("invalid sqr request"));
        assert!(by_id[&4]
            .err_msg
            .as_deref()
            .unwrap_or("")
            .contains("invalid sqr request"));
        assert!(by_id.values().all(|r| r.output.is_none()));
    }
}
