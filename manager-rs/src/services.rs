//! The services the API is served by, each owning its state; the daemon builds them once and
//! the RPC handlers only translate wire types to their calls.

use std::sync::Arc;

use crate::chain::views::ChainViews;
use crate::config::ManagerConfig;
use crate::deals::DealManager;
use crate::lifecycle::SectorLifecycle;
use crate::stores::{SectorIndex, StoreManager};
use crate::supervisor::Supervisor;
use crate::workers::WorkerRegistry;

/// Every service an API method reaches.
#[derive(Debug, Clone)]
pub struct Services {
    /// A sector's life from `AllocateSector` to `ReportFinalized`.
    pub lifecycle: Arc<SectorLifecycle>,
    /// The workers' pings.
    pub workers: WorkerRegistry,
    /// Randomness and the CLI's views of the chain.
    pub chain: ChainViews,
    /// Deals imported and laid into sectors.
    pub deals: Arc<DealManager>,
    /// The persist stores.
    pub stores: Arc<StoreManager>,
    /// Which store holds each persisted sector.
    pub index: SectorIndex,
    /// The config, for `GetMinerConfig`.
    pub cfg: Arc<ManagerConfig>,
    /// The background tasks, for `Damocles.Tasks`.
    pub supervisor: Arc<Supervisor>,
}
