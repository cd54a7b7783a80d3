//! What a producer writes to a processor child, as the consumer reads it: whatever comes in,
//! the child answers only JSON lines that name a request, after its ready line, and stops with
//! `LineTooLong` only on a line longer than `max_line`.
#![no_main]

use std::io::{BufReader, Write};
use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use vc_processors::consumer::{serve, ConsumerError, ConsumerOptions};
use vc_processors::{Processor, Task};

#[derive(Debug, Serialize, Deserialize)]
struct Echo {
    value: serde_json::Value,
}

impl Task for Echo {
    const STAGE: &'static str = "echo";
    type Output = serde_json::Value;
}

struct EchoProcessor;

impl Processor<Echo> for EchoProcessor {
    fn name(&self) -> String {
        "echo".into()
    }

    fn process(&self, task: Echo) -> anyhow::Result<serde_json::Value> {
        if task.value.is_null() {
            anyhow::bail!("null is refused");
        }
        Ok(task.value)
    }
}

#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<u8>>>);

impl Write for Collected {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("output").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let options = ConsumerOptions {
        max_concurrent: 2,
        apply_placement: false,
        max_line: 1 + usize::from(first) * 4,
    };
    let out = Collected::default();
    let result = serve::<Echo, _, _, _>(
        Arc::new(EchoProcessor),
        BufReader::with_capacity(1 + rest.len() % 13, rest),
        out.clone(),
        &options,
    );
    match result {
        Ok(()) | Err(ConsumerError::LineTooLong { .. }) => {}
        Err(e) => panic!("in-memory input and output cannot fail this way: {e}"),
    }
    let written = out.0.lock().expect("output").clone();
    let mut lines = written.split(|&b| b == b'\n');
    assert_eq!(lines.next(), Some(&b"echo processor ready"[..]));
    for line in lines.filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).expect("answers are JSON");
        assert!(v["id"].is_u64(), "{v}");
        assert!(v["err_msg"].is_string() || v["err_msg"].is_null(), "{v}");
    }
});
