//! `ObjectStore`: exact sizes, SHA-256, nothing half-written.

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use portico_core::ports::ByteStream;
use portico_core::{Error, ObjectStore};

fn body(chunks: Vec<Vec<u8>>) -> ByteStream {
    stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c)))).boxed()
}

async fn read(store: &dyn ObjectStore, key: &str) -> Vec<u8> {
    let chunks: Vec<Bytes> = store.get(key).await.unwrap().try_collect().await.unwrap();
    chunks.concat()
}

/// `prefix` keeps this run's keys apart from others on a shared bucket.
pub async fn exact_sizes_and_nothing_half_written(store: &dyn ObjectStore, prefix: &str) {
    // Several parts, larger than one multipart part (5 MiB), so part handling is exercised.
    let big: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 1024 * 1024]).collect();
    let size = big.iter().map(Vec::len).sum::<usize>() as u64;
    let key = format!("{prefix}/big.bin");
    let stored = store.put(&key, body(big.clone()), size).await.unwrap();
    assert_eq!(stored.size, size);
    assert_eq!(stored.sha256.len(), 64);
    assert_eq!(read(store, &key).await, big.concat());

    let small = format!("{prefix}/small.csv");
    let stored =
        store.put(&small, body(vec![b"a,b\n".to_vec(), b"1,2\n".to_vec()]), 8).await.unwrap();
    // SHA-256 of "a,b\n1,2\n".
    assert_eq!(stored.sha256, "492d5ea496056f1a6a6592241032fab764c321596317930b4fa0e1e8bc3b7470");
    assert_eq!(read(store, &small).await, b"a,b\n1,2\n");

    // Longer than declared: TooLarge, and nothing under the key.
    let long = format!("{prefix}/long.bin");
    let err = store.put(&long, body(vec![vec![1; 10]]), 4).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge(_)), "{err:?}");
    assert!(matches!(store.get(&long).await, Err(Error::NotFound(_))));

    // Shorter than declared, or broken off: Validation, and nothing under the key.
    let short = format!("{prefix}/short.bin");
    let err = store.put(&short, body(vec![vec![1; 3]]), 4).await.unwrap_err();
    assert!(matches!(err, Error::Validation(_)), "{err:?}");
    assert!(matches!(store.get(&short).await, Err(Error::NotFound(_))));
    let broken: ByteStream = stream::iter(vec![
        Ok(Bytes::from_static(b"ab")),
        Err(std::io::Error::other("connection reset")),
    ])
    .boxed();
    let err = store.put(&format!("{prefix}/broken.bin"), broken, 4).await.unwrap_err();
    assert!(matches!(err, Error::Validation(_)), "{err:?}");

    assert!(matches!(store.get(&format!("{prefix}/missing")).await, Err(Error::NotFound(_))));
}
