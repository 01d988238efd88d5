//! A stand-in for a Kubernetes Service in front of several replicas: a TCP proxy on loopback that
//! sends each new connection to the next replica in turn, skipping replicas that refuse (as
//! kube-proxy skips endpoints that are not ready). A connection stays with the replica it reached
//! until either side closes it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct ServiceProxy {
    pub port: u16,
    task: JoinHandle<()>,
}

impl ServiceProxy {
    pub async fn start(replica_ports: &[u16]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let replicas = Arc::new(Mutex::new(replica_ports.to_vec()));
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let replicas = replicas.lock().unwrap().clone();
                let first = next.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    for i in 0..replicas.len() {
                        let replica = replicas[(first + i) % replicas.len()];
                        if let Ok(upstream) = TcpStream::connect(("127.0.0.1", replica)).await {
                            relay(client, upstream).await;
                            return;
                        }
                    }
                    // No replica is up: the client sees its connection closed.
                });
            }
        });
        Self { port, task }
    }
}

/// Copies both ways until either side closes or fails, then closes both.
async fn relay(client: TcpStream, upstream: TcpStream) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    tokio::select! {
        _ = tokio::io::copy(&mut client_read, &mut upstream_write) => {}
        _ = tokio::io::copy(&mut upstream_read, &mut client_write) => {}
    }
}

impl Drop for ServiceProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
