//! The outbox: the one way the manager sends a message to the chain (PreCommits, ProveCommits,
//! WindowPoSts, recovery declarations).
//!
//! A message is recorded before it is pushed: its record goes into the state database in one
//! synced write, together with the state change that depends on it (the sectors that carry its
//! id). Then it is pushed under that id, which the chain treats as the message's identity, so
//! pushing again never sends it twice. The resender pushes every recorded message the chain
//! does not know yet, so a crash or a chain outage between the two steps loses nothing.
//!
//! A record ends when its message is executed (the record is deleted), when it expires unsent
//! (a WindowPoSt whose deadline closed: deleted), or when the chain refuses it: then it is
//! kept with the reason, and nothing pushes it again.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use damocles_manager_api::json::Cid;
use damocles_manager_api::types::{ChainEpoch, SectorId};
use serde::{Deserialize, Serialize};

use super::{new_message_id, Chain, ChainError, Message, MessageStatus};
use crate::kv::{cf, Kv, Op};
use crate::supervisor::Supervisor;

/// Key prefix of the records (collection `common`).
const PREFIX: &str = "outbox/";
/// How often the resender looks for recorded messages the chain does not know.
pub const RESEND_INTERVAL: Duration = Duration::from_secs(2);

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MessageKind {
    /// PreCommitSectorBatch2.
    Pre,
    /// ProveCommitSectors3.
    Prove,
    /// SubmitWindowedPoSt.
    WindowPoSt,
    /// DeclareFaultsRecovered.
    DeclareRecoveries,
}

/// A recorded message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// What it is for.
    pub kind: MessageKind,
    /// The sectors whose state carries its id (commitments).
    #[serde(default)]
    pub sectors: Vec<SectorId>,
    /// The message.
    pub message: Message,
    /// The last epoch it is of use at; the resender drops it unsent after that.
    #[serde(default)]
    pub expires: Option<ChainEpoch>,
    /// Why the chain refused it; nothing pushes it again.
    #[serde(default)]
    pub refused: Option<String>,
}

impl OutboxRecord {
    /// A record of `message` for `kind`, valid until it is executed.
    pub fn new(kind: MessageKind, message: Message) -> OutboxRecord {
        OutboxRecord {
            kind,
            sectors: Vec::new(),
            message,
            expires: None,
            refused: None,
        }
    }
}

/// What became of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// The chain has the message.
    Accepted,
    /// The chain could not take it now; the resender pushes it later.
    Deferred,
    /// The chain refused it, for this reason; it is not pushed again.
    Refused(String),
}

fn key(id: &Cid) -> Vec<u8> {
    format!("{PREFIX}{id}").into_bytes()
}

/// The outbox over the state database and the chain.
pub struct Outbox {
    kv: Kv,
    chain: Arc<dyn Chain>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    /// The outbox of `chain`, recorded in `kv`.
    pub fn new(kv: Kv, chain: Arc<dyn Chain>) -> Arc<Outbox> {
        Arc::new(Outbox { kv, chain })
    }

    /// Starts the resender (task `outbox`, every [`RESEND_INTERVAL`]).
    pub fn start(self: &Arc<Self>, supervisor: &Arc<Supervisor>) {
        let me = self.clone();
        supervisor.every("outbox", false, RESEND_INTERVAL, move || {
            let me = me.clone();
            async move { me.resend_once().await }
        });
    }

    /// A fresh id for `record`, and the write that records it, for a batch that changes the
    /// state depending on it in the same write; push it with [`Outbox::push`] once written.
    pub fn record_op(record: &OutboxRecord) -> Result<(Cid, Op)> {
        let id = new_message_id(&record.message)?;
        let op = Op::put_json(cf::COMMON, key(&id), record)?;
        Ok((id, op))
    }

    /// Records `record` (synced) and pushes its message; answers the message's id and what
    /// became of the push. An error means nothing was recorded.
    pub async fn send(&self, record: OutboxRecord) -> Result<(Cid, Pushed)> {
        let (id, op) = Outbox::record_op(&record)?;
        self.kv.write(vec![op])?;
        let pushed = self.push(&id, record.message).await?;
        Ok((id, pushed))
    }

    /// Pushes a recorded message. An unavailable chain is logged and the push deferred to the
    /// resender; a refusal is recorded in the message's record.
    pub async fn push(&self, id: &Cid, message: Message) -> Result<Pushed> {
        match self.chain.push_message(id, message).await {
            Ok(()) => Ok(Pushed::Accepted),
            Err(ChainError::Rejected(why)) => {
                self.refuse(id, &why)?;
                Ok(Pushed::Refused(why))
            }
            Err(e) => {
                tracing::warn!(message = %id, error = %e, "pushing failed; the resender retries");
                Ok(Pushed::Deferred)
            }
        }
    }

    fn refuse(&self, id: &Cid, why: &str) -> Result<()> {
        if let Some(mut record) = self.kv.get_json::<OutboxRecord>(cf::COMMON, &key(id))? {
            record.refused = Some(why.to_string());
            self.kv.put_json(cf::COMMON, &key(id), &record)?;
        }
        tracing::error!(message = %id, reason = why, "the chain refused a message; it is not sent again");
        Ok(())
    }

    /// The record of a message, if it is still in the outbox.
    pub fn get(&self, id: &Cid) -> Result<Option<OutboxRecord>> {
        self.kv.get_json(cf::COMMON, &key(id))
    }

    /// Every record, by message id.
    pub fn records(&self) -> Result<Vec<(Cid, OutboxRecord)>> {
        Ok(self
            .kv
            .scan_json::<OutboxRecord>(cf::COMMON, PREFIX.as_bytes())?
            .into_iter()
            .map(|(k, r)| {
                let id = String::from_utf8_lossy(&k[PREFIX.len()..]).into_owned();
                (Cid(id), r)
            })
            .collect())
    }

    /// One round of the resender: pushes recorded messages the chain does not know, forgets
    /// executed and expired ones. A refused message stays as it is.
    pub async fn resend_once(&self) -> Result<()> {
        let head = self.chain.head().await?.epoch;
        for (id, record) in self.records()? {
            if record.refused.is_some() {
                continue;
            }
            match self.chain.message_status(&id).await? {
                None if record.expires.is_some_and(|e| head > e) => {
                    tracing::info!(message = %id, kind = ?record.kind, "a recorded message expired before it was pushed; dropped");
                    self.kv.delete(cf::COMMON, &key(&id))?;
                }
                None => {
                    tracing::info!(message = %id, kind = ?record.kind, "pushing a recorded message");
                    self.push(&id, record.message).await?;
                }
                Some(MessageStatus::Executed { .. }) => self.kv.delete(cf::COMMON, &key(&id))?,
                Some(MessageStatus::Pending) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::devnet::testing::open_devnet;
    use crate::chain::devnet::Devnet;
    use crate::chain::MethodCall;

    use crate::util::block_on as run;

    fn devnet(kv: &Kv) -> Arc<Devnet> {
        let devnet = open_devnet(kv.clone(), |_| {});
        devnet.produce_block().expect("block");
        devnet
    }

    fn recoveries(to: u64) -> Message {
        Message {
            from: "t01000".into(),
            to,
            value: 0,
            call: MethodCall::DeclareFaultsRecovered { recoveries: vec![] },
        }
    }

    #[test]
    fn a_recorded_message_is_pushed_by_the_resender_once_and_forgotten_when_executed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = Kv::open(dir.path()).expect("kv");
        let chain = devnet(&kv);
        let outbox = Outbox::new(kv.clone(), chain.clone());
        // Recorded, then the manager dies before the push.
        let record = OutboxRecord::new(MessageKind::DeclareRecoveries, recoveries(1000));
        let (id, op) = Outbox::record_op(&record).expect("record");
        kv.write(vec![op]).expect("write");
        assert_eq!(run(chain.message_status(&id)).expect("status"), None);
        run(outbox.resend_once()).expect("resend");
        assert_eq!(
            run(chain.message_status(&id)).expect("status"),
            Some(MessageStatus::Pending)
        );
        // Pushing again changes nothing: the chain holds one message of that id.
        run(outbox.resend_once()).expect("resend");
        assert_eq!(
            run(chain.summary()).expect("summary")["pending_messages"],
            1
        );
        chain.produce_block().expect("block");
        run(outbox.resend_once()).expect("resend");
        assert!(
            outbox.get(&id).expect("get").is_none(),
            "executed: forgotten"
        );
    }

    #[test]
    fn a_refused_message_is_kept_with_its_reason_and_an_expired_one_is_dropped_unsent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = Kv::open(dir.path()).expect("kv");
        let chain = devnet(&kv);
        let outbox = Outbox::new(kv.clone(), chain.clone());
        // Another message already holds this id on chain: the chain refuses ours.
        let (id, op) = Outbox::record_op(&OutboxRecord::new(
            MessageKind::WindowPoSt,
            recoveries(1000),
        ))
        .expect("record");
        run(chain.push_message(&id, recoveries(2000))).expect("squatter");
        kv.write(vec![op]).expect("write");
        let pushed = run(outbox.push(&id, recoveries(1000))).expect("push");
        assert!(
            matches!(&pushed, Pushed::Refused(why) if why.contains("already used")),
            "{pushed:?}"
        );
        let kept = outbox.get(&id).expect("get").expect("kept");
        assert!(kept.refused.is_some());
        run(outbox.resend_once()).expect("resend");
        assert!(outbox.get(&id).expect("get").is_some(), "not retried, kept");

        let head = run(chain.head()).expect("head").epoch;
        let expired = OutboxRecord {
            expires: Some(head - 1),
            ..OutboxRecord::new(MessageKind::WindowPoSt, recoveries(1000))
        };
        let (late, op) = Outbox::record_op(&expired).expect("record");
        kv.write(vec![op]).expect("write");
        run(outbox.resend_once()).expect("resend");
        assert!(outbox.get(&late).expect("get").is_none(), "dropped");
        assert_eq!(
            run(chain.message_status(&late)).expect("status"),
            None,
            "never sent"
        );
    }

    #[test]
    fn records_of_earlier_versions_still_decode() {
        let old = serde_json::json!({
            "kind": "Pre",
            "sectors": [{"Miner": 1000, "Number": 1}],
            "message": serde_json::to_value(recoveries(1000)).expect("encode"),
        });
        let record: OutboxRecord = serde_json::from_value(old).expect("decode");
        assert_eq!(record.kind, MessageKind::Pre);
        assert_eq!(record.expires, None);
        assert_eq!(record.refused, None);
    }
}
