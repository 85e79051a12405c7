//! moto (`moto_server`, PyPI `moto[server]`): the AWS stand-in the AWS adapters' tests talk to.
//!
//! The endpoint is `PORTICO_TEST_AWS_ENDPOINT` when set (`.ci/run` may start one for the run);
//! otherwise the first call starts a `moto_server` for this test process on a free loopback port,
//! killed when the process exits. Tests keep apart by naming their own tables, queues, buckets.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Moto {
    endpoint: String,
    _child: ChildGuard,
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The moto endpoint for this test process, e.g. `http://127.0.0.1:40123`.
pub fn endpoint() -> String {
    if let Ok(endpoint) = std::env::var("PORTICO_TEST_AWS_ENDPOINT") {
        return endpoint;
    }
    MOTO.get_or_init(start).endpoint.clone()
}

fn start() -> Moto {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server on PATH (pip install 'moto[server]')");
    let guard = ChildGuard(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        _child: guard,
    }
}
