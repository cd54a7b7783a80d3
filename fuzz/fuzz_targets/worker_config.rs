//! `damocles-worker.toml` as the worker loads it (the module itself, compiled in here): any
//! text is refused with an error naming the file, or gives a config that passes its checks
//! and writes back to a text that loads to the same config.
#![no_main]

#[allow(dead_code, unused_imports)]
#[path = "../../damocles-worker/src/config/mod.rs"]
mod config;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::from_str_named(text, "fuzz.toml") {
        Ok(cfg) => {
            let written = cfg.to_toml().expect("a loaded config writes back");
            let again = config::from_str_named(&written, "written.toml")
                .unwrap_or_else(|e| panic!("a written config loads: {e:#}\n{written}"));
            assert_eq!(again, cfg);
        }
        Err(e) => assert!(format!("{e:#}").contains("fuzz.toml"), "{e:#}"),
    }
});
