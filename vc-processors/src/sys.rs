//! Child start-up placement: NUMA memory preference and cgroup cpuset (vc-processors-spec §1.9).
//!
//! A producer passes the placement to its child through the environment:
//! - `VENUS_WORKER_NUMA_PREFERRED=<node>`: prefer memory from that NUMA node
//!   (`set_mempolicy(MPOL_PREFERRED)`, a preference, not a binding);
//! - `VC_CG_NAME=<path>` and `VC_CG_CPUSET=<cpus>`: join the cgroup `<path>` with that cpuset.
//!
//! The child applies them itself before printing its ready line and before it starts any other
//! thread: both the memory policy and the CPU affinity are per thread, and threads created
//! afterwards inherit them. Nothing here panics: when the
//! system does not allow a step (no NUMA node, no cgroup file system, no permission) the child
//! logs a warning and carries on. When the cgroup cannot be used, the cpuset is still applied as
//! the CPU affinity of the process, so the CPU restriction holds either way.

use std::fs;
use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

/// Environment variable naming the preferred NUMA node.
pub const ENV_NUMA_PREFERRED: &str = "VENUS_WORKER_NUMA_PREFERRED";
/// Environment variable naming the cgroup to join.
pub const ENV_CGROUP_NAME: &str = "VC_CG_NAME";
/// Environment variable holding the cpuset of that cgroup (`"0-7,16"`).
pub const ENV_CGROUP_CPUSET: &str = "VC_CG_CPUSET";

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// What start-up placement did; dropping it leaves and removes the cgroup it created.
#[derive(Debug, Default)]
pub struct Placement {
    /// The NUMA node whose memory is preferred, when that succeeded.
    pub numa_node: Option<u32>,
    /// The CPUs the process is restricted to, when that succeeded (by cgroup or affinity).
    pub cpus: Option<Vec<usize>>,
    /// The cgroup joined, when that succeeded.
    cgroup: Option<JoinedCgroup>,
}

#[derive(Debug)]
struct JoinedCgroup {
    dir: PathBuf,
    /// `cgroup.procs` (v2) or `tasks` (v1) of the cgroup we came from.
    previous_procs: Option<PathBuf>,
}

impl Drop for Placement {
    fn drop(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            if let Some(prev) = &cg.previous_procs {
                let _ = fs::write(prev, std::process::id().to_string());
            }
            match fs::remove_dir(&cg.dir) {
                Ok(()) => debug!(cgroup = %cg.dir.display(), "removed cgroup"),
                Err(e) => debug!(cgroup = %cg.dir.display(), error = %e, "cgroup left in place"),
            }
        }
    }
}

/// Applies the placement named by the environment of this process. Never fails: each step
/// that cannot be done is logged as a warning.
pub fn apply_placement_from_env() -> Placement {
    let mut placement = Placement::default();

    if let Ok(raw) = std::env::var(ENV_NUMA_PREFERRED) {
        match raw.trim().parse::<u32>() {
            Ok(node) => match set_numa_preferred(node) {
                Ok(()) => {
                    info!(node, "preferring memory from NUMA node");
                    placement.numa_node = Some(node);
                }
                Err(e) => warn!(node, "{ENV_NUMA_PREFERRED}: cannot prefer NUMA node: {e}"),
            },
            Err(e) => warn!("{ENV_NUMA_PREFERRED}={raw:?} is not a NUMA node number: {e}"),
        }
    }

    let name = std::env::var(ENV_CGROUP_NAME).ok();
    let cpuset = std::env::var(ENV_CGROUP_CPUSET).ok();
    match (name, cpuset) {
        (Some(name), Some(cpuset)) => {
            let cpus = match parse_cpu_list(&cpuset) {
                Ok(cpus) => cpus,
                Err(e) => {
                    warn!(
                        "{ENV_CGROUP_CPUSET}={cpuset:?} is not a cpu list: {e}; no cpuset applied"
                    );
                    return placement;
                }
            };
            match join_cgroup(&name, &cpuset) {
                Ok(joined) => {
                    info!(cgroup = %joined.dir.display(), cpuset, "joined cgroup");
                    placement.cgroup = Some(joined);
                    placement.cpus = Some(cpus);
                }
                Err(e) => {
                    warn!(
                        "cannot join cgroup {name:?} with cpuset {cpuset:?}: {e}; \
                         restricting CPU affinity instead"
                    );
                    match set_cpu_affinity(&cpus) {
                        Ok(()) => placement.cpus = Some(cpus),
                        Err(e) => warn!("cannot set CPU affinity to {cpuset:?}: {e}"),
                    }
                }
            }
        }
        (Some(_), None) | (None, Some(_)) => warn!(
            "{ENV_CGROUP_NAME} and {ENV_CGROUP_CPUSET} must be set together; no cgroup joined"
        ),
        (None, None) => {}
    }
    placement
}

/// The largest CPU number accepted in a cpu list.
pub const MAX_CPU: usize = 65_535;

/// Parses a Linux cpu list such as `0-3,8,10-11` (CPU numbers up to [`MAX_CPU`]).
pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((lo, hi)) => {
                let lo: usize = lo.trim().parse().map_err(|_| format!("bad cpu {lo:?}"))?;
                let hi: usize = hi.trim().parse().map_err(|_| format!("bad cpu {hi:?}"))?;
                if lo > hi {
                    return Err(format!("descending range {part:?}"));
                }
                if hi > MAX_CPU {
                    return Err(format!("cpu {hi} is above {MAX_CPU}"));
                }
                cpus.extend(lo..=hi);
            }
            None => {
                let cpu: usize = part.parse().map_err(|_| format!("bad cpu {part:?}"))?;
                if cpu > MAX_CPU {
                    return Err(format!("cpu {cpu} is above {MAX_CPU}"));
                }
                cpus.push(cpu);
            }
        }
    }
    if cpus.is_empty() {
        return Err("empty cpu list".to_string());
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

#[cfg(target_os = "linux")]
fn set_numa_preferred(node: u32) -> Result<(), String> {
    let node_dir = Path::new("/sys/devices/system/node").join(format!("node{node}"));
    if !node_dir.exists() {
        return Err(format!("{} does not exist", node_dir.display()));
    }
    const MPOL_PREFERRED: libc::c_long = 1;
    let bits_per_word = libc::c_ulong::BITS as usize;
    let node = node as usize;
    let mut mask = vec![0 as libc::c_ulong; node / bits_per_word + 1];
    mask[node / bits_per_word] |= 1 << (node % bits_per_word);
    let maxnode = (mask.len() * bits_per_word + 1) as libc::c_ulong;
    // SAFETY: `mask` outlives the call and holds `maxnode - 1` bits, as set_mempolicy(2) reads.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_set_mempolicy,
            MPOL_PREFERRED,
            mask.as_ptr(),
            maxnode,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_numa_preferred(_node: u32) -> Result<(), String> {
    Err("NUMA placement is only supported on Linux".to_string())
}

#[cfg(target_os = "linux")]
fn set_cpu_affinity(cpus: &[usize]) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain data; zeroed is its empty value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let max = std::mem::size_of::<libc::cpu_set_t>() * 8;
    for &cpu in cpus {
        if cpu >= max {
            return Err(format!(
                "cpu {cpu} is beyond the {max} CPUs a cpu_set_t holds"
            ));
        }
        // SAFETY: cpu < the capacity of `set`, checked above.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_cpu_affinity(_cpus: &[usize]) -> Result<(), String> {
    Err("CPU affinity is only supported on Linux".to_string())
}

/// The range of nice values (lowest first: -20 is the highest priority).
pub const NICE_RANGE: std::ops::RangeInclusive<i32> = -20..=19;

/// Sets the nice value of the calling thread. On Linux nice is a per-thread attribute and the
/// threads a thread creates afterwards inherit it, so calling this first thing in a thread (or
/// in a child before `exec`) sets the priority of everything it starts. Raising the value is
/// always allowed; lowering it below the current one needs `CAP_SYS_NICE` (or `RLIMIT_NICE`).
pub fn set_thread_nice(nice: i32) -> std::io::Result<()> {
    if !NICE_RANGE.contains(&nice) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("nice {nice} is outside -20..=19"),
        ));
    }
    set_nice_of(current_tid()?, nice)
}

/// The nice value of the calling thread.
pub fn thread_nice() -> std::io::Result<i32> {
    nice_of(current_tid()?)
}

#[cfg(target_os = "linux")]
fn set_nice_of(tid: u32, nice: i32) -> std::io::Result<()> {
    // SAFETY: setpriority takes plain integers; `who` is a thread id.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The nice value of the thread or process `id` (a process id names its main thread).
#[cfg(target_os = "linux")]
pub fn nice_of(id: u32) -> std::io::Result<i32> {
    // getpriority returns -1 both as a value and on error: errno tells them apart.
    // SAFETY: errno is thread-local; getpriority takes plain integers.
    unsafe {
        *libc::__errno_location() = 0;
        let v = libc::getpriority(libc::PRIO_PROCESS, id as libc::id_t);
        let errno = *libc::__errno_location();
        if v == -1 && errno != 0 {
            return Err(std::io::Error::from_raw_os_error(errno));
        }
        Ok(v)
    }
}

#[cfg(target_os = "linux")]
fn current_tid() -> std::io::Result<u32> {
    // SAFETY: gettid has no preconditions.
    Ok(unsafe { libc::gettid() } as u32)
}

/// The threads of process `pid` with their name (`comm`) and nice value, read from
/// `/proc/<pid>/task`; a thread that ends while it is read is left out, and a process that is
/// gone (or a system without `/proc`) gives none.
pub fn thread_nices(pid: u32) -> Vec<(String, i32)> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let dir = task.path();
            let name = fs::read_to_string(dir.join("comm")).ok()?;
            let stat = fs::read_to_string(dir.join("stat")).ok()?;
            // After the parenthesised name: state is field 0, nice field 16.
            let nice = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(16)?
                .parse()
                .ok()?;
            Some((name.trim_end().to_string(), nice))
        })
        .collect()
}

#[cfg(not(target_os = "linux"))]
fn unsupported() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "per-thread nice values are only supported on Linux",
    )
}

#[cfg(not(target_os = "linux"))]
fn set_nice_of(_tid: u32, _nice: i32) -> std::io::Result<()> {
    Err(unsupported())
}

/// The nice value of the thread or process `id` (Linux only).
#[cfg(not(target_os = "linux"))]
pub fn nice_of(_id: u32) -> std::io::Result<i32> {
    Err(unsupported())
}

#[cfg(not(target_os = "linux"))]
fn current_tid() -> std::io::Result<u32> {
    Err(unsupported())
}

fn join_cgroup(name: &str, cpuset: &str) -> Result<JoinedCgroup, String> {
    let rel = Path::new(name.trim_start_matches('/'));
    if rel
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(format!(
            "cgroup name {name:?} must be a plain relative path"
        ));
    }
    let root = Path::new(CGROUP_ROOT);
    let pid = std::process::id().to_string();
    if root.join("cgroup.controllers").exists() {
        join_cgroup_v2(root, rel, cpuset, &pid)
    } else if root.join("cpuset").join("cpuset.cpus").exists() {
        join_cgroup_v1(&root.join("cpuset"), rel, cpuset, &pid)
    } else {
        Err(format!(
            "no cgroup file system with a cpuset controller under {CGROUP_ROOT}"
        ))
    }
}

fn write_file(path: &Path, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| format!("write {value:?} to {}: {e}", path.display()))
}

fn join_cgroup_v2(
    root: &Path,
    rel: &Path,
    cpuset: &str,
    pid: &str,
) -> Result<JoinedCgroup, String> {
    let controllers = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    if !controllers.split_whitespace().any(|c| c == "cpuset") {
        return Err("the cgroup v2 root has no cpuset controller".to_string());
    }
    // Enable cpuset for every level above the leaf.
    let mut dir = root.to_path_buf();
    for comp in rel.components() {
        let _ = fs::write(dir.join("cgroup.subtree_control"), "+cpuset");
        dir.push(comp);
        if !dir.exists() {
            fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
    }
    write_file(&dir.join("cpuset.cpus"), cpuset)?;
    let previous_procs = current_cgroup_v2().map(|p| root.join(p).join("cgroup.procs"));
    write_file(&dir.join("cgroup.procs"), pid)?;
    Ok(JoinedCgroup {
        dir,
        previous_procs,
    })
}

fn current_cgroup_v2() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| PathBuf::from(p.trim_start_matches('/')))
}

fn join_cgroup_v1(
    root: &Path,
    rel: &Path,
    cpuset: &str,
    pid: &str,
) -> Result<JoinedCgroup, String> {
    let mut dir = root.to_path_buf();
    for comp in rel.components() {
        let parent = dir.clone();
        dir.push(comp);
        if !dir.exists() {
            fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            // A v1 cpuset cgroup takes no task until both cpus and mems are set.
            for file in ["cpuset.mems", "cpuset.cpus"] {
                let value = fs::read_to_string(parent.join(file)).unwrap_or_default();
                write_file(&dir.join(file), value.trim())?;
            }
        }
    }
    write_file(&dir.join("cpuset.cpus"), cpuset)?;
    write_file(&dir.join("tasks"), pid)?;
    Ok(JoinedCgroup {
        dir,
        previous_procs: Some(root.join("tasks")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_can_lower_its_own_priority_and_its_children_inherit_it() {
        let h = std::thread::spawn(|| {
            let before = thread_nice().expect("nice");
            let target = (before + 3).min(19);
            set_thread_nice(target).expect("raising nice is always allowed");
            let own = thread_nice().expect("nice");
            let child = std::thread::spawn(|| thread_nice().expect("nice"))
                .join()
                .expect("join");
            (before, own, child)
        });
        let (before, own, child) = h.join().expect("join");
        assert_eq!(own, (before + 3).min(19));
        assert_eq!(child, own, "a thread inherits its creator's nice");
        // The spawning thread is untouched: nice is per thread.
        assert_eq!(thread_nice().expect("nice"), before);
        let err = set_thread_nice(20).expect_err("out of range");
        assert!(err.to_string().contains("outside -20..=19"), "{err}");
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11").expect("valid"),
            vec![0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(parse_cpu_list(" 2 , 1 ,2").expect("valid"), vec![1, 2]);
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("1-x").is_err());
        assert!(
            parse_cpu_list("0-4000000000").is_err(),
            "no huge allocations"
        );
    }

    #[test]
    fn cgroup_names_must_stay_below_the_root() {
        assert!(join_cgroup("../escape", "0").is_err());
    }
}
