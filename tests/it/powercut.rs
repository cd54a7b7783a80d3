//! A power-cut harness: the processes under test run with `tests/powercut/powercut.c`
//! preloaded, which journals, for files under chosen roots, what was written since its last
//! fsync and which directory entries were made since their directory's last fsync. After the
//! processes are killed, [`PowerCut::cut`] undoes what a power cut would lose: entries that
//! were never made durable are removed and files written since their last fsync are emptied
//! (the worst a cut can leave of them). What survives is what the code made durable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The preload library, its journal and the roots it watches.
pub(crate) struct PowerCut {
    library: PathBuf,
    journal: PathBuf,
    roots: Vec<PathBuf>,
}

/// What one cut undid.
#[derive(Debug, Default)]
pub(crate) struct Undone {
    /// Entries never made durable, removed.
    pub(crate) removed: Vec<PathBuf>,
    /// Files written since their last fsync, emptied.
    pub(crate) emptied: Vec<PathBuf>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    /// Written since the last fsync of the file.
    dirty: bool,
    /// Made since the last fsync of its directory.
    new: bool,
}

impl PowerCut {
    /// Builds the preload library into `dir` (with the system's C compiler) for files under
    /// `roots`.
    pub(crate) fn new(dir: &Path, roots: Vec<PathBuf>) -> Self {
        std::fs::create_dir_all(dir).expect("power-cut dir");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("powercut/powercut.c");
        let library = dir.join("libpowercut.so");
        let out = Command::new("cc")
            .args([
                "-shared",
                "-fPIC",
                "-O2",
                "-Wall",
                "-Wno-format-truncation",
                "-o",
            ])
            .arg(&library)
            .arg(&source)
            .arg("-ldl")
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "building the power-cut library: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PowerCut {
            library,
            journal: dir.join("journal"),
            roots,
        }
    }

    /// The environment of a process whose writes a cut may undo.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        let roots: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
        vec![
            ("LD_PRELOAD".into(), self.library.display().to_string()),
            (
                "DAMOCLES_POWERCUT_JOURNAL".into(),
                self.journal.display().to_string(),
            ),
            ("DAMOCLES_POWERCUT_ROOTS".into(), roots.join(":")),
        ]
    }

    /// Undoes what was not durable when the (already killed) processes stopped, and starts a
    /// new journal: after the cut, everything left is durable.
    pub(crate) fn cut(&self) -> Undone {
        let text = std::fs::read_to_string(&self.journal).unwrap_or_default();
        let mut entries: BTreeMap<PathBuf, Entry> = BTreeMap::new();
        for line in text.lines() {
            let Some((kind, rest)) = line.split_once(' ') else {
                continue;
            };
            match kind {
                "W" => entries.entry(rest.into()).or_default().dirty = true,
                "S" => {
                    let synced = PathBuf::from(rest);
                    entries.entry(synced.clone()).or_default().dirty = false;
                    for (path, e) in entries.iter_mut() {
                        if path.parent() == Some(synced.as_path()) {
                            e.new = false;
                        }
                    }
                }
                "N" => entries.entry(rest.into()).or_default().new = true,
                "R" => {
                    let Some((from, to)) = rest.split_once('\t') else {
                        continue;
                    };
                    let (from, to) = (PathBuf::from(from), PathBuf::from(to));
                    let moved: Vec<(PathBuf, Entry)> = entries
                        .iter()
                        .filter(|(p, _)| p.starts_with(&from))
                        .map(|(p, e)| (p.clone(), *e))
                        .collect();
                    for (path, e) in moved {
                        entries.remove(&path);
                        let suffix = path.strip_prefix(&from).expect("under the source");
                        let target = if suffix.as_os_str().is_empty() {
                            to.clone()
                        } else {
                            to.join(suffix)
                        };
                        entries.insert(target, e);
                    }
                    entries.entry(to).or_default().new = true;
                }
                _ => {}
            }
        }
        let mut undone = Undone::default();
        for (path, e) in &entries {
            if e.new && path.symlink_metadata().is_ok() {
                let gone = if path.is_dir() && !path.is_symlink() {
                    std::fs::remove_dir_all(path)
                } else {
                    std::fs::remove_file(path)
                };
                gone.unwrap_or_else(|err| panic!("removing {}: {err}", path.display()));
                undone.removed.push(path.clone());
            }
        }
        for (path, e) in &entries {
            if e.dirty && !e.new && path.is_file() && !path.is_symlink() {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(0))
                    .unwrap_or_else(|err| panic!("emptying {}: {err}", path.display()));
                undone.emptied.push(path.clone());
            }
        }
        std::fs::write(&self.journal, b"").expect("a new journal");
        undone
    }
}

/// The harness itself: what a program left without fsync goes, what it made durable stays.
#[test]
fn a_cut_undoes_what_was_not_made_durable_and_keeps_what_was() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("old")).expect("root");
    std::fs::write(root.join("old/kept"), b"durable before").expect("old file");
    let cut = PowerCut::new(&dir.path().join("pc"), vec![root.clone()]);
    let script = r#"
import os
root = os.environ["ROOT"]
def fsync_dir(d):
    fd = os.open(d, os.O_RDONLY); os.fsync(fd); os.close(fd)
# Durable: written, fsynced, its directory fsynced; then renamed into place the same way.
with open(f"{root}/old/.tmp", "w") as f:
    f.write("durable"); f.flush(); os.fsync(f.fileno())
os.rename(f"{root}/old/.tmp", f"{root}/old/renamed")
fsync_dir(f"{root}/old")
# Not durable: a new directory and a file in it, nothing fsynced.
os.mkdir(f"{root}/new")
with open(f"{root}/new/lost", "w") as f:
    f.write("lost")
# An old file rewritten without fsync.
with open(f"{root}/old/kept", "w") as f:
    f.write("rewritten")
# Fsynced data in a directory that was not: the entry may be lost.
with open(f"{root}/old/unlinked", "w") as f:
    f.write("x"); f.flush(); os.fsync(f.fileno())
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script]).env("ROOT", &root);
    for (k, v) in cut.env() {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let undone = cut.cut();
    assert_eq!(
        undone.removed,
        vec![root.join("new"), root.join("old/unlinked")],
        "{undone:?}"
    );
    assert_eq!(undone.emptied, vec![root.join("old/kept")], "{undone:?}");
    assert_eq!(
        std::fs::read_to_string(root.join("old/renamed")).expect("renamed"),
        "durable"
    );
    assert_eq!(std::fs::read(root.join("old/kept")).expect("kept").len(), 0);
    assert!(cut.cut().removed.is_empty(), "a new journal after each cut");
}
