//! Proving sectors kept in stores without local paths (object storage reached through an
//! objstore plugin such as S3): the challenged ranges of each replica and the small cache files
//! are fetched into a scratch directory for each proof. The code is shared with the workers'
//! wdpost threads and lives in [`vc_processors::builtin::post_fetch`].

pub use vc_processors::builtin::post_fetch::*;
