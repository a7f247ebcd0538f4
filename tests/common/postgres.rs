//! A real PostgreSQL server on loopback for tests.
//!
//! `REIMAGE_TEST_DATABASE_URL` (an admin URL) is used when set. Otherwise a throwaway cluster
//! is made from Debian's binaries (`/usr/lib/postgresql/*/bin`) in a temp folder on a free
//! loopback port (as user `postgres` when running as root: initdb refuses root), shared by the
//! tests of one process and stopped when the last of them ends. Each test gets a database of
//! its own. When no server can be had, a test is skipped with a clear note on stderr, except
//! with `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

/// A database of one test; dropped at the end of the test.
pub struct TestDatabase {
    /// URL of this test's database, password included (`sslmode=disable`: loopback).
    pub url: String,
    /// The password in `url`, for asserting that it never leaks.
    pub password: String,
    pub name: String,
    /// The CA that signed the server's certificate (for `127.0.0.1`), when this harness
    /// started the server with TLS on.
    pub ca_file: Option<PathBuf>,
    admin_url: String,
    _server: Arc<Server>,
}

enum Server {
    /// `REIMAGE_TEST_DATABASE_URL`: somebody else's server.
    External,
    /// A cluster this process started; stopped on drop.
    Cluster {
        ca_file: Option<PathBuf>,
        pg_ctl: PathBuf,
        data: PathBuf,
        as_postgres: bool,
        _dir: tempfile::TempDir,
    },
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Server::Cluster {
            pg_ctl,
            data,
            as_postgres,
            ..
        } = self
        {
            let _ = command(*as_postgres, pg_ctl)
                .args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(&*data)
                .output();
        }
    }
}

static SERVER: Mutex<(Weak<Server>, String)> = Mutex::new((Weak::new(), String::new()));

/// A fresh database for `test`, or `None` (after saying why on stderr) when no PostgreSQL
/// server can be had outside CI. Panics in CI (`CI=true`): there the server must exist.
pub fn database(test: &str) -> Option<TestDatabase> {
    let (server, admin_url) = match server() {
        Ok(found) => found,
        Err(reason) => {
            if std::env::var("CI").is_ok_and(|value| value == "true") {
                panic!("{test}: a PostgreSQL server is required in CI, but: {reason}");
            }
            // Straight to the process's stderr: the test harness would hide `eprintln!` of a
            // passing test, and a skip must be seen.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: no PostgreSQL server: {reason}. Set REIMAGE_TEST_DATABASE_URL \
                 to an admin URL, or install Debian's `postgresql` package."
            );
            return None;
        }
    };
    let name = format!(
        "reimage_test_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    admin(&admin_url, &format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|error| panic!("{test}: cannot create a test database: {error}"));
    let config: tokio_postgres::Config = admin_url.parse().expect("the admin URL parses");
    let password = config
        .get_password()
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .unwrap_or_default();
    let ca_file = match server.as_ref() {
        Server::Cluster { ca_file, .. } => ca_file.clone(),
        Server::External => None,
    };
    Some(TestDatabase {
        url: replace_database(&admin_url, &name),
        password,
        name,
        ca_file,
        admin_url,
        _server: server,
    })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = admin(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

impl TestDatabase {
    /// Runs SQL in this test's database; returns the rows' columns as text.
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        block_on(async {
            let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                .await
                .expect("connect to the test database");
            tokio::spawn(connection);
            let messages = client.simple_query(sql).await.expect(sql);
            messages
                .into_iter()
                .filter_map(|message| match message {
                    tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|index| row.get(index).map(str::to_string))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()
        })
    }

    /// Runs SQL in this test's database; the server's error, if any.
    pub fn execute(&self, sql: &str) -> Result<(), String> {
        admin(&self.url, sql)
    }

    /// Ends the sessions that hold advisory locks in this test's database (as if their
    /// processes had been killed); returns how many.
    pub fn end_lock_holders(&self) -> usize {
        self.value(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
             WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
    }

    /// The one value of a one-row, one-column query.
    pub fn value(&self, sql: &str) -> Option<String> {
        self.query(sql)
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten())
    }
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

fn admin(url: &str, sql: &str) -> Result<(), String> {
    block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|error| error.to_string())?;
        tokio::spawn(connection);
        client
            .batch_execute(sql)
            .await
            .map_err(|error| match error.as_db_error() {
                Some(db) => format!("{sql}: {}", db.message()),
                None => format!("{sql}: {error}"),
            })
    })
}

/// `postgres://u:p@h:port/db?x` with `db` replaced.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|at| at + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

fn server() -> Result<(Arc<Server>, String), String> {
    let mut shared = SERVER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(server) = shared.0.upgrade() {
        return Ok((server, shared.1.clone()));
    }
    let (server, url) = match std::env::var("REIMAGE_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            admin(&url, "SELECT 1")
                .map_err(|error| format!("REIMAGE_TEST_DATABASE_URL does not answer: {error}"))?;
            (Arc::new(Server::External), url)
        }
        _ => start_cluster()?,
    };
    *shared = (Arc::downgrade(&server), url.clone());
    Ok((server, url))
}

/// The newest `/usr/lib/postgresql/VERSION/bin`.
fn binaries() -> Result<PathBuf, String> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map_err(|_| format!("{} does not exist", root.display()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| format!("no {}/*/bin/initdb", root.display()))
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

fn command(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn id_of(flag: &str) -> Result<u32, String> {
    let output = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .map_err(|error| format!("`id {flag} postgres`: {error}"))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| "running as root and there is no `postgres` user to run initdb as".into())
}

fn start_cluster() -> Result<(Arc<Server>, String), String> {
    let bin = binaries()?;
    let as_postgres = is_root();
    let dir = tempfile::Builder::new()
        .prefix("reimage-pg-")
        .tempdir()
        .map_err(|error| error.to_string())?;
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, &password).map_err(|error| error.to_string())?;
    if as_postgres {
        let (uid, gid) = (id_of("-u")?, id_of("-g")?);
        for path in [dir.path(), password_file.as_path()] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|error| format!("chown {}: {error}", path.display()))?;
        }
    }
    let data = dir.path().join("data");
    let initdb = command(as_postgres, &bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        ])
        .arg(format!("--pwfile={}", password_file.display()))
        .output()
        .map_err(|error| format!("initdb: {error}"))?;
    if !initdb.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        ));
    }
    // TLS on when openssl can make a CA and a certificate for 127.0.0.1; tests that do not
    // ask for it connect with `sslmode=disable`.
    let tls = make_certificates(dir.path(), as_postgres);
    let pg_ctl = bin.join("pg_ctl");
    let mut last_error = String::new();
    // A free port can be taken between the probe and the start: try a few.
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| error.to_string())?
            .port();
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            dir.path().display()
        );
        if tls.is_some() {
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={0}/server.pem -c ssl_key_file={0}/server.key",
                dir.path().display()
            ));
        }
        let started = command(as_postgres, &pg_ctl)
            .args(["start", "-w", "-t", "120", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("server.log"))
            .args(["-o", &options])
            .output()
            .map_err(|error| format!("pg_ctl: {error}"))?;
        if started.status.success() {
            let url =
                format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres?sslmode=disable");
            let server = Arc::new(Server::Cluster {
                ca_file: tls,
                pg_ctl,
                data,
                as_postgres,
                _dir: dir,
            });
            return Ok((server, url));
        }
        last_error = format!(
            "{}{}",
            String::from_utf8_lossy(&started.stdout),
            std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        );
    }
    Err(format!("pg_ctl start failed: {last_error}"))
}

/// A CA and a server certificate for `127.0.0.1`/`localhost` in `dir` (`ca.pem`, `server.pem`,
/// `server.key` owned by the server's user); `None` when openssl is missing or fails.
fn make_certificates(dir: &Path, as_postgres: bool) -> Option<PathBuf> {
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|_| ())
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .ok()?;
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=reimage test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ])?;
    let key = dir.join("server.key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).ok()?;
    if as_postgres {
        let (uid, gid) = (id_of("-u").ok()?, id_of("-g").ok()?);
        for name in ["server.key", "server.pem"] {
            std::os::unix::fs::chown(dir.join(name), Some(uid), Some(gid)).ok()?;
        }
    }
    Some(dir.join("ca.pem"))
}
