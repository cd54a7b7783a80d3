//! Sector numbers and sector states (manager-spec §1.3, §1.4).
//!
//! Numbers: per miner, the last allocated number as an unsigned varint under
//! `meta/sector-number//m-<miner>` (damocles' key, double slash included). States: JSON
//! `SectorState` under `meta/sector-states/m-<miner>-n-<number>` while a worker works on the
//! sector (online) and `offline_meta/sector-states-offline/…` once it is finalized or aborted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use damocles_manager_api::types::{SectorId, SectorJob, SectorState, SectorWorkerState};

use crate::kv::{cf, Kv, Op};

/// The per-miner sector number counter.
#[derive(Debug)]
pub struct NumberAllocator {
    kv: Kv,
    lock: Mutex<()>,
}

fn number_key(miner: u64) -> Vec<u8> {
    format!("sector-number//m-{miner}").into_bytes()
}

impl NumberAllocator {
    /// Over the state database.
    pub fn new(kv: Kv) -> Self {
        NumberAllocator {
            kv,
            lock: Mutex::new(()),
        }
    }

    /// The last number allocated for `miner` (0 if none).
    pub fn last(&self, miner: u64) -> Result<u64> {
        match self.kv.get(cf::META, &number_key(miner))? {
            None => Ok(0),
            Some(v) => unsigned_varint::decode::u64(&v)
                .map(|(n, _)| n)
                .map_err(|e| {
                    anyhow::anyhow!("the sector number counter of miner {miner} is corrupt: {e}")
                }),
        }
    }

    /// Allocates `count` numbers above `min` for `miner`; `None` when they would exceed
    /// `max` (nothing is consumed then). Returns the last number allocated: the new numbers
    /// are `last-count+1 ..= last`. The counter is synced before this returns.
    pub fn next_n(
        &self,
        miner: u64,
        count: u64,
        min: u64,
        max: Option<u64>,
    ) -> Result<Option<u64>> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let cur = self.last(miner)?.max(min);
        let last = cur.checked_add(count).context("sector number overflow")?;
        if max.is_some_and(|m| last > m) {
            return Ok(None);
        }
        let mut buf = unsigned_varint::encode::u64_buffer();
        let bytes = unsigned_varint::encode::u64(last, &mut buf);
        self.kv.put(cf::META, &number_key(miner), bytes)?;
        Ok(Some(last))
    }
}

/// Sector states, online and offline, with per-sector locking.
#[derive(Debug)]
pub struct SectorStates {
    kv: Kv,
    locks: Mutex<HashMap<SectorId, Arc<Mutex<()>>>>,
}

fn state_key(ws: SectorWorkerState, sid: SectorId) -> (&'static str, Vec<u8>) {
    match ws {
        SectorWorkerState::Online => (
            cf::META,
            format!("sector-states/m-{}-n-{}", sid.miner, sid.number).into_bytes(),
        ),
        SectorWorkerState::Offline => (
            cf::OFFLINE_META,
            format!("sector-states-offline/m-{}-n-{}", sid.miner, sid.number).into_bytes(),
        ),
    }
}

fn prefix(ws: SectorWorkerState) -> (&'static str, &'static [u8]) {
    match ws {
        SectorWorkerState::Online => (cf::META, b"sector-states/"),
        SectorWorkerState::Offline => (cf::OFFLINE_META, b"sector-states-offline/"),
    }
}

/// A sector held for a read-modify-write.
pub type SectorLock = Arc<Mutex<()>>;

impl SectorStates {
    /// Over the state database.
    pub fn new(kv: Kv) -> Self {
        SectorStates {
            kv,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The lock of one sector (hold its guard across a read-modify-write).
    pub fn lock(&self, sid: SectorId) -> SectorLock {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.len() > 4096 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(sid).or_default().clone()
    }

    /// Creates online states; fails (writing none) if any exists.
    pub fn init(&self, states: &[SectorState]) -> Result<()> {
        let mut ops = Vec::with_capacity(states.len());
        for st in states {
            let (c, k) = state_key(SectorWorkerState::Online, st.id);
            if self.kv.get(c, &k)?.is_some() {
                bail!("the state of sector {} already exists", st.id);
            }
            ops.push(Op::put_json(c, k, st)?);
        }
        self.kv.write(ops)
    }

    /// Loads a state.
    pub fn load(&self, sid: SectorId, ws: SectorWorkerState) -> Result<Option<SectorState>> {
        let (c, k) = state_key(ws, sid);
        self.kv.get_json(c, &k)
    }

    /// Loads the online state, else the offline one.
    pub fn load_any(&self, sid: SectorId) -> Result<Option<(SectorWorkerState, SectorState)>> {
        for ws in [SectorWorkerState::Online, SectorWorkerState::Offline] {
            if let Some(st) = self.load(sid, ws)? {
                return Ok(Some((ws, st)));
            }
        }
        Ok(None)
    }

    /// Writes a state as it is.
    pub fn save(&self, ws: SectorWorkerState, st: &SectorState) -> Result<()> {
        let (c, k) = state_key(ws, st.id);
        self.kv.put_json(c, &k, st)
    }

    /// Loads, changes and writes a state under the sector's lock; `None` if it is missing.
    pub fn update<T>(
        &self,
        sid: SectorId,
        ws: SectorWorkerState,
        f: impl FnOnce(&mut SectorState) -> Result<T>,
    ) -> Result<Option<T>> {
        let lock = self.lock(sid);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut st) = self.load(sid, ws)? else {
            return Ok(None);
        };
        let out = f(&mut st)?;
        self.save(ws, &st)?;
        Ok(Some(out))
    }

    /// Changes several online states and applies `extra` in one atomic write; `f` answers
    /// whether it changed a state. All or nothing: a sector that is not online, or an error from
    /// `f`, fails the call with nothing written. Returns the sectors changed.
    pub fn update_batch(
        &self,
        sids: &[SectorId],
        extra: Vec<Op>,
        mut f: impl FnMut(&mut SectorState) -> Result<bool>,
    ) -> Result<Vec<SectorId>> {
        let mut sorted = sids.to_vec();
        sorted.sort();
        sorted.dedup();
        let locks: Vec<SectorLock> = sorted.iter().map(|s| self.lock(*s)).collect();
        let _guards: Vec<_> = locks
            .iter()
            .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let mut ops = extra;
        let mut changed = Vec::new();
        for sid in sorted {
            let Some(mut st) = self.load(sid, SectorWorkerState::Online)? else {
                bail!("sector {sid} is no longer online");
            };
            if f(&mut st)? {
                let (c, k) = state_key(SectorWorkerState::Online, sid);
                ops.push(Op::put_json(c, k, &st)?);
                changed.push(sid);
            }
        }
        self.kv.write(ops)?;
        Ok(changed)
    }

    /// Moves an online sector offline with `Finalized = true`, after `hook` (which may change
    /// the state, or answer `false` to keep it online). Atomic. `None` if it is not online.
    pub fn finalize(
        &self,
        sid: SectorId,
        hook: impl FnOnce(&mut SectorState) -> Result<bool>,
    ) -> Result<Option<bool>> {
        let lock = self.lock(sid);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut st) = self.load(sid, SectorWorkerState::Online)? else {
            return Ok(None);
        };
        if !hook(&mut st)? {
            self.save(SectorWorkerState::Online, &st)?;
            return Ok(Some(false));
        }
        st.finalized = true;
        let (on_cf, on_key) = state_key(SectorWorkerState::Online, sid);
        let (off_cf, off_key) = state_key(SectorWorkerState::Offline, sid);
        self.kv.write(vec![
            Op::put_json(off_cf, off_key, &st)?,
            Op::Del(on_cf, on_key),
        ])?;
        Ok(Some(true))
    }

    /// Moves an offline sector back online with `Finalized = false`, after `hook` (which may
    /// refuse with an error). Atomic. `false` if it is not offline.
    pub fn restore(
        &self,
        sid: SectorId,
        hook: impl FnOnce(&mut SectorState) -> Result<()>,
    ) -> Result<bool> {
        let lock = self.lock(sid);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut st) = self.load(sid, SectorWorkerState::Offline)? else {
            return Ok(false);
        };
        hook(&mut st)?;
        st.finalized = false;
        let (on_cf, on_key) = state_key(SectorWorkerState::Online, sid);
        let (off_cf, off_key) = state_key(SectorWorkerState::Offline, sid);
        self.kv.write(vec![
            Op::put_json(on_cf, on_key, &st)?,
            Op::Del(off_cf, off_key),
        ])?;
        Ok(true)
    }

    /// Stores an imported state; `false` if one exists and `override_existing` is off.
    pub fn import(
        &self,
        ws: SectorWorkerState,
        st: &SectorState,
        override_existing: bool,
    ) -> Result<bool> {
        let lock = self.lock(st.id);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        if !override_existing && self.load(st.id, ws)?.is_some() {
            return Ok(false);
        }
        self.save(ws, st)?;
        Ok(true)
    }

    /// Every state of a store matching a job filter, by miner and number.
    pub fn all(&self, ws: SectorWorkerState, job: SectorJob) -> Result<Vec<SectorState>> {
        let (c, p) = prefix(ws);
        let mut out: Vec<SectorState> = self
            .kv
            .scan_json::<SectorState>(c, p)?
            .into_iter()
            .map(|(_, st)| st)
            .filter(|st| st.matches_job(job))
            .collect();
        out.sort_by_key(|st| st.id);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use damocles_manager_api::types::SealProofType;

    #[test]
    fn numbers_start_above_min_never_repeat_and_respect_max() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = Kv::open(dir.path()).expect("open");
        let alloc = NumberAllocator::new(kv.clone());
        assert_eq!(alloc.next_n(7, 1, 10, Some(13)).expect("a"), Some(11));
        assert_eq!(alloc.next_n(7, 2, 10, Some(13)).expect("b"), Some(13));
        assert_eq!(
            alloc.next_n(7, 1, 10, Some(13)).expect("c"),
            None,
            "max reached"
        );
        assert_eq!(
            alloc.last(7).expect("last"),
            13,
            "a refusal consumes nothing"
        );
        assert_eq!(alloc.next_n(8, 1, 0, None).expect("other miner"), Some(1));
        // Damocles' encoding: an unsigned varint of the last number.
        assert_eq!(
            kv.get(cf::META, b"sector-number//m-7").expect("raw"),
            Some(vec![13])
        );
    }

    #[test]
    fn finalize_and_restore_move_states_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let states = SectorStates::new(Kv::open(dir.path()).expect("open"));
        let sid = SectorId {
            miner: 1,
            number: 2,
        };
        states
            .init(&[SectorState::new(sid, SealProofType(5))])
            .expect("init");
        assert!(states
            .init(&[SectorState::new(sid, SealProofType(5))])
            .is_err());
        let moved = states
            .finalize(sid, |st| {
                st.abort_reason = "gone".into();
                Ok(true)
            })
            .expect("finalize");
        assert_eq!(moved, Some(true));
        assert!(states
            .load(sid, SectorWorkerState::Online)
            .expect("on")
            .is_none());
        let off = states
            .load(sid, SectorWorkerState::Offline)
            .expect("off")
            .expect("offline");
        assert!(off.finalized);
        assert_eq!(off.abort_reason, "gone");
        assert!(states.restore(sid, |_| Ok(())).expect("restore"));
        let on = states
            .load(sid, SectorWorkerState::Online)
            .expect("on")
            .expect("online");
        assert!(!on.finalized);
        assert_eq!(
            states
                .all(SectorWorkerState::Online, SectorJob::All)
                .expect("all")
                .len(),
            1
        );
    }
}
