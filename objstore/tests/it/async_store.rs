//! `AsyncStore`: a blocking store used from async code, on the blocking pool.

use std::sync::Arc;

use objstore::conformance::Harness;
use objstore::{AsyncStore, ByteRange, Error};

#[tokio::test(flavor = "current_thread")]
async fn async_callers_get_the_same_store_without_blocking_the_runtime() {
    let h = crate::cplugin::harness();
    let store = AsyncStore::new(h.open(false));
    // A ticker on the same single-threaded runtime keeps running while the store works.
    let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
    };
    let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        store.put_bytes("a/obj", data.clone()).await.expect("put"),
        data.len() as u64
    );
    assert_eq!(
        store.stat("a/obj").await.expect("stat").size,
        data.len() as u64
    );
    assert_eq!(store.get_all("a/obj").await.expect("get"), data);
    assert_eq!(
        store
            .get_range("a/obj", ByteRange::new(10, 5))
            .await
            .expect("range"),
        &data[10..15]
    );
    let parts = store
        .get_ranges("a/obj", vec![ByteRange::new(0, 2), ByteRange::new(100, 3)])
        .await
        .expect("ranges");
    assert_eq!(parts, vec![data[0..2].to_vec(), data[100..103].to_vec()]);
    assert_eq!(store.list("a").await.expect("list").len(), 1);
    store.delete("a/obj").await.expect("delete");
    assert!(matches!(
        store.stat("a/obj").await,
        Err(Error::NotFound { .. })
    ));
    assert!(store.info().await.expect("info").kind == "memory");
    ticker.abort();
    assert!(
        ticks.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the runtime kept running"
    );
}
