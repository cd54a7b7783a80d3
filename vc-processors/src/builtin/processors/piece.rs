//! add_pieces: write pieces into the staged file (vc-processors-spec §5.2, §5.3).
//!
//! Each piece source yields exactly `piece_size` bytes: the first `payload_size` bytes of the
//! source, then zeros. Unlike damocles:
//! - a source shorter than its payload is an error naming the piece, not a silently wrong CommD;
//! - the piece list is checked for alignment and size before anything is written (each piece
//!   must start at a multiple of its own padded size and the pieces must fit the sector);
//! - the staged file is fsynced before the commitments are returned;
//! - with `PIECE_FETCHER_TOKEN` set, the bearer token goes with the first request as well as
//!   the redirected one.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use filecoin_proofs_api::{PaddedBytesAmount, PieceInfo, UnpaddedBytesAmount};

use super::super::proofs::{guard, zero_piece_commitment};
use super::super::tasks::{AddPieces, Piece, PieceFile};

/// Environment variable with the bearer token for piece downloads.
pub const ENV_PIECE_FETCHER_TOKEN: &str = "PIECE_FETCHER_TOKEN";

/// How long a piece download may deliver no data before it fails.
pub const PIECE_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs an add_pieces task; `token` is the bearer token for piece downloads.
pub fn add_pieces(task: &AddPieces, token: Option<&str>) -> Result<Vec<PieceInfo>> {
    let proof = task.seal_proof_type;
    let sector_size = u64::from(proof.sector_size());
    check_layout(&task.pieces, sector_size)?;

    let path = &task.staged_filepath;
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("open staged file {}", path.display()))?;

    if task.pieces.is_empty() {
        // A CC sector: a sparse zero sector and the commitment of zeros.
        file.set_len(sector_size)
            .with_context(|| format!("size staged file {}", path.display()))?;
        file.sync_all()
            .with_context(|| format!("sync staged file {}", path.display()))?;
        let comm = zero_piece_commitment(sector_size)?;
        let size = UnpaddedBytesAmount::from(PaddedBytesAmount(sector_size));
        return Ok(vec![PieceInfo::new(comm, size)?]);
    }

    let mut infos = Vec::with_capacity(task.pieces.len());
    for (index, piece) in task.pieces.iter().enumerate() {
        let describe = || format!("piece {index} ({})", describe_source(&piece.piece_file));
        let reader = open_piece(piece, token).with_context(describe)?;
        let (info, _) = guard("add_pieces", || {
            filecoin_proofs_api::seal::write_and_preprocess(
                proof,
                reader,
                &mut file,
                piece.piece_size,
            )
        })
        .with_context(describe)?;
        infos.push(info);
    }
    file.sync_all()
        .with_context(|| format!("sync staged file {}", path.display()))?;
    Ok(infos)
}

fn describe_source(file: &PieceFile) -> String {
    match file {
        PieceFile::Url(url) => format!("url {url}"),
        PieceFile::Local(path) => format!("local file {}", path.display()),
        PieceFile::Pledge => "pledge".to_string(),
    }
}

/// Checks that the pieces are valid sizes, aligned, and fit the sector.
fn check_layout(pieces: &[Piece], sector_size: u64) -> Result<()> {
    let mut offset = 0u64;
    for (index, piece) in pieces.iter().enumerate() {
        let unpadded = u64::from(piece.piece_size);
        ensure!(
            unpadded.is_multiple_of(127),
            "piece {index}: piece_size {unpadded} is not an unpadded size (a multiple of 127)"
        );
        let padded = unpadded / 127 * 128;
        ensure!(
            padded >= 128 && padded.is_power_of_two(),
            "piece {index}: piece_size {unpadded} pads to {padded} bytes, which is not a power of two of at least 128"
        );
        ensure!(
            piece.payload_size <= unpadded,
            "piece {index}: payload size {} is larger than the piece size {unpadded}",
            piece.payload_size
        );
        ensure!(
            offset.is_multiple_of(padded),
            "piece {index}: starts at padded offset {offset}, which is not aligned to its padded size {padded}; the piece list must include filler pieces"
        );
        offset += padded;
        ensure!(
            offset <= sector_size,
            "piece {index}: the pieces take {offset} padded bytes, more than the sector size {sector_size}"
        );
    }
    Ok(())
}

/// A reader of exactly `piece_size` bytes for one piece.
fn open_piece(piece: &Piece, token: Option<&str>) -> Result<Box<dyn Read + Send>> {
    let target = u64::from(piece.piece_size);
    let source: Box<dyn Read + Send> = match &piece.piece_file {
        PieceFile::Pledge => return Ok(Box::new(io::repeat(0).take(target))),
        PieceFile::Local(path) => {
            Box::new(std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?)
        }
        PieceFile::Url(url) => Box::new(IdleTimeoutReader::spawn(
            fetch_url(url, token)?,
            PIECE_IDLE_TIMEOUT,
        )),
    };
    Ok(Box::new(
        ExactPayload {
            inner: source,
            remaining: piece.payload_size,
            payload: piece.payload_size,
        }
        .chain(io::repeat(0).take(target - piece.payload_size)),
    ))
}

/// Yields exactly `payload` bytes of `inner`, failing if it ends sooner.
struct ExactPayload<R> {
    inner: R,
    remaining: u64,
    payload: u64,
}

impl<R: Read> Read for ExactPayload<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the piece source ended after {} of its {} payload bytes",
                    self.payload - self.remaining,
                    self.payload
                ),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn http_clients() -> Result<&'static (reqwest::blocking::Client, reqwest::blocking::Client)> {
    static CLIENTS: OnceLock<(reqwest::blocking::Client, reqwest::blocking::Client)> =
        OnceLock::new();
    if let Some(c) = CLIENTS.get() {
        return Ok(c);
    }
    let build = |redirect: reqwest::redirect::Policy| {
        reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_keepalive(Duration::from_secs(120))
            .pool_max_idle_per_host(10)
            // Pieces can be tens of GiB: no limit on the whole transfer.
            .timeout(None)
            .redirect(redirect)
            .build()
            .context("build the HTTP client for piece downloads")
    };
    let clients = (
        build(reqwest::redirect::Policy::none())?,
        build(reqwest::redirect::Policy::default())?,
    );
    Ok(CLIENTS.get_or_init(|| clients))
}

/// GETs a piece. A 3xx answer is followed once with the token and the market namespace header
/// (the manager's `/piecestore/` redirects to the market).
fn fetch_url(url: &str, token: Option<&str>) -> Result<reqwest::blocking::Response> {
    let (direct, following) = http_clients()?;
    let mut req = direct.get(url);
    if let Some(token) = &token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().with_context(|| format!("GET {url}"))?;
    let resp = if resp.status().is_redirection() {
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .with_context(|| format!("GET {url}: {} without a Location header", resp.status()))?
            .to_str()
            .with_context(|| format!("GET {url}: unreadable Location header"))?;
        let target = resp
            .url()
            .join(location)
            .with_context(|| format!("GET {url}: bad Location {location:?}"))?;
        let mut req = following.get(target.clone());
        if let Some(token) = &token {
            req = req
                .bearer_auth(token)
                .header("X-VENUS-API-NAMESPACE", "v1.IMarket");
        }
        req.send()
            .with_context(|| format!("GET {target} (redirected from {url})"))?
    } else {
        resp
    };
    if !resp.status().is_success() {
        bail!(
            "get resource {} failed: invalid status code {}",
            resp.url(),
            resp.status()
        );
    }
    Ok(resp)
}

/// A reader that fails when its source delivers nothing for `idle`: the source is read on a
/// helper thread that hands over chunks. (A stalled connection keeps that thread until the
/// connection ends; TCP keepalive ends a dead one.)
struct IdleTimeoutReader {
    chunks: crossbeam_channel::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
    idle: Duration,
    done: bool,
}

impl IdleTimeoutReader {
    fn spawn<R: Read + Send + 'static>(mut source: R, idle: Duration) -> Self {
        let (tx, chunks) = crossbeam_channel::bounded(4);
        let spawned = std::thread::Builder::new()
            .name("piece-download".to_string())
            .spawn(move || loop {
                let mut chunk = vec![0u8; 1 << 16];
                match source.read(&mut chunk) {
                    Ok(n) => {
                        chunk.truncate(n);
                        if tx.send(Ok(chunk)).is_err() || n == 0 {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            });
        let (tx_err, rx_err) = crossbeam_channel::bounded(1);
        let chunks = match spawned {
            Ok(_) => chunks,
            Err(e) => {
                let _ = tx_err.send(Err(e));
                rx_err
            }
        };
        IdleTimeoutReader {
            chunks,
            current: Vec::new(),
            pos: 0,
            idle,
            done: false,
        }
    }
}

impl Read for IdleTimeoutReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.chunks.recv_timeout(self.idle) {
                Ok(Ok(chunk)) if chunk.is_empty() => self.done = true,
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the piece source sent no data for {:?}", self.idle),
                    ))
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other("the piece download thread ended"))
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(size: u64, payload: u64) -> Piece {
        Piece {
            piece_file: PieceFile::Pledge,
            payload_size: payload,
            piece_size: UnpaddedBytesAmount(size),
        }
    }

    #[test]
    fn layout_checks_name_the_bad_piece() {
        // 2 KiB sector: 1016 + 508 + 508 fits and is aligned.
        check_layout(&[piece(1016, 1016), piece(508, 0), piece(508, 0)], 2048).expect("aligned");
        let e = check_layout(&[piece(508, 0), piece(1016, 0)], 2048).expect_err("misaligned");
        assert!(
            e.to_string()
                .contains("piece 1: starts at padded offset 512"),
            "{e}"
        );
        let e = check_layout(&[piece(1016, 0), piece(1016, 0), piece(127, 0)], 2048)
            .expect_err("too big");
        assert!(e.to_string().contains("piece 2"), "{e}");
        let e = check_layout(&[piece(1000, 0)], 2048).expect_err("not unpadded");
        assert!(e.to_string().contains("multiple of 127"), "{e}");
        let e = check_layout(&[piece(381, 0)], 2048).expect_err("not a power of two");
        assert!(e.to_string().contains("power of two"), "{e}");
        let e = check_layout(&[piece(127, 128)], 2048).expect_err("payload too large");
        assert!(e.to_string().contains("payload size 128"), "{e}");
    }

    #[test]
    fn idle_sources_time_out_and_fast_ones_pass_through() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut r =
            IdleTimeoutReader::spawn(std::io::Cursor::new(data.clone()), Duration::from_secs(5));
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        assert_eq!(out, data);

        struct Stall;
        impl Read for Stall {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(0)
            }
        }
        let mut r = IdleTimeoutReader::spawn(Stall, Duration::from_millis(100));
        let e = r.read(&mut [0u8; 8]).expect_err("stalls");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn short_sources_are_errors() {
        let mut r = ExactPayload {
            inner: &b"abc"[..],
            remaining: 5,
            payload: 5,
        };
        let mut buf = Vec::new();
        let e = r.read_to_end(&mut buf).expect_err("short");
        assert!(
            e.to_string().contains("after 3 of its 5 payload bytes"),
            "{e}"
        );
    }
}
