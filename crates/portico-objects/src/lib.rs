//! The `ObjectStore` port on the `object_store` crate. Locally: files under the data dir. Objects are
//! written as multipart uploads, so a partial upload is never visible under its key, and at most
//! two parts are in flight, so memory stays constant whatever the file size.

mod signed;

use std::sync::Arc;

use async_trait::async_trait;
use aws_lc_rs::digest;
use futures_util::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};
use portico_core::ports::ByteStream;
use portico_core::{Error, ObjectStore, Result, StoredObject};

pub use signed::{SignedUrls, UploadGrant};

/// Parts written at a time: bounds the memory an upload takes (2 x 5 MiB parts).
const PARTS_IN_FLIGHT: usize = 2;

pub struct Objects {
    store: Arc<dyn object_store::ObjectStore>,
}

impl Objects {
    /// Objects kept as files under `dir` (created if missing).
    pub fn local(dir: &std::path::Path) -> Result<Objects> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating object directory {}: {e}", dir.display()))?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| anyhow::anyhow!("opening object directory {}: {e}", dir.display()))?;
        Ok(Objects { store: Arc::new(store) })
    }
}

impl Objects {
    /// Objects kept in any `object_store` backend (the AWS host passes its S3 bucket).
    pub fn from_store(store: Arc<dyn object_store::ObjectStore>) -> Objects {
        Objects { store }
    }
}

fn path(key: &str) -> Result<Path> {
    // Keys are made by Portico from ids; this refuses anything that could escape the store.
    if key.is_empty() || key.contains("..") || key.starts_with('/') || key.contains(['\\', '\0']) {
        return Err(Error::Unexpected(anyhow::anyhow!("refusing object key {key:?}")));
    }
    Path::parse(key).map_err(|e| Error::Unexpected(anyhow::anyhow!("bad object key {key:?}: {e}")))
}

#[async_trait]
impl ObjectStore for Objects {
    async fn put(&self, key: &str, mut body: ByteStream, expected: u64) -> Result<StoredObject> {
        let location = path(key)?;
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(|e| anyhow::anyhow!("starting upload of {key}: {e}"))?;
        let mut writer = WriteMultipart::new(upload);
        let mut hash = digest::Context::new(&digest::SHA256);
        let mut size: u64 = 0;
        let failure = loop {
            let chunk = match body.next().await {
                None => break None,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    break Some(Error::Validation(vec![portico_core::FieldError::new(
                        "body",
                        format!("the upload was interrupted: {e}"),
                    )]));
                }
            };
            size += chunk.len() as u64;
            if size > expected {
                break Some(Error::TooLarge(format!(
                    "the body is larger than the {expected} bytes declared"
                )));
            }
            hash.update(&chunk);
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                break Some(Error::Unexpected(anyhow::anyhow!("writing {key}: {e}")));
            }
            writer.put(chunk);
        };
        let failure = failure.or_else(|| {
            (size != expected).then(|| {
                Error::Validation(vec![portico_core::FieldError::new(
                    "body",
                    format!("the body has {size} bytes, {expected} were declared"),
                )])
            })
        });
        if let Some(error) = failure {
            let _ = writer.abort().await;
            return Err(error);
        }
        writer.finish().await.map_err(|e| anyhow::anyhow!("completing upload of {key}: {e}"))?;
        Ok(StoredObject { size, sha256: hex(hash.finish().as_ref()) })
    }

    async fn get(&self, key: &str) -> Result<ByteStream> {
        let location = path(key)?;
        match self.store.get(&location).await {
            Ok(result) => {
                Ok(result.into_stream().map_err(|e| std::io::Error::other(e.to_string())).boxed())
            }
            Err(object_store::Error::NotFound { .. }) => {
                Err(Error::NotFound(format!("object `{key}` not found")))
            }
            Err(e) => Err(Error::Unexpected(anyhow::anyhow!("reading {key}: {e}"))),
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn stream(chunks: Vec<&'static [u8]>) -> ByteStream {
        futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))).boxed()
    }

    #[tokio::test]
    async fn writes_are_all_or_nothing_and_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let objects = Objects::local(dir.path()).expect("store");
        let stored = objects
            .put("documents/a/1", stream(vec![b"hello ", b"world"]), 11)
            .await
            .expect("stored");
        assert_eq!(stored.size, 11);
        assert_eq!(
            stored.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        let read: Vec<Bytes> =
            objects.get("documents/a/1").await.expect("get").try_collect().await.expect("read");
        assert_eq!(read.concat(), b"hello world");

        let too_big = objects.put("documents/a/2", stream(vec![b"0123456789", b"x"]), 10).await;
        assert!(matches!(too_big, Err(Error::TooLarge(_))));
        assert!(matches!(objects.get("documents/a/2").await, Err(Error::NotFound(_))));
        for bad in ["../escape", "/abs", "a/../../b", "nul\0"] {
            assert!(objects.put(bad, stream(vec![b"x"]), 10).await.is_err(), "{bad:?}");
        }
    }
}

/// The shared adapter contract (`portico-contract`), run on local files.
#[cfg(test)]
mod contract {
    #[tokio::test]
    async fn objects() {
        let dir = tempfile::tempdir().expect("temp dir");
        let objects = super::Objects::local(dir.path()).expect("objects");
        portico_contract::objects::exact_sizes_and_nothing_half_written(&objects, "run-1").await;
    }
}
