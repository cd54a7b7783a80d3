//! objstore-s3: the S3 backend of objstore, on the `object_store` crate.
//!
//! Usable as a plain Rust library ([`S3Store`]) and as the plugin `s3`
//! (`libobjstore_s3.so`). Objects are keys under an optional prefix in one bucket:
//! `sealed/s-t01000-1` is the key `<Prefix>/sealed/s-t01000-1`.
//!
//! Settings come from `Meta` (keys below). Where `Meta` is silent, these environment variables
//! are used: `AWS_ENDPOINT` (or `AWS_ENDPOINT_URL`), `AWS_REGION` (or `AWS_DEFAULT_REGION`),
//! `AWS_ALLOW_HTTP`, and the credentials `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`. Credentials are taken as a whole: when `Meta` has `AccessKey`, no
//! credential comes from the environment.
//!
//! | `Meta` key | meaning | default |
//! |---|---|---|
//! | `Bucket` | bucket name | required |
//! | `Endpoint` | service URL, e.g. `http://127.0.0.1:9000` | AWS |
//! | `Region` | region | `AWS_REGION`, `AWS_DEFAULT_REGION`, else `us-east-1` |
//! | `Prefix` | key prefix inside the bucket | none |
//! | `PathStyle` | `true`: `endpoint/bucket/key`; `false`: `bucket.endpoint/key` | `true` |
//! | `AccessKey`, `SecretKey`, `SessionToken` | credentials | environment |
//! | `AllowHttp` | allow plain HTTP | `true` if the endpoint (`Endpoint`, else `AWS_ENDPOINT`) is `http://` |
//! | `ConnectTimeoutSecs` | connection timeout | 5 |
//! | `ReadTimeoutSecs` | longest wait for data on a connection (there is no limit on a whole request: a sector read can take long) | 60 |
//! | `MaxRetries` | retries of a failed request, with exponential backoff | 5 |
//! | `RetryTimeoutSecs` | give up retrying after | 180 |
//! | `PartSize` | multipart part size in bytes (at least 5 MiB) | 8 MiB |
//! | `PartsInFlight` | parts uploaded at once | 4 |
//! | `RangesInFlight` | range requests at once in `get_ranges` | 16 |
//! | `RangeCoalesceBytes` | ranges closer than this are fetched as one request | 1 MiB |
//!
//! A put buffers at most one part before deciding: a smaller object is one PUT request; a
//! larger one is a multipart upload holding at most `PartsInFlight + 2` parts in memory,
//! aborted if the put fails or the writer is dropped. S3 allows 10 000 parts, so an object may
//! be at most `PartSize × 10 000` bytes (78 GiB with the default part size). S3 deletes of a
//! missing key succeed, so `delete` checks first and reports NotFound like every backend.
//! Nearby ranges of a `get_ranges` call are merged into requests of at most 16 MiB.
//!
//! Every method blocks; the store's requests run on one runtime shared by all S3 stores of the
//! process. Async code uses `objstore::AsyncStore`.

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as KeyPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore as _, ObjectStoreExt as _, PutPayload, RetryConfig,
    WriteMultipart,
};
use objstore::abi::Plugin;
use objstore::{
    path as objpath, ByteRange, Error, InstanceInfo, ObjectMeta, ObjectReader, ObjectStat,
    ObjectStore, ObjectWriter, Result, StoreConfig,
};

/// Smallest multipart part S3 accepts (except the last).
const MIN_PART: usize = 5 << 20;
/// Most parts of one multipart upload.
const MAX_PARTS: u64 = 10_000;
/// Largest request `get_ranges` makes by merging nearby ranges.
const MAX_MERGED: u64 = 16 << 20;

/// The runtime every S3 store of the process runs its requests on. It is never shut down, so
/// readers and writers outlive their store safely and dropping a store never blocks.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("objstore-s3")
        .enable_all()
        .build()
        .map_err(|e| Error::backend("s3", "open", "", e))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Tunables read from `Meta`.
#[derive(Debug, Clone)]
struct Tuning {
    part_size: usize,
    parts_in_flight: usize,
    ranges_in_flight: usize,
    coalesce: u64,
}

/// An S3 object store.
#[derive(Debug)]
pub struct S3Store {
    config: StoreConfig,
    client: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
    tuning: Tuning,
    runtime: &'static tokio::runtime::Runtime,
}

/// `Meta` with case-insensitive keys.
struct Meta<'a>(BTreeMap<String, &'a str>);

impl<'a> Meta<'a> {
    fn new(meta: &'a BTreeMap<String, String>) -> Self {
        Meta(
            meta.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.0
            .get(&key.to_ascii_lowercase())
            .copied()
            .filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, key: &str, default: T) -> std::result::Result<T, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("Meta.{key} = {v:?} is not a valid value")),
        }
    }

    fn flag(&self, key: &str, default: bool) -> std::result::Result<bool, String> {
        match self.get(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => Ok(false),
            Some(v) => Err(format!("Meta.{key} = {v:?} is not true or false")),
        }
    }
}

fn map_err(instance: &str, op: &'static str, path: &str, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::NotFound {
            instance: instance.to_string(),
            path: path.to_string(),
        },
        other => Error::backend(instance, op, path, other),
    }
}

impl S3Store {
    /// Opens a store from `config` (see the module documentation for the `Meta` keys), with
    /// this process's environment.
    pub fn open(config: StoreConfig) -> Result<Self> {
        Self::open_with_env(config, &|key| std::env::var(key).ok())
    }

    /// Opens a store, reading the environment variables through `env`.
    pub fn open_with_env(
        config: StoreConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let instance = config.instance().to_string();
        let invalid = |reason: String| Error::InvalidConfig {
            instance: instance.clone(),
            reason,
        };
        let meta = Meta::new(&config.meta);
        const KNOWN: [&str; 17] = [
            "bucket",
            "endpoint",
            "region",
            "prefix",
            "pathstyle",
            "accesskey",
            "secretkey",
            "sessiontoken",
            "allowhttp",
            "connecttimeoutsecs",
            "readtimeoutsecs",
            "maxretries",
            "retrytimeoutsecs",
            "partsize",
            "partsinflight",
            "rangesinflight",
            "rangecoalescebytes",
        ];
        for key in config.meta.keys() {
            if !KNOWN.contains(&key.to_ascii_lowercase().as_str()) {
                tracing::warn!(%instance, "Meta.{key} is not an S3 store setting; ignored");
            }
        }
        let bucket = meta
            .get("Bucket")
            .ok_or_else(|| invalid("Meta.Bucket is required for an S3 store".to_string()))?
            .to_string();
        let prefix = meta
            .get("Prefix")
            .unwrap_or("")
            .trim_matches('/')
            .to_string();
        if !prefix.is_empty() {
            objpath::validate(&prefix).map_err(|e| invalid(format!("Meta.Prefix: {e}")))?;
        }
        let env = |k: &str| env(k).filter(|v| !v.is_empty());
        let endpoint = meta
            .get("Endpoint")
            .map(str::to_string)
            .or_else(|| env("AWS_ENDPOINT"))
            .or_else(|| env("AWS_ENDPOINT_URL"));
        let plain_http = endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        let allow_http = match env("AWS_ALLOW_HTTP") {
            Some(v) if meta.get("AllowHttp").is_none() => {
                matches!(v.to_ascii_lowercase().as_str(), "true" | "1")
            }
            _ => meta.flag("AllowHttp", plain_http).map_err(invalid)?,
        };
        let region = meta
            .get("Region")
            .map(str::to_string)
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_string());
        let path_style = meta.flag("PathStyle", true).map_err(invalid)?;
        let connect_timeout = meta.parse("ConnectTimeoutSecs", 5u64).map_err(invalid)?;
        let read_timeout = meta.parse("ReadTimeoutSecs", 60u64).map_err(invalid)?;
        let max_retries = meta.parse("MaxRetries", 5usize).map_err(invalid)?;
        let retry_timeout = meta.parse("RetryTimeoutSecs", 180u64).map_err(invalid)?;
        let tuning = Tuning {
            part_size: meta.parse("PartSize", 8usize << 20).map_err(invalid)?,
            parts_in_flight: meta.parse("PartsInFlight", 4usize).map_err(invalid)?.max(1),
            ranges_in_flight: meta
                .parse("RangesInFlight", 16usize)
                .map_err(invalid)?
                .max(1),
            coalesce: meta
                .parse("RangeCoalesceBytes", 1u64 << 20)
                .map_err(invalid)?,
        };
        if tuning.part_size < MIN_PART {
            return Err(invalid(format!(
                "Meta.PartSize = {} is below the S3 minimum of {MIN_PART} bytes",
                tuning.part_size
            )));
        }
        // Credentials as a whole: from Meta, or else from the environment.
        let (access_key, secret_key, token) = match meta.get("AccessKey") {
            Some(key) => (
                Some(key.to_string()),
                meta.get("SecretKey").map(str::to_string),
                meta.get("SessionToken").map(str::to_string),
            ),
            None => (
                env("AWS_ACCESS_KEY_ID"),
                env("AWS_SECRET_ACCESS_KEY"),
                env("AWS_SESSION_TOKEN"),
            ),
        };
        if access_key.is_some() != secret_key.is_some() {
            return Err(invalid(
                "an access key needs its secret key (Meta.AccessKey with Meta.SecretKey, or AWS_ACCESS_KEY_ID with AWS_SECRET_ACCESS_KEY)"
                    .to_string(),
            ));
        }

        // The HTTP client uses rustls; give it the ring provider once per process.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            .with_region(&region)
            .with_virtual_hosted_style_request(!path_style)
            .with_allow_http(allow_http)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(allow_http)
                    .with_connect_timeout(Duration::from_secs(connect_timeout))
                    .with_timeout_disabled()
                    .with_read_timeout(Duration::from_secs(read_timeout)),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries,
                retry_timeout: Duration::from_secs(retry_timeout),
            });
        if let Some(endpoint) = &endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let (Some(key), Some(secret)) = (access_key, secret_key) {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
        }
        if let Some(token) = token {
            builder = builder.with_token(token);
        }
        let client = builder.build().map_err(|e| invalid(e.to_string()))?;
        Ok(S3Store {
            config,
            client: Arc::new(client),
            bucket,
            prefix,
            tuning,
            runtime: runtime()?,
        })
    }

    /// The key of an object: `<Prefix>/<path>`, used as it is (no percent-encoding), so keys
    /// written by other clients are reachable and `list` gives back the same names. A path
    /// the service could not take as a key is an invalid path.
    fn key(&self, path: &str) -> Result<KeyPath> {
        let raw = if self.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.prefix)
        };
        KeyPath::parse(&raw).map_err(|e| Error::InvalidPath {
            path: path.to_string(),
            reason: format!("not a valid S3 key: {e}"),
        })
    }

    fn err(&self, op: &'static str, path: &str, e: object_store::Error) -> Error {
        map_err(self.instance(), op, path, e)
    }

    fn size(&self, path: &str) -> Result<u64> {
        let key = self.key(path)?;
        self.runtime
            .block_on(self.client.head(&key))
            .map(|m| m.size)
            .map_err(|e| self.err("stat", path, e))
    }
}

/// Merges the non-empty ranges into disjoint requests sorted by start: overlapping or touching
/// ranges always merge; ranges closer than `gap` merge while the request stays within
/// `max_span` bytes.
fn coalesce(ranges: &[Range<u64>], gap: u64, max_span: u64) -> Vec<Range<u64>> {
    let mut sorted: Vec<Range<u64>> = ranges.iter().filter(|r| r.start < r.end).cloned().collect();
    sorted.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in sorted {
        match out.last_mut() {
            Some(last)
                if r.start <= last.end
                    || (r.start <= last.end.saturating_add(gap)
                        && r.end.max(last.end) - last.start <= max_span) =>
            {
                last.end = last.end.max(r.end)
            }
            _ => out.push(r),
        }
    }
    out
}

impl ObjectStore for S3Store {
    fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn info(&self) -> Result<InstanceInfo> {
        Ok(InstanceInfo {
            config: self.config.clone(),
            kind: "s3".to_string(),
            total: None,
            free: None,
            used: None,
        })
    }

    fn stat(&self, path: &str) -> Result<ObjectStat> {
        objpath::validate(path)?;
        Ok(ObjectStat {
            size: self.size(path)?,
        })
    }

    fn get(&self, path: &str) -> Result<ObjectReader> {
        objpath::validate(path)?;
        let key = self.key(path)?;
        let result = self
            .runtime
            .block_on(self.client.get(&key))
            .map_err(|e| self.err("get", path, e))?;
        Ok(Box::new(S3Reader {
            handle: self.runtime.handle().clone(),
            stream: result.into_stream(),
            current: Bytes::new(),
            instance: self.instance().to_string(),
            path: path.to_string(),
        }))
    }

    fn get_range(&self, path: &str, range: ByteRange) -> Result<Vec<u8>> {
        objpath::validate(path)?;
        if range.len == 0 {
            // Nothing to read, but a missing object is still NotFound.
            self.size(path)?;
            return Ok(Vec::new());
        }
        // One GET: the service clamps a range that runs past the end.
        let key = self.key(path)?;
        // Services parse range ends as signed 64-bit numbers.
        let end = range.offset.saturating_add(range.len).min(i64::MAX as u64);
        match self
            .runtime
            .block_on(self.client.get_range(&key, range.offset..end))
        {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(e @ object_store::Error::NotFound { .. }) => Err(self.err("get_range", path, e)),
            // A range that starts at or past the end is refused by the service: that reads
            // nothing. Anything else stays an error.
            Err(e) => match self.size(path)? {
                size if range.offset >= size => Ok(Vec::new()),
                _ => Err(self.err("get_range", path, e)),
            },
        }
    }

    fn get_ranges(&self, path: &str, ranges: &[ByteRange]) -> Result<Vec<Vec<u8>>> {
        objpath::validate(path)?;
        // Ranges are clamped to the object, so its size comes first (this also makes a
        // missing object NotFound even when every range is empty).
        let size = self.size(path)?;
        let wanted: Vec<Range<u64>> = ranges.iter().map(|r| r.clamp(size)).collect();
        let merged = coalesce(&wanted, self.tuning.coalesce, MAX_MERGED);
        let key = self.key(path)?;
        let client = self.client.clone();
        let fetched: Vec<Bytes> = self
            .runtime
            .block_on(
                futures::stream::iter(merged.clone())
                    .map(|r| {
                        let client = client.clone();
                        let key = key.clone();
                        async move { client.get_range(&key, r).await }
                    })
                    .buffered(self.tuning.ranges_in_flight)
                    .try_collect(),
            )
            .map_err(|e| self.err("get_ranges", path, e))?;
        let mut out = Vec::with_capacity(wanted.len());
        for r in &wanted {
            if r.start >= r.end {
                out.push(Vec::new());
                continue;
            }
            let i = merged.partition_point(|m| m.end < r.end);
            let (Some(m), Some(bytes)) = (merged.get(i), fetched.get(i)) else {
                return Err(Error::backend_msg(
                    self.instance(),
                    "get_ranges",
                    path,
                    "range bookkeeping failed",
                ));
            };
            let lo = (r.start - m.start) as usize;
            let hi = (r.end - m.start) as usize;
            if hi > bytes.len() {
                return Err(Error::backend_msg(
                    self.instance(),
                    "get_ranges",
                    path,
                    format!("the service returned {} bytes for {m:?}", bytes.len()),
                ));
            }
            out.push(bytes[lo..hi].to_vec());
        }
        Ok(out)
    }

    fn writer(&self, path: &str) -> Result<Box<dyn ObjectWriter>> {
        objpath::validate(path)?;
        self.config.ensure_writable("put", path)?;
        Ok(Box::new(S3Writer {
            client: self.client.clone(),
            handle: self.runtime.handle().clone(),
            key: self.key(path)?,
            tuning: self.tuning.clone(),
            buffer: Vec::new(),
            upload: None,
            written: 0,
            instance: self.instance().to_string(),
            path: path.to_string(),
        }))
    }

    fn delete(&self, path: &str) -> Result<()> {
        objpath::validate(path)?;
        self.config.ensure_writable("delete", path)?;
        // S3 deletes of a missing key succeed: check first, like every backend.
        self.size(path)?;
        let key = self.key(path)?;
        self.runtime
            .block_on(self.client.delete(&key))
            .map_err(|e| self.err("delete", path, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        objpath::validate_prefix(prefix)?;
        let base = if prefix.is_empty() {
            (!self.prefix.is_empty()).then(|| KeyPath::from(self.prefix.as_str()))
        } else {
            Some(self.key(prefix)?)
        };
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let metas: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.client.list(base.as_ref()).try_collect())
            .map_err(|e| self.err("list", prefix, e))?;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            let key = m.location.as_ref().to_string();
            let Some(rel) = key.strip_prefix(&strip) else {
                continue;
            };
            if objpath::validate(rel).is_ok() && objpath::is_under(rel, prefix) {
                out.push(ObjectMeta {
                    path: rel.to_string(),
                    size: m.size,
                });
            }
        }
        out.sort();
        Ok(out)
    }

    fn local_path(&self, path: &str) -> Result<Option<PathBuf>> {
        objpath::validate(path)?;
        Ok(None)
    }

    fn full_path(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}/{path}", self.bucket)
        } else {
            format!("s3://{}/{}/{path}", self.bucket, self.prefix)
        }
    }
}

/// A streaming read: chunks are pulled from the response body on the store's runtime.
struct S3Reader {
    handle: tokio::runtime::Handle,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    current: Bytes,
    instance: String,
    path: String,
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => {
                    return Err(std::io::Error::other(map_err(
                        &self.instance,
                        "get",
                        &self.path,
                        e,
                    )));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// A put in progress: one buffered part, then a multipart upload if the object is larger.
struct S3Writer {
    client: Arc<AmazonS3>,
    handle: tokio::runtime::Handle,
    key: KeyPath,
    tuning: Tuning,
    buffer: Vec<u8>,
    upload: Option<WriteMultipart>,
    written: u64,
    instance: String,
    path: String,
}

impl S3Writer {
    fn err(&self, e: object_store::Error) -> Error {
        map_err(&self.instance, "put", &self.path, e)
    }
}

impl ObjectWriter for S3Writer {
    fn write(&mut self, mut data: &[u8]) -> Result<()> {
        self.written += data.len() as u64;
        let limit = self.tuning.part_size as u64 * MAX_PARTS;
        if self.written > limit {
            return Err(Error::backend_msg(
                &self.instance,
                "put",
                &self.path,
                format!(
                    "the object is larger than {limit} bytes, the most 10000 parts of Meta.PartSize = {} can hold",
                    self.tuning.part_size
                ),
            ));
        }
        if self.upload.is_none() {
            let room = self.tuning.part_size - self.buffer.len();
            if data.len() <= room {
                self.buffer.extend_from_slice(data);
                return Ok(());
            }
            // More than one part: switch to a multipart upload.
            let upload = self
                .handle
                .block_on(self.client.put_multipart(&self.key))
                .map_err(|e| self.err(e))?;
            let mut multipart = WriteMultipart::new_with_chunk_size(upload, self.tuning.part_size);
            let _enter = self.handle.enter();
            multipart.put(Bytes::from(std::mem::take(&mut self.buffer)));
            self.upload = Some(multipart);
        }
        let Some(multipart) = self.upload.as_mut() else {
            return Err(Error::backend_msg(
                &self.instance,
                "put",
                &self.path,
                "no upload in progress",
            ));
        };
        while !data.is_empty() {
            // At most PartsInFlight parts uploading, one more started by this write, and the
            // one being filled.
            self.handle
                .block_on(multipart.wait_for_capacity(self.tuning.parts_in_flight))
                .map_err(|e| map_err(&self.instance, "put", &self.path, e))?;
            let take = data.len().min(self.tuning.part_size);
            let _enter = self.handle.enter();
            multipart.write(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<u64> {
        match self.upload.take() {
            Some(multipart) => {
                self.handle
                    .block_on(multipart.finish())
                    .map_err(|e| self.err(e))?;
            }
            None => {
                let payload = PutPayload::from(std::mem::take(&mut self.buffer));
                self.handle
                    .block_on(self.client.put(&self.key, payload))
                    .map_err(|e| self.err(e))?;
            }
        }
        Ok(self.written)
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if let Some(multipart) = self.upload.take() {
            // Abort in the background: a drop must not block (it may run on a runtime thread).
            let (instance, path) = (self.instance.clone(), self.path.clone());
            self.handle.spawn(async move {
                if let Err(e) = multipart.abort().await {
                    tracing::warn!(%instance, %path, "aborting a multipart upload failed: {e}");
                }
            });
        }
    }
}

impl Plugin for S3Store {
    const NAME: &'static str = "s3";

    fn open(config: StoreConfig) -> Result<Self> {
        S3Store::open(config)
    }
}

#[cfg(feature = "plugin")]
objstore::export_plugin!(S3Store);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearby_ranges_are_merged() {
        assert_eq!(
            coalesce(&[0..10, 12..20, 100..110], 5, 1000),
            vec![0..20, 100..110]
        );
        assert_eq!(coalesce(&[50..60, 0..10], 0, 1000), vec![0..10, 50..60]);
        assert_eq!(
            coalesce(&[0..10, 5..8, 3..3], 0, 1000),
            vec![0..10],
            "contained and empty ranges"
        );
        assert_eq!(
            coalesce(&[0..10, 12..20, 22..30], 5, 21),
            vec![0..20, 22..30],
            "nearby ranges stop merging at the span limit"
        );
        assert_eq!(
            coalesce(&[0..10, 5..40], 5, 20),
            vec![0..40],
            "overlapping ranges always merge"
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let open = |meta: &[(&str, &str)]| {
            let mut cfg = StoreConfig::new("s3test", "");
            for (k, v) in meta {
                cfg.meta.insert(k.to_string(), v.to_string());
            }
            S3Store::open(cfg).expect_err("refused").to_string()
        };
        assert!(open(&[]).contains("Meta.Bucket is required"));
        assert!(open(&[("Bucket", "b"), ("PartSize", "1024")]).contains("below the S3 minimum"));
        assert!(open(&[("Bucket", "b"), ("MaxRetries", "many")]).contains("Meta.MaxRetries"));
        assert!(open(&[("Bucket", "b"), ("PathStyle", "maybe")]).contains("Meta.PathStyle"));
        assert!(open(&[("Bucket", "b"), ("Prefix", "a/../b")]).contains("Meta.Prefix"));
    }
}
