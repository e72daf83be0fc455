//! The headless `kith` binary: `serve`, `init`, `config validate`, `user add`, `check`.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};
use kith::config::{Config, RegistrationMode, default_config_path};

#[derive(Parser)]
#[command(
    name = "kith",
    version,
    about = "Kith, a Matrix homeserver you can run at home"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the homeserver until Ctrl-C or SIGTERM.
    Serve {
        /// The config file (default: kith.toml in the per-user data dir, created if missing).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write a config file without questions (for scripts and headless installs).
    Init {
        /// The server name (the part after the colon in user IDs).
        #[arg(long)]
        server_name: String,
        /// Where data lives; the config goes there too unless --config says otherwise.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The Client-Server API listener.
        #[arg(long, default_value = "127.0.0.1:8008")]
        client_listen: String,
        /// The federation listener (empty: none).
        #[arg(long, default_value = "")]
        federation_listen: String,
        /// closed, token or open.
        #[arg(long, default_value = "closed")]
        registration: RegistrationMode,
        /// Do not check other servers' certificates, and let federation reach loopback and
        /// private addresses: for tests and private federations only.
        #[arg(long)]
        insecure_federation: bool,
        /// Where to write the config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Replace an existing config file.
        #[arg(long)]
        force: bool,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// User administration.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Check whether other servers can federate with SERVER_NAME, the way they would look
    /// it up and connect. Exits 0 only when federation is OK (1: it is not; 2: the check
    /// could not run).
    Check {
        /// The server name to check (e.g. example.org).
        server_name: String,
        /// Print the report as JSON (matrix-federation-tester's field names, plus Kith's).
        #[arg(long)]
        json: bool,
        /// Also trust the CA certificates in this PEM file (a private or test CA).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Ask this DNS server (IP or IP:PORT) instead of the system's.
        #[arg(long)]
        dns_server: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check the config file and report every problem at once.
    Validate {
        /// The config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user (asks for the password unless --password-file is given).
    Add {
        /// The user name (localpart).
        name: String,
        /// Make the user a server admin.
        #[arg(long)]
        admin: bool,
        /// Read the password from this file (first line).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// The config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn config_path(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    explicit
        .or_else(default_config_path)
        .ok_or_else(|| "cannot find a home directory; pass --config".to_owned())
}

fn load(path: &Path) -> Result<Config, String> {
    let config = Config::load(path).map_err(|problems| report(path, &problems))?;
    let problems = config.validate();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(report(path, &problems))
    }
}

fn report(path: &std::path::Path, problems: &[kith::config::Problem]) -> String {
    let mut text = format!("{} has {} problem(s):", path.display(), problems.len());
    for problem in problems {
        text.push_str(&format!("\n  - {problem}"));
    }
    text
}

async fn serve(config: Option<PathBuf>, logs: kith::logging::LogBuffer) -> Result<(), String> {
    let path = config_path(config)?;
    if !path.exists() {
        let text = Config::default().to_commented_toml();
        kith::crypto::write_private_file(&path, text.as_bytes()).map_err(|e| e.to_string())?;
        println!("Wrote a default config to {}", path.display());
    }
    let mut shutdown = std::pin::pin!(shutdown_signal());
    // The wizard and the settings page ask for a restart after writing the config: the
    // server stops and starts again from the file.
    loop {
        let config = load(&path)?;
        let data_dir = config.resolved_data_dir(&path);
        let server_name = config.server_name.clone();
        let server = kith::start_with(
            config,
            data_dir.clone(),
            kith::StartOptions {
                config_file: Some(path.clone()),
                logs: Some(logs.clone()),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let ui = ui_address(server.client_addr());
        println!("Kith is running for {server_name}.");
        println!("  Client API: http://{}", server.client_addr());
        println!("  Dashboard:  {ui}");
        println!("  Data:       {}", data_dir.display());
        println!("  Config:     {}", path.display());
        match server.setup_token() {
            Some(token) => {
                println!();
                println!(
                    "First run: open this one-time setup link to choose the server name and create the admin:"
                );
                println!("  {ui}#setup={token}");
                println!();
            }
            None => println!(
                "Connect Element (or any Matrix client) to http://{} .",
                server.client_addr()
            ),
        }
        let restart = tokio::select! {
            _ = &mut shutdown => false,
            _ = server.restart_requested() => true,
        };
        if restart {
            println!("Restarting with the new config…");
            server.stop().await.map_err(|e| e.to_string())?;
            continue;
        }
        println!("Stopping; letting requests in flight finish…");
        server.stop().await.map_err(|e| e.to_string())?;
        return Ok(());
    }
}

/// The dashboard's address: on an unspecified listener (0.0.0.0), the loopback one.
fn ui_address(client: std::net::SocketAddr) -> String {
    let mut addr = client;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("http://{addr}/_kith/")
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `kith check`: the report on stdout, and whether federation is OK.
async fn check(
    server_name: &str,
    json: bool,
    ca_file: Option<PathBuf>,
    dns_server: Option<String>,
) -> Result<bool, String> {
    let extra_roots_pem = match ca_file {
        Some(file) => {
            Some(std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?)
        }
        None => None,
    };
    let dns_server = match dns_server {
        Some(text) => Some(
            text.parse::<std::net::SocketAddr>()
                .or_else(|_| {
                    text.parse::<std::net::IpAddr>()
                        .map(|ip| std::net::SocketAddr::new(ip, 53))
                })
                .map_err(|_| format!("--dns-server {text}: not an IP address or IP:PORT"))?,
        ),
        None => None,
    };
    let checker = kith::service::checker::Checker::new(&kith::service::checker::CheckerOptions {
        dns_server,
        extra_roots_pem,
        timeout: std::time::Duration::ZERO,
    })?;
    let report = checker.check(server_name).await;
    if json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", report.to_text());
    }
    Ok(report.federation_ok)
}

async fn run(cli: Cli, logs: kith::logging::LogBuffer) -> Result<ExitCode, String> {
    let done = |result: Result<(), String>| result.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Check {
            server_name,
            json,
            ca_file,
            dns_server,
        } => {
            let ok = check(&server_name, json, ca_file, dns_server)
                .await
                .map_err(|e| format!("the check could not run: {e}"));
            match ok {
                Ok(true) => Ok(ExitCode::SUCCESS),
                Ok(false) => Ok(ExitCode::from(1)),
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Serve { config } => done(serve(config, logs).await),
        Command::Init {
            server_name,
            data_dir,
            client_listen,
            federation_listen,
            registration,
            insecure_federation,
            config,
            force,
        } => {
            let path = match (config, &data_dir) {
                (Some(path), _) => path,
                (None, Some(dir)) => dir.join("kith.toml"),
                (None, None) => config_path(None)?,
            };
            if path.exists() && !force {
                return Err(format!(
                    "{} already exists; pass --force to replace it",
                    path.display()
                ));
            }
            let mut config = Config {
                server_name,
                data_dir,
                ..Config::default()
            };
            config.listen.client = client_listen;
            config.listen.federation = federation_listen;
            config.registration.mode = registration;
            if insecure_federation {
                config.federation.verify_certificates = false;
                config.federation.allow_private_addresses = true;
            }
            let problems = config.validate();
            if !problems.is_empty() {
                return Err(report(&path, &problems));
            }
            kith::crypto::write_private_file(&path, config.to_commented_toml().as_bytes())
                .map_err(|e| e.to_string())?;
            println!("Wrote {}", path.display());
            done(Ok(()))
        }
        Command::Config {
            command: ConfigCommand::Validate { config },
        } => {
            let path = config_path(config)?;
            load(&path)?;
            println!("{} is valid.", path.display());
            done(Ok(()))
        }
        Command::User {
            command:
                UserCommand::Add {
                    name,
                    admin,
                    password_file,
                    config,
                },
        } => {
            let path = config_path(config)?;
            let config = load(&path)?;
            let password = match password_file {
                Some(file) => std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                None => rpassword::prompt_password(format!("Password for {name}: "))
                    .map_err(|e| e.to_string())?,
            };
            if password.is_empty() {
                return Err("the password must not be empty".to_owned());
            }
            let data_dir = config.resolved_data_dir(&path);
            let user_id = kith::control::add_user(config, data_dir, &name, &password, admin)
                .await
                .map_err(|e| e.to_string())?;
            println!("Created {user_id}{}", if admin { " (admin)" } else { "" });
            done(Ok(()))
        }
    }
}

fn main() -> ExitCode {
    let logs = kith::logging::init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, logs)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
