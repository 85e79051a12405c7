//! TLS for the local host's listeners: the certificate and key come from PEM files
//! (`tls.cert`, `tls.key`) and are read again every `tls.reload_secs`, so a certificate an ACME
//! client renews is used without a restart.
//!
//! HTTPS picks the current certificate at every handshake (`Certificates` is the rustls
//! certificate resolver). rmqtt reads its certificate files when a listener is made, so the
//! broker makes new TLS listeners when `Certificates::changes` says the files changed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A client has this long to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the HTTP server to take them.
const ACCEPTED_BACKLOG: usize = 1024;

/// The current certificate and key, read from their files and read again when they change.
#[derive(Debug)]
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Loaded>,
    /// Counts the certificates loaded since start; the broker watches it.
    generation: watch::Sender<u64>,
}

#[derive(Debug, Clone)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// SHA-256 over both files' bytes: a change of either is a new pair.
    digest: Vec<u8>,
}

impl Certificates {
    /// Reads both files; a missing file, no certificate, no key, or a key that does not belong
    /// to the certificate is an error naming the file.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Certificates>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (bytes, digest) = read_pair(cert, key)?;
        let certified = certified_key(cert, key, &bytes, &provider)?;
        Ok(Arc::new(Certificates {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: RwLock::new(Loaded { key: Arc::new(certified), digest }),
            generation: watch::channel(0).0,
        }))
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    pub fn key_path(&self) -> &Path {
        &self.key
    }

    /// Changes each time a new certificate is loaded.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Reads the files again; a changed pair that loads replaces the current one (answers true).
    /// A pair that does not load (say, a certificate written before its key) keeps the current
    /// one, and the error says why.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let (bytes, digest) = read_pair(&self.cert, &self.key)?;
        if self.loaded().digest == digest {
            return Ok(false);
        }
        let certified = certified_key(&self.cert, &self.key, &bytes, &self.provider)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Loaded { key: Arc::new(certified), digest };
        self.generation.send_modify(|n| *n += 1);
        Ok(true)
    }

    /// Reloads every `every` until the task is dropped; a pair that fails is reported once.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        let mut last_error = String::new();
        loop {
            ticks.tick().await;
            match self.reload() {
                Ok(true) => {
                    last_error.clear();
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                }
                Ok(false) => last_error.clear(),
                Err(e) => {
                    let message = format!("{e:#}");
                    if message != last_error {
                        tracing::warn!(cert = %self.cert.display(), error = %message, "TLS certificate files changed but do not load; the previous certificate stays in use");
                        last_error = message;
                    }
                }
            }
        }
    }

    /// rustls's settings for a TLS server that presents the current certificate.
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        // The HTTP server speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    fn loaded(&self) -> Loaded {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.loaded().key)
    }
}

struct PairBytes {
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn read_pair(cert: &Path, key: &Path) -> anyhow::Result<(PairBytes, Vec<u8>)> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).with_context(|| format!("reading TLS {what} {}", path.display()))
    };
    let bytes = PairBytes { cert: read(cert, "certificate")?, key: read(key, "key")? };
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(&(bytes.cert.len() as u64).to_be_bytes());
    context.update(&bytes.cert);
    context.update(&bytes.key);
    let digest = context.finish().as_ref().to_vec();
    Ok((bytes, digest))
}

fn certified_key(
    cert: &Path,
    key: &Path,
    bytes: &PairBytes,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(&bytes.cert)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no PEM certificate", cert.display());
    let private = PrivateKeyDer::from_pem_slice(&bytes.key)
        .with_context(|| format!("{} holds no PEM private key", key.display()))?;
    CertifiedKey::from_der(chain, private, provider).with_context(|| {
        format!("the key in {} does not fit the certificate in {}", key.display(), cert.display())
    })
}

/// An HTTPS listener for `axum::serve`: connections are accepted and their handshakes run
/// concurrently in a task of their own, so a slow or silent client delays nobody else.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (send, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!(error = %e, "HTTPS accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, send) = (acceptor.clone(), send.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = send.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { accepted, local_addr, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(pair) => pair,
            // The accepting task ended only if it was aborted, which happens on drop.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
