//! What a processor child writes on stdout, as the producer reads it: lines bounded by
//! `max_line` (a line that never ends costs at most that much), each a response, a malformed
//! line that may still name its request, or a blank line.
#![no_main]

use std::io::BufReader;

use libfuzzer_sys::fuzz_target;
use vc_processors::producer::{parse_stdout_line, StdoutLine};
use vc_processors::protocol::{
    read_line_limited, salvage_id, skip_rest_of_line, trim_line_end, LineRead,
};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let max = 1 + usize::from(first) * 4;
    // A small buffer, so lines cross refills.
    let mut input = BufReader::with_capacity(1 + rest.len() % 13, rest);
    let mut line = Vec::new();
    let mut lines = 0usize;
    loop {
        match read_line_limited(&mut input, &mut line, max).expect("memory reads do not fail") {
            LineRead::Eof => break,
            LineRead::TooLong => {
                assert_eq!(line.len(), max, "a long line keeps exactly max bytes");
                skip_rest_of_line(&mut input).expect("memory reads do not fail");
            }
            LineRead::Line => {
                let body = trim_line_end(&line);
                assert!(body.len() <= max);
                match parse_stdout_line(body) {
                    StdoutLine::Blank => assert!(body.iter().all(u8::is_ascii_whitespace)),
                    StdoutLine::Response(resp) => {
                        assert_eq!(salvage_id(body), Some(resp.id));
                        if let Some(out) = &resp.output {
                            serde_json::from_str::<serde_json::Value>(out.get())
                                .expect("a raw output is JSON");
                        }
                    }
                    StdoutLine::Malformed { id, reason } => {
                        assert!(!reason.is_empty());
                        assert_eq!(id, salvage_id(body));
                    }
                }
            }
        }
        lines += 1;
        assert!(lines <= rest.len() + 1, "every read makes progress");
    }
});
