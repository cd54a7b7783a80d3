//! `damocles-worker daemon`: the start-up sequence of worker-spec §1.2, the sealing threads,
//! the control server, the WorkerPing heartbeat, and shutdown on a signal.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use damocles_manager_api::types::{WorkerInfo, WorkerInfoSummary};
use vc_processors::layout::PersistStore;

use crate::client::ManagerClient;
use crate::config::{
    ExtProcessorConfig, Plan, ProcessorsConfig, WorkerConfig, DEFAULT_RPC_TIMEOUT,
};
use crate::limits::LimitPool;
use crate::port::ManagerPort;
use crate::processors::Processors;
use crate::sealing::control::{ThreadControl, ThreadStateView};
use crate::sealing::engine::{AttachedStore, SealingEnv};
use crate::sealing::store::SealingStore;
use crate::sealing::supervise::run_restarting;
use crate::sealing::thread::SealingThread;
use crate::sealing::wdpost::WdPostThread;

/// `[[attached]]` followed by the stores `worker.scan_persist_stores` finds (§1.9).
pub fn attached_stores(cfg: &WorkerConfig) -> Result<Vec<AttachedStore>> {
    let mut out = Vec::new();
    for (i, a) in cfg.attached.iter().enumerate() {
        let location = if a.plugin.is_some() {
            a.location.clone()
        } else {
            let p = a.location.canonicalize().with_context(|| {
                format!(
                    "attached.{i}.location: {} does not exist",
                    a.location.display()
                )
            })?;
            if !p.is_dir() {
                bail!("attached.{i}.location: {} is not a directory", p.display());
            }
            p
        };
        let name = a
            .name
            .clone()
            .unwrap_or_else(|| location.display().to_string());
        let library = match &a.plugin {
            Some(plugin) => Some(plugin_library(cfg, plugin).with_context(|| {
                format!("attached.{i}.plugin: objstore plugin {plugin:?} not usable")
            })?),
            None => None,
        };
        out.push(AttachedStore {
            name,
            location,
            readonly: a.readonly,
            plugin: a.plugin.clone(),
            library,
            meta: a.meta.clone(),
        });
    }
    for pattern in &cfg.worker.scan_persist_stores {
        let paths = glob::glob(pattern)
            .with_context(|| format!("worker.scan_persist_stores: bad pattern {pattern:?}"))?;
        for entry in paths {
            let dir = entry.with_context(|| format!("worker.scan_persist_stores: {pattern:?}"))?;
            let Some(j) = PersistStore::read_in(&dir)? else {
                continue;
            };
            let location = dir
                .canonicalize()
                .with_context(|| format!("resolving {}", dir.display()))?;
            let name = j.name_or(location.display().to_string());
            out.push(AttachedStore {
                name,
                location,
                readonly: j.read_only,
                plugin: None,
                library: None,
                meta: BTreeMap::new(),
            });
        }
    }
    let mut seen = BTreeSet::new();
    for s in &out {
        if !seen.insert(s.name.clone()) {
            bail!("duplicate persist name: {}", s.name);
        }
    }
    if out.is_empty() {
        bail!(
            "no attached store available: add an [[attached]] store or worker.scan_persist_stores"
        );
    }
    Ok(out)
}

/// The library file of objstore plugin `name` in `worker.plugin_dir`.
fn plugin_library(cfg: &WorkerConfig, name: &str) -> Result<PathBuf> {
    let dir = cfg.worker.plugin_dir()?;
    let names = objstore::plugin::plugin_file_names(name);
    names
        .iter()
        .map(|file| dir.join(file))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "no such plugin in {} (tried {}; set `worker.plugin_dir`)",
                dir.display(),
                names.join(", ")
            )
        })
}

/// The local address on the route to the manager (the worker's own IP as the manager sees it).
fn local_ip_towards(endpoint: &str) -> Result<IpAddr> {
    let uri: http::Uri = endpoint
        .parse()
        .with_context(|| format!("manager endpoint {endpoint}"))?;
    let host = uri
        .host()
        .ok_or_else(|| anyhow!("manager endpoint {endpoint} has no host"))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .with_context(|| format!("resolving the manager {host}:{port}"))?
        .collect();
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
            Ok(s) => return Ok(s.local_addr()?.ip()),
            Err(e) => last = Some(anyhow::Error::new(e).context(format!("connecting to {a}"))),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("the manager {host}:{port} has no address")))
}

/// The thread counts of a WorkerPing.
pub fn summary(threads: &[ThreadControl]) -> WorkerInfoSummary {
    let mut s = WorkerInfoSummary {
        threads: threads.len() as u64,
        ..WorkerInfoSummary::default()
    };
    for t in threads {
        let info = t.info();
        if info.job_id.is_none() {
            s.empty += 1;
        }
        if info.last_error.is_some() {
            s.errors += 1;
        }
        match info.thread_state {
            ThreadStateView::Paused { .. } => s.paused += 1,
            ThreadStateView::Running { .. } => s.running += 1,
            ThreadStateView::Waiting { .. } => s.waiting += 1,
            ThreadStateView::Idle => {}
        }
    }
    s
}

/// With sealing threads and a sealing nice (`[processors.priority]`), creates the proof
/// libraries' thread pools of this process at that nice, before any proof runs, so every
/// in-process sealing stage yields the CPU to PoSt.
fn lower_proof_pools(cfg: &ProcessorsConfig, has_sealing_threads: bool) {
    let nice = cfg.priority.sealing_nice;
    if nice == 0 || !has_sealing_threads {
        return;
    }
    match vc_processors::builtin::pools::create_at_nice(nice) {
        Ok(()) => tracing::info!(nice, "in-process proofs run at the sealing priority"),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "in-process proofs keep the worker's priority")
        }
    }
}

/// The processors to start. An in-process `window_post` would run on the proof pools that
/// [`lower_proof_pools`] lowered, at the sealing priority: so a worker with both sealing and
/// `wdpost` threads and no `[[processors.window_post]]` runs it in one `processor
/// window_post` child instead, at `post_nice`.
fn processors_to_start(
    cfg: &ProcessorsConfig,
    has_sealing_threads: bool,
    has_wdpost_threads: bool,
) -> ProcessorsConfig {
    let mut out = cfg.clone();
    if cfg.priority.sealing_nice != 0
        && has_sealing_threads
        && has_wdpost_threads
        && out.window_post.is_none()
    {
        out.window_post = Some(vec![ExtProcessorConfig::default()]);
        tracing::info!(
            nice = cfg.priority.post_nice,
            "window_post runs in a `processor window_post` child, above the sealing priority"
        );
    }
    out
}

/// The first thing a sealing thread does: take the sealing nice, which the threads it starts
/// (and the processes they spawn) inherit.
fn enter_sealing_priority(index: usize, nice: i32) {
    if nice == 0 {
        return;
    }
    if let Err(e) = vc_processors::sys::set_thread_nice(nice) {
        tracing::warn!(thread = index, nice, error = %e, "the sealing thread keeps the worker's priority");
    }
}

/// Runs the daemon with the config at `path` until a signal stops it or a module ends.
pub fn run(path: &Path) -> Result<()> {
    let cfg = crate::config::load(path)?;
    tracing::info!(config = ?cfg, "config loaded");
    for t in cfg.deprecated_tables() {
        tracing::warn!(table = t, "config table ignored (not used by this worker)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("worker-rt")
        .build()
        .context("starting the async runtime")?;
    let manager = cfg.manager()?;
    let endpoint = manager.rpc_client.endpoint()?;
    let api_info = std::env::var(crate::config::MANAGER_API_INFO_ENV).ok();
    let client = ManagerClient::new(
        &endpoint,
        &manager.rpc_client.request_headers(api_info.as_deref()),
        manager
            .rpc_client
            .timeout
            .map_or(DEFAULT_RPC_TIMEOUT, |t| t.0),
        rt.handle().clone(),
    )?;

    let attached = attached_stores(&cfg)?;
    client.check_token(path)?;
    let mut object_stores = BTreeMap::new();
    for s in &attached {
        let info = client.store_basic_info(s.name.clone())?;
        let Some(info) = info else {
            bail!(
                "store basic info of instance {} not found in damocles-manager",
                s.name
            );
        };
        if s.library.is_some() {
            // Open it now, with the settings a transfer will use, so a bad plugin or meta
            // stops the daemon before a sector depends on the store.
            let store = vc_processors::builtin::processors::transfer::open_plugin_store(
                &s.transfer_info(info.meta.as_ref()),
            )
            .with_context(|| format!("attached store {}", s.name))?;
            if let Some(store) = store {
                object_stores.insert(s.name.clone(), store);
            }
            tracing::info!(store = %s.name, plugin = ?s.plugin, "objstore plugin store attached");
        }
    }

    // Sealing stores: created when missing (not their parents), each used once.
    let mut threads = Vec::new();
    let mut wdpost_threads = Vec::new();
    let mut locations = BTreeSet::new();
    for (i, t) in cfg.threads().iter().enumerate() {
        if t.plan == Some(Plan::Wdpost) {
            // WindowPoSt jobs need no sealing store; a configured location is left alone.
            wdpost_threads.push((i, t.clone()));
            continue;
        }
        let Some(loc) = &t.location else {
            bail!(
                "sealing_thread.{i}: `location` is required by plan `{}`",
                t.plan.unwrap_or_default()
            );
        };
        if !loc.exists() {
            SealingStore::init(loc, false)
                .with_context(|| format!("sealing_thread.{i}: initialising {}", loc.display()))?;
            tracing::info!(location = %loc.display(), "sealing store initialised");
        }
        let canonical = loc
            .canonicalize()
            .with_context(|| format!("sealing_thread.{i}: resolving {}", loc.display()))?;
        if !locations.insert(canonical.clone()) {
            bail!(
                "sealing_thread.{i}: {} is already used by another thread",
                canonical.display()
            );
        }
        threads.push((i, t.clone(), canonical));
    }

    let local_ip = local_ip_towards(&endpoint)?;
    let instance = cfg
        .worker
        .name
        .clone()
        .unwrap_or_else(|| local_ip.to_string());
    if cfg.metrics.enable {
        let listen = cfg.metrics.listen();
        let _guard = rt.enter();
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(listen)
            .add_global_label("worker_name", instance.clone())
            .add_global_label("worker_ip", local_ip.to_string())
            .install()
            .with_context(|| format!("metrics.http_listen {listen}"))?;
        tracing::info!(%listen, "metrics exporter listening");
    }
    // After the exporter, so the capacity gauges it sets are published.
    let limits = Arc::new(LimitPool::from_config(&cfg.processors)?);
    let listen = cfg.worker.rpc_server.listen_addr()?;

    let origin = {
        let uri: http::Uri = endpoint
            .parse()
            .with_context(|| format!("manager endpoint {endpoint}"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("manager endpoint {endpoint} has no host"))?;
        format!("{}://{authority}", uri.scheme_str().unwrap_or("http"))
    };
    let self_exe = std::env::current_exe().context("finding the worker executable")?;
    lower_proof_pools(&cfg.processors, !threads.is_empty());
    let processors_cfg = processors_to_start(
        &cfg.processors,
        !threads.is_empty(),
        !wdpost_threads.is_empty(),
    );
    let processors = Arc::new(Processors::start(
        &processors_cfg,
        limits.clone(),
        manager.piece_token.as_deref(),
        &self_exe,
    )?);
    tracing::info!(processors = ?processors.summary(), "processors ready");
    let env = Arc::new(SealingEnv {
        manager: Arc::new(client.clone()),
        processors: processors.clone(),
        limits,
        instance: instance.clone(),
        attached,
        local_piece_dirs: cfg.worker.local_pieces_dirs(),
        remote_piece_base: format!("{origin}/piecestore"),
        deals_enabled: cfg.sealing.enable_deals
            || cfg
                .threads()
                .iter()
                .any(|t| t.sealing.enable_deals == Some(true)),
        static_tree_d: cfg.processors.static_tree_d()?,
        object_stores,
        // In the worker's home, private: not the shared `/tmp` with a name anyone can take.
        post_scratch: cfg.worker.rpc_server.home_dir()?.join("wdpost-scratch"),
    });
    if !wdpost_threads.is_empty() {
        vc_processors::builtin::post_fetch::private_scratch_root(&env.post_scratch)?;
        let removed = vc_processors::builtin::post_fetch::remove_stale_scratch(&env.post_scratch);
        if removed > 0 {
            tracing::info!(removed, root = %env.post_scratch.display(), "removed wdpost scratch directories left by a killed worker");
        }
    }
    vc_processors::builtin::spawn_temp_sweep(
        threads
            .iter()
            .map(|(_, _, loc)| loc.clone())
            .chain(
                env.attached
                    .iter()
                    .filter(|a| a.plugin.is_none() && !a.readonly)
                    .map(|a| a.location.clone()),
            )
            .collect(),
    );

    let mut controls = Vec::new();
    let mut sealing = Vec::new();
    for (i, t, loc) in threads {
        let ctrl = ThreadControl::new(
            i,
            Some(loc.display().to_string()),
            t.plan.unwrap_or_default().as_str(),
        );
        let global = cfg.sealing.clone();
        let make = {
            let (ctrl, env) = (ctrl.clone(), env.clone());
            move || {
                SealingThread::new(
                    t.clone(),
                    global.clone(),
                    ctrl.clone(),
                    env.clone(),
                    loc.clone(),
                )
                .with_context(|| format!("sealing_thread.{i}"))
            }
        };
        // A store that cannot be opened stops the start-up; after a panic it is opened again.
        let first = make()?;
        let thread_ctrl = ctrl.clone();
        controls.push(ctrl);
        let nice = cfg.processors.priority.sealing_nice;
        sealing.push(Box::new(move || {
            enter_sealing_priority(i, nice);
            run_restarting(&thread_ctrl, first, make, SealingThread::run)
        }) as Box<dyn FnOnce() + Send>);
    }
    for (i, t) in wdpost_threads {
        let ctrl = ThreadControl::new(i, None, Plan::Wdpost.as_str());
        let merged = t.effective(&cfg.sealing, None).sealing;
        let make = {
            let (ctrl, env) = (ctrl.clone(), env.clone());
            move || -> Result<WdPostThread> {
                Ok(WdPostThread::new(merged.clone(), ctrl.clone(), env.clone()))
            }
        };
        let first = make()?;
        let thread_ctrl = ctrl.clone();
        controls.push(ctrl);
        sealing.push(Box::new(move || {
            run_restarting(&thread_ctrl, first, make, WdPostThread::run)
        }));
    }
    // The control server lists threads by index.
    let mut order: Vec<usize> = (0..controls.len()).collect();
    order.sort_by_key(|&k| controls[k].index());
    let mut slots: Vec<Option<_>> = sealing.into_iter().map(Some).collect();
    let sealing: Vec<Box<dyn FnOnce() + Send>> =
        order.iter().filter_map(|&k| slots[k].take()).collect();
    let controls: Vec<ThreadControl> = order.iter().map(|&k| controls[k].clone()).collect();

    let home = cfg.worker.rpc_server.home_dir()?;
    let keys = damocles_auth::open_home(&home)
        .with_context(|| format!("the control server's API secret in {}", home.display()))?;
    if keys.created {
        tracing::warn!(
            secret = %keys.secret_path.display(),
            admin_token = %keys.token_path.display(),
            "the control server needs a token for every call; `damocles-worker worker …` on this \
             machine uses the admin token, others get one from `damocles-worker auth api-info`"
        );
    }
    let auth = damocles_auth::rpc::Authenticator::new(
        keys.secret,
        None,
        crate::server::CREATE_TOKEN_COMMAND,
    );
    let (server, bound) = rt.block_on(crate::server::serve(listen, controls.clone(), auth))?;
    // The address the control server is reached at: the one it is bound to, or this
    // machine's address towards the manager when it listens on every interface.
    let dest = if bound.ip().is_unspecified() {
        format!("{local_ip}:{}", bound.port())
    } else {
        bound.to_string()
    };
    tracing::info!(%bound, instance = %instance, dest = %dest, "worker control server listening");
    println!("damocles-worker listening on {bound}");

    let (done_tx, done_rx) = std::sync::mpsc::channel::<String>();
    let mut handles = Vec::new();
    for (thread, ctrl) in sealing.into_iter().zip(controls.iter()) {
        let tx = done_tx.clone();
        let name = format!("worker-{}", ctrl.index());
        let n2 = name.clone();
        handles.push(
            std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    thread();
                    let _ = tx.send(n2);
                })
                .with_context(|| format!("starting {name}"))?,
        );
    }

    // WorkerPing every ping_interval, restarted if it panics.
    let ping_controls = controls.clone();
    let ping_client = client.clone();
    let interval = cfg.worker.ping_interval.0;
    let ping = crate::sealing::supervise::spawn_restarting(rt.handle(), "ping", move || {
        let (instance, dest) = (instance.clone(), dest.clone());
        let (controls, client) = (ping_controls.clone(), ping_client.clone());
        async move {
            loop {
                let info = WorkerInfo {
                    name: instance.clone(),
                    dest: dest.clone(),
                    version: crate::server::version(),
                    summary: summary(&controls),
                };
                if let Err(e) = client.worker_ping(info).await {
                    tracing::warn!(error = %e, "worker ping failed");
                }
                tokio::time::sleep(interval).await;
            }
        }
    });

    // Signals.
    let tx = done_tx.clone();
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            tracing::error!("cannot listen for signals");
            return;
        };
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = quit.recv() => "SIGQUIT",
        };
        let _ = tx.send(format!("signal {which}"));
    });
    drop(done_tx);

    let why = done_rx
        .recv()
        .unwrap_or_else(|_| "every module ended".into());
    tracing::info!(reason = %why, "stopping");
    for c in &controls {
        c.stop();
    }
    ping.abort();
    let _ = server.stop();
    // Sealing work in flight is abandoned: every step is persisted, so it resumes at the next
    // start. Threads inside a processor call are not waited for.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for h in handles {
        while !h.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    processors.shutdown();
    rt.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_post_moves_to_a_child_only_beside_lowered_sealing_threads() {
        let cfg = ProcessorsConfig::default();
        let child = processors_to_start(&cfg, true, true);
        let blocks = child.window_post.as_deref().expect("a window_post child");
        assert_eq!(blocks.len(), 1);
        assert_eq!(
            blocks[0].args_for("window_post"),
            ["processor", "window_post"]
        );
        assert_eq!(cfg.priority.nice_for("window_post", &blocks[0]), Some(0));
        // No sealing thread, no wdpost thread, or no lowering: in-process as configured.
        assert!(processors_to_start(&cfg, false, true).window_post.is_none());
        assert!(processors_to_start(&cfg, true, false).window_post.is_none());
        let mut off = cfg.clone();
        off.priority.sealing_nice = 0;
        assert!(processors_to_start(&off, true, true).window_post.is_none());
        // Configured children are kept as they are.
        let mut own = cfg.clone();
        own.window_post = Some(vec![ExtProcessorConfig {
            bin: Some("/opt/prover".into()),
            ..ExtProcessorConfig::default()
        }]);
        assert_eq!(processors_to_start(&own, true, true), own);
    }

    #[test]
    fn attached_and_scanned_stores_get_names_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        let scanned = dir.path().join("scan").join("s1");
        std::fs::create_dir_all(&a).expect("mkdir");
        std::fs::create_dir_all(&scanned).expect("mkdir");
        std::fs::write(
            scanned.join("sectorstore.json"),
            r#"{"ID": "id-1", "Name": "", "ReadOnly": true, "Weight": 3}"#,
        )
        .expect("write");
        std::fs::create_dir_all(dir.path().join("scan").join("no-json")).expect("mkdir");
        let text = format!(
            r#"
[sector_manager]
rpc_client.addr = "/ip4/127.0.0.1/tcp/1789"
[[sealing_thread]]
location = "{loc}"
[[attached]]
name = "persist"
location = "{a}"
[worker]
scan_persist_stores = ["{pat}"]
"#,
            loc = dir.path().join("t0").display(),
            a = a.display(),
            pat = dir.path().join("scan").join("*").display()
        );
        let cfg = crate::config::from_str_named(&text, "test.toml").expect("config");
        let stores = attached_stores(&cfg).expect("stores");
        assert_eq!(stores.len(), 2);
        assert_eq!(stores[0].name, "persist");
        assert!(!stores[0].readonly);
        assert_eq!(stores[1].name, "id-1");
        assert!(stores[1].readonly);

        let dup = text.replace("name = \"persist\"", "name = \"id-1\"");
        let cfg = crate::config::from_str_named(&dup, "test.toml").expect("config");
        let e = attached_stores(&cfg).expect_err("duplicate");
        assert!(
            e.to_string().contains("duplicate persist name: id-1"),
            "{e}"
        );
    }

    #[test]
    fn the_summary_counts_thread_states() {
        let a = ThreadControl::new(0, None, "sealer");
        let b = ThreadControl::new(1, None, "sealer");
        b.set_job(Some("s-t01-1".into()), "PC1Done", Some("PC2"));
        b.set_running(Some("builtin pc2".into()));
        let s = summary(&[a, b]);
        assert_eq!(
            (s.threads, s.empty, s.running, s.paused, s.waiting, s.errors),
            (2, 1, 1, 0, 0, 0)
        );
    }
}
