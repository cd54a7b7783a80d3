//! objstore-s3: the S3 backend of objstore (built as a plugin).
//!
//! Empty until the objstore issue lands.
