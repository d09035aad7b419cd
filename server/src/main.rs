//! `cascade-server`: the relay binary. A thin shell over the library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use std::sync::Arc;

use cascade_server::listen::ConnectionLimits;
use cascade_server::tls::Tls;
use cascade_server::{Config, Server, DEFAULT_LISTEN, DEFAULT_QUEUE_EXPIRY_DAYS};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

#[derive(Parser)]
#[command(name = "cascade-server", version, about = "The Cascade relay")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Serve(Box<ServeArgs>),
    /// Create the data directory and the admin token, print the token's path
    /// and exit. Safe to run again.
    Init(InitArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Data directory [default: $XDG_DATA_HOME/cascade-server or
    /// ~/.local/share/cascade-server].
    #[arg(long, env = "CASCADE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7171].
    #[arg(long, env = "CASCADE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Push gateway URL: the relay POSTs `{"token": ...}` there when an
    /// offline device that registered a push token has new messages.
    #[arg(long, env = "CASCADE_PUSH_GATEWAY")]
    push_gateway: Option<String>,
    /// Most connections open at once, HTTP and WebSocket [default:
    /// 100000, lowered to fit the open-files limit].
    #[arg(long, env = "CASCADE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Most connections open at once from one source address [default:
    /// 1000].
    #[arg(long, env = "CASCADE_MAX_CONNECTIONS_PER_ADDRESS")]
    max_connections_per_address: Option<usize>,
    /// Seconds a connection may take to send a request header, or sit idle
    /// between requests [default: 10].
    #[arg(long, env = "CASCADE_HEADER_TIMEOUT_SECS")]
    header_timeout_secs: Option<u64>,
    /// TLS certificate chain (PEM, leaf first): with `--tls-key`, the relay
    /// serves HTTPS and WSS only. Re-read on SIGHUP.
    #[arg(long, env = "CASCADE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM). Re-read on SIGHUP.
    #[arg(long, env = "CASCADE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Free space (MiB) to keep on the data directory's disk: below it the
    /// relay refuses new messages, groups, KeyPackages and enrolments with
    /// a retryable `Unavailable` until space is freed; 0 turns the reserve
    /// off [default: 256].
    #[arg(long, env = "CASCADE_MIN_FREE_DISK_MIB")]
    min_free_disk_mib: Option<u64>,
    /// Days a device may stay away before the relay drops what it queued
    /// for it and stops delivering its groups to it (it rejoins them when
    /// it comes back); fractions allowed, 0 keeps queues for ever
    /// [default: 30].
    #[arg(long, env = "CASCADE_QUEUE_EXPIRY_DAYS")]
    queue_expiry_days: Option<f64>,
    /// The largest attachment the relay keeps, in MiB [default: 100].
    #[arg(long, env = "CASCADE_MAX_BLOB_MIB")]
    max_blob_mib: Option<u64>,
    /// Attachment storage per organisation, in MiB [default: 10240].
    #[arg(long, env = "CASCADE_BLOB_QUOTA_MIB")]
    blob_quota_mib: Option<u64>,
    /// Days the relay keeps an attachment after it was posted [default:
    /// 30].
    #[arg(long, env = "CASCADE_BLOB_RETENTION_DAYS")]
    blob_retention_days: Option<u64>,
    /// JSON file with `data_dir`, `listen`, `max_connections`,
    /// `max_connections_per_address`, `header_timeout_secs`,
    /// `min_free_disk_mib`, `queue_expiry_days`, `tls_cert` and/or
    /// `tls_key`; flags and environment variables take precedence.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Answer without waiting for durable flushes, so that a crash loses
    /// acknowledged messages. Only for measuring the cost of durability
    /// (`cascade-load --target relay-nofsync`); never in service.
    #[arg(long, hide = true)]
    unsafe_no_fsync_for_benchmarks: bool,
}

#[derive(Args)]
struct InitArgs {
    /// Data directory (same default as `serve`).
    #[arg(long, env = "CASCADE_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

/// The optional configuration file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    max_connections: Option<usize>,
    max_connections_per_address: Option<usize>,
    header_timeout_secs: Option<u64>,
    min_free_disk_mib: Option<u64>,
    queue_expiry_days: Option<f64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

fn read_config_file(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("parsing the config file {} as JSON", path.display()))
}

/// The relay's settings that come from flags, environment and the config
/// file.
struct Settings {
    config: Config,
    limits: ConnectionLimits,
    tls: Option<TlsFiles>,
    /// The disk reserve in bytes.
    min_free_disk: u64,
    /// The queue expiry; `None` keeps queues for ever.
    queue_expiry: Option<Duration>,
}

/// Where the TLS certificate and key are, if the relay serves TLS.
struct TlsFiles {
    certificate: PathBuf,
    key: PathBuf,
}

fn resolve(args: ServeArgs) -> anyhow::Result<Settings> {
    let file = match &args.config {
        Some(path) => read_config_file(path)?,
        None => ConfigFile::default(),
    };
    let default_listen: SocketAddr = DEFAULT_LISTEN.parse().expect("the default address parses");
    let config = Config {
        data_dir: args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(Config::default_data_dir),
        listen: args.listen.or(file.listen).unwrap_or(default_listen),
    };
    let defaults = ConnectionLimits::default();
    let limits = ConnectionLimits {
        max_connections: args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(defaults.max_connections),
        max_per_address: args
            .max_connections_per_address
            .or(file.max_connections_per_address)
            .unwrap_or(defaults.max_per_address),
        header_read_timeout: args
            .header_timeout_secs
            .or(file.header_timeout_secs)
            .map(Duration::from_secs)
            .unwrap_or(defaults.header_read_timeout),
    };
    anyhow::ensure!(
        limits.max_connections > 0 && limits.max_per_address > 0,
        "connection limits must be at least 1"
    );
    anyhow::ensure!(
        !limits.header_read_timeout.is_zero(),
        "the header timeout must be at least 1 second"
    );
    let tls = match (
        args.tls_cert.or(file.tls_cert),
        args.tls_key.or(file.tls_key),
    ) {
        (Some(certificate), Some(key)) => Some(TlsFiles { certificate, key }),
        (None, None) => None,
        _ => anyhow::bail!("TLS needs both a certificate (tls_cert) and a key (tls_key)"),
    };
    let min_free_disk = match args.min_free_disk_mib.or(file.min_free_disk_mib) {
        Some(mib) => mib
            .checked_mul(1024 * 1024)
            .context("min_free_disk_mib is too large")?,
        None => cascade_server::disk::DEFAULT_MIN_FREE_BYTES,
    };
    let days = args
        .queue_expiry_days
        .or(file.queue_expiry_days)
        .unwrap_or(DEFAULT_QUEUE_EXPIRY_DAYS);
    anyhow::ensure!(
        days.is_finite() && (0.0..=36_500.0).contains(&days),
        "queue_expiry_days must be between 0 and 36500"
    );
    let queue_expiry = (days > 0.0).then(|| Duration::from_secs_f64(days * 86_400.0));
    Ok(Settings {
        config,
        limits,
        tls,
        min_free_disk,
        queue_expiry,
    })
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so that a signal arriving
/// right after the relay prints its address is caught rather than killing
/// the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let terminate = async move {
            match term {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = terminate => {},
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let push_gateway = args.push_gateway.clone();
    let blob_limits = (
        args.max_blob_mib
            .map_or(cascade_server::blobs::DEFAULT_MAX_BLOB_BYTES, |m| {
                m * 1024 * 1024
            }),
        args.blob_quota_mib
            .map_or(cascade_server::blobs::DEFAULT_ORG_QUOTA_BYTES, |m| {
                m * 1024 * 1024
            }),
        std::time::Duration::from_secs(args.blob_retention_days.unwrap_or(30) * 86_400),
    );
    let no_fsync = args.unsafe_no_fsync_for_benchmarks;
    let Settings {
        config,
        limits,
        tls: tls_files,
        min_free_disk,
        queue_expiry,
    } = resolve(args)?;
    let tls = match &tls_files {
        Some(files) => Some(Tls::load(&files.certificate, &files.key)?),
        None => None,
    };
    let (server, token) = Server::open(&config.data_dir)
        .with_context(|| format!("opening the data directory {}", config.data_dir.display()))?;
    let mut server = server.with_limits(limits);
    let tls = tls.map(|mut tls| {
        tls.report_expiry(server.metrics().tls_certificate_expiry.clone());
        Arc::new(tls)
    });
    reload_on_hangup(tls.clone())?;
    if let Some(tls) = &tls {
        server = server.with_tls(tls.clone());
    } else if !config.listen.ip().is_loopback() {
        eprintln!(
            "WARNING: serving plain HTTP on {}: clients refuse it unless a TLS proxy \
             stands in front (see --tls-cert)",
            config.listen
        );
    }
    server
        .state()
        .watch_disk(&config.data_dir, min_free_disk)
        .with_context(|| format!("reading the free space of {}", config.data_dir.display()))?;
    if let Some(expiry) = queue_expiry {
        server.state().expire_queues(expiry);
    }
    if let Some(gateway) = push_gateway {
        server.state().enable_push(gateway);
    }
    if let Some(blobs) = server.state().blobs() {
        blobs.set_limits(blob_limits.0, blob_limits.1);
    }
    server.state().expire_blobs(blob_limits.2);
    if no_fsync {
        eprintln!("WARNING: --unsafe-no-fsync-for-benchmarks: acknowledged messages can be lost");
        server.state().skip_flushes_for_benchmarks();
    }
    eprintln!("admin token: {}", token.path.display());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Catch SIGTERM from here on, before anyone can learn the address.
    let shutdown = shutdown_signal();
    let mut stdout = std::io::stdout().lock();
    let scheme = if tls.is_some() { "https" } else { "http" };
    writeln!(stdout, "cascade-server listening on {scheme}://{addr}")?;
    stdout.flush()?;
    drop(stdout);
    server.run(listener, shutdown).await?;
    Ok(())
}

/// Re-reads the TLS certificate and key on every SIGHUP. Without TLS a
/// SIGHUP only says there is nothing to reload (rather than ending the
/// relay, as the signal's default would).
fn reload_on_hangup(tls: Option<Arc<Tls>>) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match tls.as_deref().map(Tls::reload) {
                    None => tracing::info!("SIGHUP: no TLS certificate to reload"),
                    Some(Ok(())) => tracing::info!("TLS certificate reloaded"),
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "TLS reload failed; serving the previous certificate")
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop(tls);
    Ok(())
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(Config::default_data_dir);
    let (_server, token) = Server::open(&data_dir)
        .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
    println!("{}", token.path.display());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(*args).await,
        Command::Init(args) => init(args),
    }
}
