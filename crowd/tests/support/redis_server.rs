//! A private `redis-server` for one test: its own free port and temporary directory, the append-only
//! file on. CI installs Debian's `redis-server` (`.ci/run`); without it the test fails, it does
//! not skip.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    password: Option<String>,
    /// With TLS only (no plain port): the CA that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
}

impl RedisServer {
    /// Starts `redis-server` with `appendfsync always`, so that everything it acknowledged is on
    /// disk even when it is killed.
    pub fn start(name: &str) -> Self {
        Self::start_with(name, None, false)
    }

    /// With `requirepass` (a password), and/or TLS only (a CA and a server certificate for
    /// 127.0.0.1 made with `openssl`, Debian's redis-server is built with TLS).
    pub fn start_with(name: &str, password: Option<&str>, tls: bool) -> Self {
        let port = super::free_port();
        let dir = super::temp_data_dir(&format!("redis-{name}"));
        let ca_file = tls.then(|| make_certificates(&dir));
        let mut server = Self {
            port,
            dir,
            child: None,
            password: password.map(str::to_owned),
            ca_file,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        let scheme = if self.ca_file.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        if self.ca_file.is_some() {
            let file = |name: &str| self.dir.join(name).to_str().unwrap().to_owned();
            command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args([
                    "--tls-cert-file",
                    &file("server.crt"),
                    "--tls-key-file",
                    &file("server.key"),
                ])
                .args([
                    "--tls-ca-cert-file",
                    &file("ca.crt"),
                    "--tls-auth-clients",
                    "no",
                ]);
        } else {
            command.args(["--port", &self.port.to_string()]);
        }
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): these tests need it on PATH \
                     (Debian: apt-get install redis-server; .ci/run installs it)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {} within 20 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut socket) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.ca_file.is_some() {
            // TLS only: the port accepts; the clients under test speak TLS to it.
            std::thread::sleep(Duration::from_millis(200));
            return true;
        }
        socket.set_read_timeout(Some(Duration::from_secs(2))).ok();
        if let Some(password) = &self.password {
            let mut ok = [0u8; 5];
            let auth = format!("AUTH {password}\r\n");
            if socket.write_all(auth.as_bytes()).is_err()
                || socket.read_exact(&mut ok).is_err()
                || &ok != b"+OK\r\n"
            {
                return false;
            }
        }
        let mut answer = [0u8; 7];
        socket.write_all(b"PING\r\n").is_ok()
            && socket.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    /// Kills the server (SIGKILL: no chance to flush anything) and starts it again on the same
    /// port and directory; it reloads its append-only file.
    pub fn crash_and_restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// A CA and a server certificate for 127.0.0.1 in `dir` (`openssl`); returns the CA's file.
fn make_certificates(dir: &std::path::Path) -> PathBuf {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl (Debian's openssl package) makes the test certificates");
        assert!(status.success(), "openssl {args:?} failed");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=crowd test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    dir.join("ca.crt")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}
