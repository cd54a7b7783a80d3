//! `[[attached]]` (§6.6): the persist stores this worker writes sealed sectors to, a directory
//! or an objstore plugin with its settings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[[attached]]` (§6.6): a persist store. `Debug` hides `meta` values that look like secrets.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttachedConfig {
    /// Instance name; must equal the manager's name of the store. Unset: the canonical path of
    /// `location`. Required with `plugin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Required. Without `plugin`: an existing directory (this machine's mount of the store).
    /// With `plugin`: the store's path as the plugin understands it (informational for S3).
    pub location: PathBuf,
    /// Never offered as a persist candidate (still usable to read from). Default false.
    pub readonly: bool,
    /// Our addition: the objstore plugin implementing this store (`"s3"`, `"fs"`, …), loaded
    /// from `worker.plugin_dir`, so sector files are persisted straight into it. Unset: the
    /// directory at `location`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Our addition: the plugin's settings (strings only), as in the manager's `Meta` of this
    /// store (for S3: `Bucket`, `Endpoint`, `Region`, `Prefix`, …). Only used with `plugin`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

impl fmt::Debug for AttachedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let meta = vc_processors::layout::redact_meta(&self.meta);
        f.debug_struct("AttachedConfig")
            .field("name", &self.name)
            .field("location", &self.location)
            .field("readonly", &self.readonly)
            .field("plugin", &self.plugin)
            .field("meta", &meta)
            .finish()
    }
}
