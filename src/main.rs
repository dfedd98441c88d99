//! The `larder` command: `serve` runs the proxy, `check` validates a config, `ctl` talks
//! to a running larder's admin API.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "larder", version, about = "A response-caching reverse proxy")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy in front of the configured upstream.
    Serve {
        /// The config file.
        #[arg(long, env = "LARDER_CONFIG", default_value = "config/larder.toml")]
        config: PathBuf,
    },
    /// Validate the config and print the rules as understood.
    Check {
        /// The config file.
        #[arg(long, env = "LARDER_CONFIG", default_value = "config/larder.toml")]
        config: PathBuf,
    },
    /// Talk to a running larder's admin API (the token comes from $LARDER_ADMIN_TOKEN).
    Ctl {
        /// The admin API's address.
        #[arg(
            long,
            global = true,
            env = "LARDER_ADMIN_URL",
            default_value = "http://127.0.0.1:9091"
        )]
        admin: String,
        /// PEM roots trusted for an https:// admin API besides the system's.
        #[arg(long, global = true, env = "LARDER_ADMIN_CA")]
        cacert: Option<PathBuf>,
        #[command(subcommand)]
        action: CtlCommand,
    },
}

#[derive(Subcommand)]
enum CtlCommand {
    /// Print `/health`; exit 0 while larder answers (a container health check).
    Health,
    /// Print the counters (`/admin/stats`, JSON).
    Stats,
    /// Drop entries by tag, URL, prefix, pattern, tag prefix or user (any of them, or with
    /// --all-of only what every one matches).
    #[command(group(clap::ArgGroup::new("what").required(true).multiple(true)))]
    Invalidate {
        /// A tag (repeatable).
        #[arg(long = "tag", group = "what")]
        tags: Vec<String>,
        /// A URL, `/path?query` (repeatable).
        #[arg(long = "url", group = "what")]
        urls: Vec<String>,
        /// A URL prefix.
        #[arg(long, group = "what")]
        prefix: Option<String>,
        /// A user: a header source's value or a JWT source's claim.
        #[arg(long, group = "what")]
        user_id: Option<String>,
        /// A path glob: `*` one segment, `**` any number (`/videos/*/comments`).
        #[arg(long, group = "what")]
        pattern: Option<String>,
        /// Every tag starting with this (ending in `:`, `/`, `.`, `-`, `_` or `=`).
        #[arg(long, group = "what")]
        tag_prefix: Option<String>,
        /// Drop only what every scope given matches (without it: any of them).
        #[arg(long)]
        all_of: bool,
        /// Answer once every live instance has applied it; name those that did not.
        #[arg(long)]
        wait: bool,
        /// Mark stale instead of removing (served while refreshed).
        #[arg(long)]
        soft: bool,
        /// Yes, even when the scope matches every entry (an empty or `/` prefix).
        #[arg(long)]
        yes: bool,
    },
    /// Drop everything, in every tier and every instance.
    Purge {
        /// Yes, everything.
        #[arg(long)]
        yes: bool,
    },
    /// Fetch these paths through the cache.
    Warm {
        /// Paths, `/path?query`.
        #[arg(required = true)]
        urls: Vec<String>,
    },
    /// Re-read and validate the config file.
    Reload,
    /// Show one URL's entries in every tier (why was it a miss?).
    Inspect {
        /// The URL, `/path?query`.
        url: String,
        /// The user, for a per-user rule (a header source's value or a JWT claim).
        #[arg(long)]
        user_id: Option<String>,
        /// The method (default GET).
        #[arg(long)]
        method: Option<String>,
    },
    /// List what is cached, a page at a time (memory, then disk, then Redis).
    Keys {
        /// Only URLs starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Only this rule's entries.
        #[arg(long)]
        rule: Option<String>,
        /// Rows per page (default 100, at most 1000).
        #[arg(long)]
        limit: Option<usize>,
        /// Where to begin: the cursor the previous page printed.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show the invalidation history, newest first.
    History {
        /// Events at or after this (RFC 3339, or ms since the epoch).
        #[arg(long)]
        since: Option<String>,
        /// At most this many (default 100).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show what the counters suggest changing.
    Advise,
    /// Show the config in force (secrets masked), when it was reloaded, and what waits for
    /// a restart.
    Config,
}

/// The admin API call a `larder ctl` command makes; misuse is exit code 2.
fn action(command: CtlCommand) -> Result<larder::ctl::Action, ExitCode> {
    use larder::ctl::Action;
    Ok(match command {
        CtlCommand::Health => Action::Health,
        CtlCommand::Stats => Action::Stats,
        CtlCommand::Invalidate {
            tags,
            urls,
            prefix,
            user_id,
            pattern,
            tag_prefix,
            all_of,
            wait,
            soft,
            yes,
        } => Action::Invalidate(larder::ctl::Scope {
            tags,
            urls,
            prefix,
            user_id,
            pattern,
            tag_prefix,
            all_of,
            wait,
            soft,
            confirm_all: yes,
        }),
        CtlCommand::Purge { yes: false } => {
            eprintln!("larder ctl: purge drops every entry in every tier: pass --yes");
            return Err(ExitCode::from(2));
        }
        CtlCommand::Purge { yes: true } => Action::Purge,
        CtlCommand::Warm { urls } => Action::Warm { urls },
        CtlCommand::Reload => Action::Reload,
        CtlCommand::Inspect {
            url,
            user_id,
            method,
        } => Action::Inspect {
            url,
            user_id,
            method,
        },
        CtlCommand::Keys {
            prefix,
            rule,
            limit,
            cursor,
        } => Action::Keys {
            prefix,
            rule,
            limit,
            cursor,
        },
        CtlCommand::History { since, limit } => Action::History { since, limit },
        CtlCommand::Advise => Action::Advise,
        CtlCommand::Config => Action::Config,
    })
}

/// Runs `larder ctl`: 0 on success, 1 when the admin API fails or refuses, 2 on misuse.
fn ctl(admin: &str, cacert: Option<PathBuf>, command: CtlCommand) -> ExitCode {
    use larder::ctl::Admin;
    let action = match action(command) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let token = std::env::var("LARDER_ADMIN_TOKEN").ok();
    let client = match Admin::new(admin, token) {
        Ok(c) => c.with_ca_file(cacert),
        Err(e) => {
            eprintln!("larder ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("larder ctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(client.run(&action)) {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("larder ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Log lines (the access log among them) are written by a worker thread, off the
    // request path; the guard flushes them at exit.
    let (writer, _flush) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Ctl {
            admin,
            cacert,
            action,
        } => ctl(&admin, cacert, action),
        Command::Check { config } => match larder::Config::load(&config) {
            Ok(c) => {
                print!("{}", c.describe());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Serve { config } => {
            let config = match larder::Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.thread_name("larder-worker");
            if let Some(workers) = config.proxy.workers {
                builder.worker_threads(workers);
            }
            let runtime = match builder.enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("larder: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(async move {
                let stop = shutdown_signal();
                let _file_size = file_size_signal();
                let running = match larder::sidecar::start(config).await {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("larder: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                running.run_until(stop).await;
                ExitCode::SUCCESS
            })
        }
    }
}

/// SIGXFSZ (a write past `ulimit -f`) would end the process; handled, the write fails with
/// EFBIG instead and the disk tier disables itself. The handler lives as long as this.
fn file_size_signal() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    // SIGXFSZ is 25 on Linux.
    signal(SignalKind::from_raw(25)).ok()
}

/// SIGTERM or SIGINT, listened for from the moment this is called: registered before the
/// listeners open, so a signal that arrives as soon as larder is up is not lost (or fatal).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            // Without signal handlers, only a kill stops the process.
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
