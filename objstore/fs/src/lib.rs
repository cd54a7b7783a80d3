//! objstore-fs: the file-system backend of objstore (built as a plugin).
//!
//! Empty until the objstore issue lands.
