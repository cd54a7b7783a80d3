//! The processor protocol: tasks, processors and the line envelopes (vc-processors-spec §1, §3.1).
//!
//! A *task* is the JSON input of one stage (`pc1`, `c2`, `window_post`, …) and names its output
//! type. A *processor* turns a task into its output, in-process or, through
//! [`crate::producer::Producer`], in a child process that runs [`crate::consumer::run_consumer`].
//!
//! On the pipes every message is one compact JSON document followed by `\n`:
//! requests `{"id":<u64>,"task":<task>}` go to the child's stdin, responses
//! `{"id":<u64>,"err_msg":<string|null>,"output":<output|null>}` come back on its stdout, in any
//! order, matched by `id`. Before anything else the child prints the ready line
//! `<stage> processor ready\n`.

use std::fmt::Debug;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The input of one stage of work, sent to a processor as the `task` field of a request.
pub trait Task: Serialize + DeserializeOwned + Debug + Send + Sync + 'static {
    /// Stage name: used in the ready line and as the default `processor <stage>` argument.
    const STAGE: &'static str;
    /// What a processor returns for this task (the `output` field of a response).
    type Output: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;
}

/// The unit task of `sealing_daemons`: children that are only kept alive, never sent work.
impl Task for () {
    const STAGE: &'static str = "EMPTY";
    type Output = ();
}

/// Something that performs tasks of type `T`.
///
/// `process` blocks the calling thread until the task is done; callers on an async runtime use
/// `spawn_blocking`. Implementations must be usable from many threads at once.
pub trait Processor<T: Task>: Send + Sync {
    /// Short human-readable name, e.g. `builtin pc1` or `ext(pc1, pid: 1234)`.
    fn name(&self) -> String;

    /// Runs one task to completion.
    fn process(&self, task: T) -> anyhow::Result<T::Output>;
}

impl<T: Task, P: Processor<T> + ?Sized> Processor<T> for Box<P> {
    fn name(&self) -> String {
        (**self).name()
    }

    fn process(&self, task: T) -> anyhow::Result<T::Output> {
        (**self).process(task)
    }
}

impl<T: Task, P: Processor<T> + ?Sized> Processor<T> for Arc<P> {
    fn name(&self) -> String {
        (**self).name()
    }

    fn process(&self, task: T) -> anyhow::Result<T::Output> {
        (**self).process(task)
    }
}

/// A processor that accepts the unit task and does nothing: the body of a sealing daemon.
#[derive(Debug, Default, Clone, Copy)]
pub struct DaemonProcessor;

impl Processor<()> for DaemonProcessor {
    fn name(&self) -> String {
        "daemon".to_string()
    }

    fn process(&self, _task: ()) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A request line: `{"id":<u64>,"task":<task>}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Request<T> {
    /// Chosen by the producer, unique per child configuration; copied into the response.
    pub id: u64,
    /// The task itself.
    pub task: T,
}

/// A response line: `{"id":<u64>,"err_msg":<string|null>,"output":<output|null>}`.
///
/// Exactly one of `err_msg` and `output` is meaningful: a non-null `err_msg` is a failure,
/// whatever `output` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response<O> {
    /// The id of the request this answers.
    pub id: u64,
    /// The failure text, or `null` on success (missing means `null`).
    pub err_msg: Option<String>,
    /// The output, or `null` on failure (missing means `null`).
    pub output: Option<O>,
}

impl<O> Response<O> {
    /// A successful response.
    pub fn ok(id: u64, output: O) -> Self {
        Response {
            id,
            err_msg: None,
            output: Some(output),
        }
    }

    /// A failed response.
    pub fn err(id: u64, err_msg: impl Into<String>) -> Self {
        Response {
            id,
            err_msg: Some(err_msg.into()),
            output: None,
        }
    }
}

/// The ready line a child prints once it can take requests, without the trailing newline.
pub fn ready_message(stage: &str) -> String {
    format!("{stage} processor ready")
}

/// Reads the top-level `id` of a request or response line that failed to parse as a whole.
///
/// Tries the bytes as they are, then with invalid UTF-8 replaced (a bad byte inside a string),
/// then the canonical layout `{"id":<digits>,…` that every producer and consumer writes, which
/// still names the request when the rest of the line is cut short or corrupt.
pub fn salvage_id(line: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: u64,
    }
    if !looks_like_object(line) {
        return None;
    }
    if let Ok(IdOnly { id }) = serde_json::from_slice::<IdOnly>(line) {
        return Some(id);
    }
    let lossy = String::from_utf8_lossy(line);
    if let Ok(IdOnly { id }) = serde_json::from_str::<IdOnly>(&lossy) {
        return Some(id);
    }
    leading_id(&lossy)
}

/// Whether `line` starts (after whitespace) like a JSON object. Requests and responses are
/// objects; serde would also take a struct from an array of its fields in order, which the
/// protocol does not allow.
pub fn looks_like_object(line: &[u8]) -> bool {
    line.trim_ascii_start().first() == Some(&b'{')
}

/// The id of a line that starts `{"id":<digits>` followed by `,` or `}`.
fn leading_id(line: &str) -> Option<u64> {
    let rest = line.trim_start().strip_prefix('{')?.trim_start();
    let rest = rest
        .strip_prefix("\"id\"")?
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let after = rest[digits..].trim_start();
    if digits == 0 || !(after.starts_with(',') || after.starts_with('}')) {
        return None;
    }
    rest[..digits].parse().ok()
}

/// The message of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_string())
}

/// At most `max` bytes of `line`, lossily decoded, for error messages and logs.
pub fn excerpt(line: &[u8], max: usize) -> String {
    let cut = &line[..line.len().min(max)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if line.len() > max {
        s.push_str(&format!("… ({} bytes in all)", line.len()));
    }
    s
}

/// Default longest line of the protocol, either way: far above the largest real message (the
/// C1 output of a 64 GiB sector, tens of MiB in JSON), and a bound on what a child that never
/// writes a newline costs the parent.
pub const DEFAULT_MAX_LINE: usize = 256 << 20;

/// What [`read_line_limited`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRead {
    /// The input ended before any byte.
    Eof,
    /// A whole line (or the last bytes before the end of the input).
    Line,
    /// The line goes on past the limit: the buffer holds its first `max` bytes, the rest is
    /// not read.
    TooLong,
}

/// Reads one line into `buf` (cleared first), keeping at most `max` bytes before its newline,
/// so a peer that never ends a line costs at most `max` bytes.
pub fn read_line_limited<R: std::io::BufRead + ?Sized>(
    input: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    buf.clear();
    loop {
        let available = fill(input)?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line
            });
        }
        let (end, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        // The newline itself does not count against the limit.
        let content = if found { end - 1 } else { end };
        if buf.len() + content > max {
            let room = max - buf.len();
            buf.extend_from_slice(&available[..room]);
            input.consume(room);
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(&available[..end]);
        input.consume(end);
        if found {
            return Ok(LineRead::Line);
        }
    }
}

/// The buffered input, refilled when empty, through interruptions.
fn fill<R: std::io::BufRead + ?Sized>(input: &mut R) -> std::io::Result<&[u8]> {
    loop {
        match input.fill_buf() {
            // Re-borrowed so the loop can try again after an interruption.
            Ok(_) => return input.fill_buf(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reads and drops the rest of the current line (after [`LineRead::TooLong`]).
pub fn skip_rest_of_line<R: std::io::BufRead + ?Sized>(input: &mut R) -> std::io::Result<()> {
    loop {
        let available = fill(input)?;
        if available.is_empty() {
            return Ok(());
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = available.len();
                input.consume(n);
            }
        }
    }
}

/// `line` without its trailing `\n` / `\r\n`.
pub fn trim_line_end(mut line: &[u8]) -> &[u8] {
    while let Some((&last, rest)) = line.split_last() {
        if last == b'\n' || last == b'\r' {
            line = rest;
        } else {
            break;
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_up_to_the_limit_and_no_further() {
        let mut input = std::io::BufReader::with_capacity(3, &b"ab\ncdefgh\nij"[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_limited(&mut input, &mut buf, 4).expect("read"),
            LineRead::Line
        );
        assert_eq!(buf, b"ab\n");
        assert_eq!(
            read_line_limited(&mut input, &mut buf, 4).expect("read"),
            LineRead::TooLong
        );
        assert_eq!(buf, b"cdef", "the first max bytes are kept");
        skip_rest_of_line(&mut input).expect("skip");
        assert_eq!(
            read_line_limited(&mut input, &mut buf, 4).expect("read"),
            LineRead::Line
        );
        assert_eq!(buf, b"ij", "the last line needs no newline");
        assert_eq!(
            read_line_limited(&mut input, &mut buf, 4).expect("read"),
            LineRead::Eof
        );
        // A line of exactly the limit, newline apart, is whole.
        let mut input = &b"abcd\n"[..];
        assert_eq!(
            read_line_limited(&mut input, &mut buf, 4).expect("read"),
            LineRead::Line
        );
        assert_eq!(buf, b"abcd\n");
    }

    #[test]
    fn request_and_response_envelopes_are_compact_and_ordered() {
        let req = Request { id: 7, task: 15u32 };
        assert_eq!(
            serde_json::to_string(&req).expect("serialize"),
            r#"{"id":7,"task":15}"#
        );
        let ok: Response<u32> = Response::ok(7, 225);
        assert_eq!(
            serde_json::to_string(&ok).expect("serialize"),
            r#"{"id":7,"err_msg":null,"output":225}"#
        );
        let err: Response<u32> = Response::err(7, "too large");
        assert_eq!(
            serde_json::to_string(&err).expect("serialize"),
            r#"{"id":7,"err_msg":"too large","output":null}"#
        );
    }

    #[test]
    fn unit_task_output_is_null_and_reads_back() {
        let ok: Response<()> = Response::ok(3, ());
        let line = serde_json::to_string(&ok).expect("serialize");
        assert_eq!(line, r#"{"id":3,"err_msg":null,"output":null}"#);
        let back: Request<()> = serde_json::from_str(r#"{"id":3,"task":null}"#).expect("parse");
        assert_eq!(back.id, 3);
    }

    #[test]
    fn missing_optional_fields_default_and_unknown_fields_are_ignored() {
        let r: Response<bool> =
            serde_json::from_str(r#"{"output":true,"id":1,"extra":"x"}"#).expect("parse");
        assert_eq!(r, Response::ok(1, true));
    }

    #[test]
    fn ids_must_be_unsigned_integers() {
        for bad in [
            r#"{"id":"1","task":1}"#,
            r#"{"id":-1,"task":1}"#,
            r#"{"id":1.5,"task":1}"#,
        ] {
            assert!(serde_json::from_str::<Request<u32>>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn salvage_id_reads_top_level_id_only() {
        assert_eq!(
            salvage_id(br#"{"id":42,"task":{"id":"layer-1","x":"#),
            Some(42),
            "a cut-short line in the canonical layout still names its request"
        );
        assert_eq!(
            salvage_id(br#"{"task":{"id":9},"id":42,"bogus":[1,2]}"#),
            Some(42)
        );
        assert_eq!(salvage_id(br#"{"task":{"id":9},"id":42,"bo"#), None);
        assert_eq!(salvage_id(br#"{"id":42x,"task":1}"#), None);
        assert_eq!(salvage_id(br#"{ "id" : 7 }"#), Some(7));
        assert_eq!(salvage_id(b"{\"id\":5,\"err_msg\":\"\xff\xfe\"}"), Some(5));
        assert_eq!(salvage_id(b"not json"), None);
        // serde takes a struct from an array of its fields; the protocol does not.
        assert_eq!(salvage_id(br#"[2,"(2 "]"#), None);
        assert!(matches!(
            crate::producer::parse_stdout_line(br#" [2,"failed",null]"#),
            crate::producer::StdoutLine::Malformed { id: None, .. }
        ));
        assert!(matches!(
            crate::producer::parse_stdout_line(br#" {"id":2,"err_msg":"failed"}"#),
            crate::producer::StdoutLine::Response(_)
        ));
    }

    #[test]
    fn trim_and_excerpt() {
        assert_eq!(trim_line_end(b"abc\r\n"), b"abc");
        assert_eq!(trim_line_end(b"abc"), b"abc");
        assert_eq!(excerpt(b"abcdef", 3), "abc… (6 bytes in all)");
    }
}
