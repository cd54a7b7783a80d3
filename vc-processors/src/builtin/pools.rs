//! The proof libraries' thread pools, created at a chosen CPU priority.
//!
//! The heavy work of the builtin stages does not run on the calling thread: it runs on pools the
//! libraries create once per process (rayon's global pool, and the pool of `ec-gpu-gen` that
//! bellperson's Groth16 prover uses). Their threads are created by whichever thread uses them
//! first and inherit its nice value, so they are created here, from a thread that took the
//! wanted nice first. Call it at start-up, before any proof runs.

use anyhow::{anyhow, Context, Result};

/// Creates rayon's global pool and the Groth16 prover's pool from a thread running at `nice`, so
/// every proof computed in this process afterwards runs at that priority. Fails when a pool
/// already exists (a proof ran before) or the nice value cannot be taken.
pub fn create_at_nice(nice: i32) -> Result<()> {
    std::thread::Builder::new()
        .name("proof-pools".into())
        .spawn(move || -> Result<()> {
            crate::sys::set_thread_nice(nice)
                .with_context(|| format!("setting nice {nice} for the proof thread pools"))?;
            // Its threads are spawned when it is first dereferenced; first, so it is lowered
            // even when rayon's pool already exists.
            let _ = &*ec_gpu_gen::threadpool::THREAD_POOL;
            rayon::ThreadPoolBuilder::new()
                .thread_name(|i| format!("rayon-{i}"))
                .build_global()
                .map_err(|e| anyhow!("creating rayon's global pool at nice {nice}: {e}"))?;
            Ok(())
        })
        .context("starting the proof-pools thread")?
        .join()
        .map_err(|_| anyhow!("the proof-pools thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pools_run_at_the_nice_they_were_created_with_and_only_once() {
        let own = crate::sys::thread_nice().expect("nice");
        let nice = (own + 5).min(19);
        create_at_nice(nice).expect("first creation");
        let busy: Vec<i64> = (0..64u64)
            .map(|_| rayon::join(crate::sys::thread_nice, crate::sys::thread_nice))
            .map(|(a, b)| i64::from(a.expect("nice").max(b.expect("nice"))))
            .collect();
        assert!(busy.iter().all(|&n| n == i64::from(nice)), "{busy:?}");
        let rayon: Vec<i32> = crate::sys::thread_nices(std::process::id())
            .into_iter()
            .filter(|(name, _)| name.starts_with("rayon-"))
            .map(|(_, n)| n)
            .collect();
        assert!(!rayon.is_empty());
        assert!(rayon.iter().all(|&n| n == nice), "{rayon:?}");
        // This thread is not lowered.
        assert_eq!(crate::sys::thread_nice().expect("nice"), own);
        let again = create_at_nice(nice).expect_err("the global pool exists");
        assert!(
            again.to_string().contains("rayon's global pool"),
            "{again:#}"
        );
    }
}
