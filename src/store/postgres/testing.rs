//! A real PostgreSQL server for tests: one per test process, started on
//! first use in a temporary folder, on a free loopback port, without fsync;
//! a fresh database for each test case (`database()`).
//!
//! Debian's `postgresql` package provides the binaries
//! (`/usr/lib/postgresql/<version>/bin`). PostgreSQL refuses to run as root:
//! as root, `initdb` and `postgres` run as the `postgres` user the package
//! creates (the folder is given to it); otherwise as the user running the
//! tests. When it cannot be found or started, every test using it fails with
//! what to install: never a silent skip.
//!
//! The server also accepts TLS (`sslmode=require`, host `localhost`), with a
//! certificate of a test authority made at start by the `openssl` command
//! (which Debian's `postgresql` brings along): `ca_file()` is that
//! authority.
//!
//! The server stops when the test process ends: a small shell watcher polls
//! the process and then stops the server (fast shutdown) and removes its
//! folder.
//!
//! Only `std` and `tempfile` here, so that the end-to-end tests can include
//! this file as a module of their own (`#[path = ...]`).

#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const INSTALL: &str = "install Debian's `postgresql` package (as root: `apt-get install -y \
                       postgresql`; `bash deploy/test.sh` does it)";

/// The running server.
pub struct TestServer {
    port: u16,
    bin: PathBuf,
    dir: PathBuf,
    /// The user the server runs as, when the tests run as root.
    owner: Option<(u32, u32)>,
    pid: u32,
    databases: AtomicU32,
}

static SERVER: OnceLock<Result<TestServer, String>> = OnceLock::new();

/// The process's server, started on first use; panics (failing the test)
/// with the reason when PostgreSQL cannot be found or started.
pub fn server() -> &'static TestServer {
    match SERVER.get_or_init(TestServer::start) {
        Ok(server) => server,
        Err(why) => panic!("PostgreSQL for the tests: {why}"),
    }
}

/// A URL to a new, empty database of the process's server.
pub fn database() -> String {
    server().create_database()
}

impl TestServer {
    /// The authority the server's TLS certificate chains to (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates `t_<n>` and gives its URL.
    pub fn create_database(&self) -> String {
        let name = format!("t_{}", self.databases.fetch_add(1, Ordering::Relaxed) + 1);
        self.sql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|why| panic!("PostgreSQL for the tests: {why}"));
        self.url(&name)
    }

    /// Runs `sql` with psql in `database`, as the superuser; its output.
    pub fn sql(&self, database: &str, sql: &str) -> Result<String, String> {
        output(
            Command::new(self.bin.join("psql"))
                .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", database])
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-c")
                .arg(sql),
            &format!("psql `{sql}`"),
        )
    }

    fn start() -> Result<TestServer, String> {
        let bin = binaries()?;
        let owner = if running_as_root() {
            Some(postgres_user()?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("vigile-pg-")
            .tempdir()
            .map_err(|e| format!("cannot make a temporary folder: {e}"))?
            .keep();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("cannot give {} to postgres: {e}", dir.display()))?;
        }
        output(
            run_as(Command::new(bin.join("initdb")), owner)
                .arg("-D")
                .arg(dir.join("data"))
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
                .arg("--no-sync"),
            "initdb",
        )?;
        make_certificates(&dir, owner)?;
        let mut last = String::new();
        for _ in 0..3 {
            match TestServer::launch(&bin, &dir, owner) {
                Ok(server) => return Ok(server),
                Err(why) => last = why,
            }
        }
        Err(last)
    }

    /// Starts `postgres` on a free port and waits until it accepts
    /// connections.
    fn launch(bin: &Path, dir: &Path, owner: Option<(u32, u32)>) -> Result<TestServer, String> {
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("postgres.log"))
            .map_err(|e| format!("cannot write the server's log: {e}"))?;
        let err_log = log
            .try_clone()
            .map_err(|e| format!("cannot write the server's log: {e}"))?;
        let mut child = run_as(Command::new(bin.join("postgres")), owner)
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .args(["-c", "ssl=on"])
            .arg("-c")
            .arg(format!(
                "ssl_cert_file={}",
                dir.join("server.crt").display()
            ))
            .arg("-c")
            .arg(format!("ssl_key_file={}", dir.join("server.key").display()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.join("postgres").display()))?;
        watch(child.id(), dir);
        let server = TestServer {
            port,
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            owner,
            pid: child.id(),
            databases: AtomicU32::new(0),
        };
        server.wait_ready(&mut child)?;
        Ok(server)
    }

    fn wait_ready(&self, child: &mut Child) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "postgres exited ({status}): {}",
                    std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
                ));
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("postgres did not accept connections within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The folder of `initdb`, `postgres`, `pg_isready` and `psql`: the newest
/// version under `/usr/lib/postgresql`, else the `PATH`.
fn binaries() -> Result<PathBuf, String> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .ok_or_else(|| format!("initdb and postgres were not found: {INSTALL}"))
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The `postgres` user's uid and gid, from `/etc/passwd`.
fn postgres_user() -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        })
        .ok_or_else(|| {
            format!(
                "the tests run as root and PostgreSQL refuses to: they need the `postgres` \
                 user, which Debian's package creates ({INSTALL})"
            )
        })
}

/// `command`, run as `owner` when given (the tests run as root).
fn run_as(mut command: Command, owner: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command.env_remove("PGDATA");
    command
}

/// A test authority (`ca.crt`) and the server's key and certificate for
/// `localhost`, signed by it, in `dir`; the key readable by `owner` only.
fn make_certificates(dir: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    const SCRIPT: &str = "set -e
        ec='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'
        openssl req -x509 $ec -keyout ca.key -out ca.crt -days 2 -subj '/CN=vigile test authority'
        openssl req $ec -keyout server.key -out server.csr -subj /CN=localhost
        printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \\
            -out server.crt -days 2 -extfile server.ext
        chmod 600 server.key";
    output(
        Command::new("sh").args(["-c", SCRIPT]).current_dir(dir),
        &format!("making the TLS certificates with openssl ({INSTALL})"),
    )?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir.join("server.key"), Some(uid), Some(gid))
            .map_err(|e| format!("cannot give the server's key to postgres: {e}"))?;
    }
    Ok(())
}

/// Runs `command` without input; its output, or why it failed.
fn output(command: &mut Command, what: &str) -> Result<String, String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Stops the server `pid` and removes `dir` once this process is gone.
fn watch(pid: u32, dir: &Path) {
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.2; done; kill -INT {pid} 2>/dev/null; \
         for _ in $(seq 100); do kill -0 {pid} 2>/dev/null || break; sleep 0.1; done; \
         rm -rf '{dir}'",
        me = std::process::id(),
        dir = dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
