//! One PostgreSQL session on a thread of its own, and the URL that opens it.
//!
//! Why a thread: the `StateStore`, `Journal` and `History` traits are synchronous (the local
//! backend is plain file I/O, and the apply engine calls them between awaits, e.g. to make an
//! intent durable right before a provider call). Making them async would ripple through every
//! caller for one backend. Instead the session lives on a dedicated thread with its own
//! current-thread runtime; a call sends it a job and blocks on the reply. Blocking the caller is
//! what the local backend's fsync does too, and it cannot deadlock: the session's runtime is not
//! the caller's, so `block_on` is never nested. One session per store also carries the
//! session-level advisory lock, which PostgreSQL releases when the session ends (the process
//! dies, the network drops), so a dead holder never keeps the state locked.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, NoTls};

/// A connection attempt gives up after this long (unless the URL sets `connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Every call (a few statements) gives up after this long; the session is then unusable.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A parsed connection URL. Its password never leaves it: [`Url::location`] and every error
/// message go through [`Url::redact`].
pub struct Url {
    config: Config,
    password: Option<SecretString>,
    tls: TlsMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `sslmode=disable`: plain TCP (for loopback and trusted networks).
    Disable,
    /// `sslmode=prefer` (libpq's default): TLS when the server offers it.
    Prefer,
    /// `sslmode=require`, `verify-ca`, `verify-full`: TLS or no connection.
    Require,
}

impl Url {
    /// Parses a `postgres://` URL or a `key=value` connection string. `sslmode` may be
    /// `disable`, `prefer` (the default), `require`, `verify-ca` or `verify-full`; with rustls
    /// every TLS connection verifies the server's certificate and host name against the
    /// system's roots, as libpq's `verify-full` does.
    pub fn parse(text: &SecretString) -> Result<Url, String> {
        let raw = text.expose_secret().trim();
        let rewritten = raw
            .replace("sslmode=verify-full", "sslmode=require")
            .replace("sslmode=verify-ca", "sslmode=require");
        let mut config = Config::from_str(&rewritten).map_err(|error| {
            redact_text(
                &format!("not a PostgreSQL connection URL: {error}"),
                url_password(raw).as_deref(),
            )
        })?;
        let password = config
            .get_password()
            .map(|bytes| SecretString::from(String::from_utf8_lossy(bytes).into_owned()));
        if config.get_hosts().is_empty() {
            return Err(
                "the PostgreSQL URL names no host: write `postgres://USER:PASSWORD@HOST:5432/DATABASE`"
                    .to_string(),
            );
        }
        if config.get_application_name().is_none() {
            config.application_name("reimage");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // Notice a dead server or network within minutes, not hours.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => TlsMode::Disable,
            SslMode::Require => TlsMode::Require,
            _ => TlsMode::Prefer,
        };
        Ok(Url {
            config,
            password,
            tls,
        })
    }

    pub fn tls(&self) -> TlsMode {
        self.tls
    }

    /// `postgres://USER@HOST:PORT/DATABASE`: where the state lives, without the password.
    pub fn location(&self) -> String {
        let user = self.config.get_user().unwrap_or_default();
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(index, host)| {
                let name = match host {
                    Host::Tcp(name) => name.clone(),
                    #[cfg(unix)]
                    Host::Unix(path) => path.display().to_string(),
                };
                match self
                    .config
                    .get_ports()
                    .get(index)
                    .or(self.config.get_ports().first())
                {
                    Some(port) => format!("{name}:{port}"),
                    None => name,
                }
            })
            .collect();
        let database = self.config.get_dbname().unwrap_or(user);
        let at = if user.is_empty() {
            String::new()
        } else {
            format!("{user}@")
        };
        self.redact(&format!("postgres://{at}{}/{database}", hosts.join(",")))
    }

    /// `text` with the password cut out, wherever it appears.
    pub fn redact(&self, text: &str) -> String {
        redact_text(
            text,
            self.password.as_ref().map(|secret| secret.expose_secret()),
        )
    }
}

/// The password between `://user:` and `@`, for redacting errors about a URL that did not parse.
fn url_password(raw: &str) -> Option<String> {
    let rest = raw.split_once("://")?.1;
    let userinfo = rest.rsplit_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_string())
}

fn redact_text(text: &str, password: Option<&str>) -> String {
    match password {
        Some(password) if !password.is_empty() => text.replace(password, "********"),
        _ => text.to_string(),
    }
}

/// What a job gets: the client of the session.
pub struct Session {
    pub client: Client,
    /// Set when a call timed out: the session is then closed rather than reused.
    broken: bool,
}

type JobFuture<'c> = Pin<Box<dyn Future<Output = ()> + 'c>>;
type Job = Box<dyn for<'c> FnOnce(&'c mut Session) -> JobFuture<'c> + Send>;

/// The result of a job: an error is a message, already free of the password.
pub type CallResult<T> = Result<T, String>;

/// The handle of the session thread. Dropping it ends the session (and its advisory locks).
pub struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
    url: Url,
}

impl Worker {
    /// Connects (TLS as the URL's `sslmode` says) and starts the session thread.
    pub fn connect(url: Url) -> CallResult<Worker> {
        let (jobs, mut receiver) = mpsc::unbounded_channel::<Job>();
        let (ready, connected) = std::sync::mpsc::channel::<CallResult<()>>();
        let config = url.config.clone();
        let tls = url.tls;
        let password = url.password.clone();
        std::thread::Builder::new()
            .name("reimage-postgres".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready.send(Err(format!("cannot start a runtime: {error}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let client = match open(&config, tls).await {
                        Ok(client) => client,
                        Err(error) => {
                            let secret = password.as_ref().map(|s| s.expose_secret());
                            let _ = ready.send(Err(redact_text(&error, secret)));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    let mut session = Session {
                        client,
                        broken: false,
                    };
                    while let Some(job) = receiver.recv().await {
                        job(&mut session).await;
                        if session.broken {
                            break;
                        }
                    }
                });
            })
            .map_err(|error| format!("cannot start the PostgreSQL thread: {error}"))?;
        match connected.recv() {
            Ok(Ok(())) => Ok(Worker { jobs, url }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err("the PostgreSQL thread ended before connecting".to_string()),
        }
    }

    /// Runs `job` on the session and waits for its result (at most [`CALL_TIMEOUT`]). After a
    /// timeout the session is closed: a half-finished exchange leaves it in an unknown state.
    pub fn call<T, F>(&self, job: F) -> CallResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Session) -> Pin<Box<dyn Future<Output = CallResult<T>> + 'c>>
            + Send
            + 'static,
    {
        let (reply, answer) = std::sync::mpsc::sync_channel::<CallResult<T>>(1);
        let wrapped: Job = Box::new(move |session: &mut Session| {
            Box::pin(async move {
                let result = match tokio::time::timeout(CALL_TIMEOUT, job(&mut *session)).await {
                    Ok(result) => result,
                    Err(_) => {
                        session.broken = true;
                        Err(format!(
                            "PostgreSQL did not answer within {} s; the session was closed",
                            CALL_TIMEOUT.as_secs()
                        ))
                    }
                };
                let _ = reply.send(result);
            })
        });
        let closed = || {
            "the connection to PostgreSQL is closed (its session, and any lock it held, ended)"
                .to_string()
        };
        self.jobs.send(wrapped).map_err(|_| closed())?;
        let result = answer.recv().map_err(|_| closed())?;
        result.map_err(|error| self.url.redact(&error))
    }
}

/// Opens the session and runs its connection on this runtime.
async fn open(config: &Config, tls: TlsMode) -> Result<Client, String> {
    let only_sockets = config
        .get_hosts()
        .iter()
        .all(|host| !matches!(host, Host::Tcp(_)));
    let connector = if tls == TlsMode::Disable || only_sockets {
        None
    } else {
        match tls_connector() {
            Ok(connector) => Some(connector),
            // `prefer` means TLS if possible: without trusted roots it is not.
            Err(error) if tls == TlsMode::Prefer => {
                tracing::warn!("PostgreSQL without TLS: {error}");
                None
            }
            Err(error) => return Err(error),
        }
    };
    let client = match connector {
        None => {
            let (client, connection) = config.connect(NoTls).await.map_err(connect_error)?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!("PostgreSQL connection ended: {error}");
                }
            });
            client
        }
        Some(connector) => {
            let (client, connection) = config.connect(connector).await.map_err(connect_error)?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!("PostgreSQL connection ended: {error}");
                }
            });
            client
        }
    };
    // An intent must be on disk before the provider call it announces, whatever the server's
    // or the role's default for synchronous_commit.
    client
        .batch_execute("SET synchronous_commit TO on")
        .await
        .map_err(|error| describe(&error))?;
    Ok(client)
}

fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    // The process-wide default; reqwest may have installed the same provider already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match tokio_postgres_rustls::MakeRustlsConnect::with_native_certs() {
        Ok((connector, _)) => Ok(connector),
        Err(_) => Err(
            "no trusted root certificates found on this machine (install the ca-certificates \
             package), so TLS to PostgreSQL cannot be verified; or use `sslmode=disable` on a \
             trusted network"
                .to_string(),
        ),
    }
}

fn connect_error(error: tokio_postgres::Error) -> String {
    let text = describe(&error);
    if text.contains("certificate") || text.contains("UnknownIssuer") {
        format!(
            "cannot connect to PostgreSQL: {text} (TLS verifies the server's certificate against \
             this machine's trusted roots: add its CA to the system's store or point \
             `SSL_CERT_FILE` at it, or use `sslmode=disable` on a trusted network)"
        )
    } else {
        format!("cannot connect to PostgreSQL: {text}")
    }
}

/// A PostgreSQL error with its causes (the server's message is in the source).
pub fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Url, String> {
        Url::parse(&SecretString::from(text.to_string()))
    }

    #[test]
    fn the_location_names_user_host_and_database_but_never_the_password() {
        let url =
            parse("postgres://ops:s3cr3t-pw@db.example.net:6543/fleet?sslmode=require").unwrap();
        assert_eq!(url.location(), "postgres://ops@db.example.net:6543/fleet");
        assert_eq!(url.tls(), TlsMode::Require);
        assert_eq!(
            url.redact("login failed for s3cr3t-pw"),
            "login failed for ********"
        );
    }

    #[test]
    fn sslmode_comes_from_the_url() {
        let mode = |query: &str| parse(&format!("postgres://u:p@h/db{query}")).unwrap().tls();
        assert_eq!(mode(""), TlsMode::Prefer);
        assert_eq!(mode("?sslmode=disable"), TlsMode::Disable);
        assert_eq!(mode("?sslmode=prefer"), TlsMode::Prefer);
        assert_eq!(mode("?sslmode=require"), TlsMode::Require);
        assert_eq!(mode("?sslmode=verify-ca"), TlsMode::Require);
        assert_eq!(mode("?sslmode=verify-full"), TlsMode::Require);
        let key_value = parse("host=127.0.0.1 user=u password=p sslmode=disable").unwrap();
        assert_eq!(key_value.tls(), TlsMode::Disable);
    }

    #[test]
    fn a_bad_url_is_an_error_without_its_password() {
        for text in [
            "postgres://ops:hunter2-secret@db/fleet?sslmode=sometimes",
            "postgres://ops:hunter2-secret@db/fleet?nonsense=1",
            "postgres://ops:hunter2-secret@db:notaport/fleet",
        ] {
            let error = parse(text).err().expect(text);
            assert!(!error.contains("hunter2-secret"), "{error}");
            assert!(error.contains("not a PostgreSQL connection URL"), "{error}");
        }
        let no_host = parse("postgres:///fleet").err().unwrap();
        assert!(no_host.contains("names no host"), "{no_host}");
    }

    #[test]
    fn a_refused_connection_is_a_clear_error_without_the_password() {
        // Port 1 on loopback: nothing listens there.
        let url = parse(
            "postgres://ops:hunter2-secret@127.0.0.1:1/fleet?sslmode=disable&connect_timeout=5",
        )
        .unwrap();
        let error = Worker::connect(url)
            .err()
            .expect("nothing listens on port 1");
        assert!(error.starts_with("cannot connect to PostgreSQL"), "{error}");
        assert!(!error.contains("hunter2-secret"), "{error}");
    }
}
