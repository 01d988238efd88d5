//! Test support, for the services' black-box tests only (feature `testing`): a service's real
//! binary run as a child process, configured through its environment and stopped with SIGTERM,
//! as Kubernetes runs and stops it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

pub struct ServiceProcess {
    child: Child,
    /// The port of the first listener (the one `/healthz` is asked on).
    pub port: u16,
    /// Every listener's address variable and the free port it was given.
    pub ports: Vec<(String, u16)>,
}

/// A loopback port free now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl ServiceProcess {
    /// Starts `binary` with `env`, listening on a free loopback port given in `addr_env`, and
    /// waits until its `/healthz` answers 200.
    pub fn start(
        binary: &str,
        addr_env: &str,
        env: &[(&str, &str)],
        ready_within: Duration,
    ) -> Self {
        Self::start_listening(binary, &[addr_env], env, ready_within)
    }

    /// Like [`Self::start`], each of `addr_envs` (the public listener's first, then the ops
    /// listener's, ...) given a free loopback port, unless `env` sets it.
    pub fn start_listening(
        binary: &str,
        addr_envs: &[&str],
        env: &[(&str, &str)],
        ready_within: Duration,
    ) -> Self {
        Self::start_listening_args(binary, &[], addr_envs, env, ready_within)
    }

    /// Like [`Self::start_listening`], with command-line arguments (`crowd run dashboard`).
    pub fn start_listening_args<K: AsRef<str>, V: AsRef<str>>(
        binary: &str,
        args: &[&str],
        addr_envs: &[&str],
        env: &[(K, V)],
        ready_within: Duration,
    ) -> Self {
        let ports: Vec<(String, u16)> = addr_envs
            .iter()
            .map(|name| {
                let given = env
                    .iter()
                    .find(|(k, _)| k.as_ref() == *name)
                    .and_then(|(_, v)| v.as_ref().rsplit(':').next()?.parse().ok());
                (name.to_string(), given.unwrap_or_else(free_port))
            })
            .collect();
        let mut command = Command::new(binary);
        command.args(args);
        // Warnings and errors only: the test's output stays readable; `env` may override.
        command.env("RUST_LOG", "warn");
        for (name, port) in &ports {
            command.env(name, format!("127.0.0.1:{port}"));
        }
        let child = command
            .envs(env.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let port = ports[0].1;
        let mut service = Self { child, port, ports };
        let deadline = Instant::now() + ready_within;
        while service.get_status("/healthz") != Some(200) {
            if let Some(status) = service.child.try_wait().expect("child status") {
                panic!("{binary} exited before it was healthy: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "{binary} not healthy within {ready_within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        service
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The port the listener of address variable `addr_env` was given.
    pub fn port_of(&self, addr_env: &str) -> u16 {
        self.ports
            .iter()
            .find(|(name, _)| name == addr_env)
            .map(|(_, port)| *port)
            .unwrap_or_else(|| panic!("no listener {addr_env}"))
    }

    /// The status of `GET path`, or `None` when nothing answers (plain HTTP/1.0: no client
    /// library needed, and no connection kept open that would delay a graceful stop).
    pub fn get_status(&self, path: &str) -> Option<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    }

    /// Sends `signal` ("TERM", "KILL", ...) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit, at most `within`.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            assert!(Instant::now() < deadline, "still running after {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServiceProcess {
    /// A failed test leaves no service running behind it.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
