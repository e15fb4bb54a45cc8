//! The `losswatch` binary: command-line parsing only; everything else is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use losswatch::config::{Config, Overrides};
use tokio_util::sync::CancellationToken;

/// End-to-end message-loss monitoring for Kafka.
#[derive(Debug, Parser)]
#[command(name = "losswatch", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// Validate the configuration and print it, secrets redacted.
    CheckConfig,
    /// Run the whole agent against an in-process mock cluster in which every stage loses
    /// messages; exits non-zero if a count differs from what was injected.
    Demo(DemoArgs),
    /// Print the loss events recorded in a state file.
    Report(ReportArgs),
    /// Audit the cluster once: settings that make loss possible, and how to fix them. Exits
    /// 0 when clean, 1 with findings, 2 when nothing could be audited.
    Audit(AuditArgs),
    /// Poll consumer-group lag once and print it (every group, or --group).
    Lag(LagArgs),
}

#[derive(Debug, Args)]
struct AuditArgs {
    /// Print JSON (the format of /api/audit) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct LagArgs {
    /// Only this consumer group.
    #[arg(long)]
    group: Option<String>,
    /// Print JSON (an array of rows) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// TOML config file.
    #[arg(long, env = "LOSSWATCH_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers (overrides kafka.bootstrap_servers).
    #[arg(long, env = "LOSSWATCH_BOOTSTRAP_SERVERS", global = true)]
    bootstrap_servers: Option<String>,
    /// Canary topic (overrides canary.topic).
    #[arg(long, env = "LOSSWATCH_TOPIC", global = true)]
    topic: Option<String>,
    /// HTTP listen address (overrides http.listen).
    #[arg(long, env = "LOSSWATCH_LISTEN", global = true)]
    listen: Option<SocketAddr>,
    /// SQLite state file (overrides state.path).
    #[arg(long, env = "LOSSWATCH_STATE", global = true)]
    state: Option<PathBuf>,
    /// SASL username (sets kafka.properties."sasl.username").
    #[arg(
        long,
        env = "LOSSWATCH_KAFKA_SASL_USERNAME",
        global = true,
        hide_env_values = true
    )]
    sasl_username: Option<String>,
    /// SASL password (sets kafka.properties."sasl.password").
    #[arg(
        long,
        env = "LOSSWATCH_KAFKA_SASL_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    sasl_password: Option<String>,
    /// Web-config file of the Prometheus exporter toolkit: TLS and basic auth for the
    /// endpoints (overrides http.web_config_file).
    #[arg(
        long = "web.config.file",
        env = "LOSSWATCH_WEB_CONFIG_FILE",
        global = true
    )]
    web_config_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Stop after this long (e.g. 30s, 5m); runs until Ctrl-C when absent.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Probe interval per partition.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    probe_interval: Duration,
    /// Seconds between summary lines.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    summary_every: Duration,
    /// Run without the loss schedule (nothing is injected; nothing may be counted).
    #[arg(long)]
    no_chaos: bool,
    /// Latency histograms per partition too (`metrics.per_partition_histograms`).
    #[arg(long)]
    per_partition_histograms: bool,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Most events shown, newest first.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

const EX_USAGE: u8 = 64;

fn overrides(a: &ConfigArgs) -> Overrides {
    Overrides {
        bootstrap_servers: a.bootstrap_servers.clone(),
        topic: a.topic.clone(),
        listen: a.listen,
        state: a.state.clone(),
        sasl_username: a.sasl_username.clone(),
        sasl_password: a.sasl_password.clone(),
        web_config_file: a.web_config_file.clone(),
    }
}

/// Logs to stderr; `LOSSWATCH_LOG` sets the filter (default `default`).
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOSSWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Cancels the token on SIGTERM or SIGINT.
fn on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        token.cancel();
    });
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own summary lines; keep the log to what needs attention, and to
    // the agent's own clients (the simulated application's and the mock cluster's clients
    // log through librdkafka's default context, target `librdkafka`).
    init_logging(match cli.command {
        Some(Command::Demo(_)) => "warn,librdkafka=off,rdkafka=off",
        Some(Command::Audit(_) | Command::Lag(_)) => "warn",
        _ => "info",
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("losswatch: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let o = overrides(&cli.config);
    let code = dispatch(cli, o, &runtime);
    // A blocking librdkafka call still waiting on a dead broker must not hold the exit past
    // the shutdown grace: give such calls one second, then leave.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

fn dispatch(cli: Cli, o: Overrides, runtime: &tokio::runtime::Runtime) -> ExitCode {
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => match Config::load(cli.config.config.as_deref(), &o) {
            Ok(cfg) => {
                print!("{}", cfg.to_redacted_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("losswatch: {e}");
                ExitCode::from(EX_USAGE)
            }
        },
        Command::Run => {
            let cfg = match Config::load(cli.config.config.as_deref(), &o) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("losswatch: {e}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            runtime.block_on(async {
                let token = CancellationToken::new();
                on_signals(token.clone());
                match losswatch::run(cfg, token).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("losswatch: {e}");
                        ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
                    }
                }
            })
        }
        Command::Demo(d) => {
            let opts = losswatch::demo::DemoOptions {
                duration: d.duration,
                listen: cli
                    .config
                    .listen
                    .unwrap_or_else(|| losswatch::demo::DemoOptions::default().listen),
                state: cli.config.state.clone(),
                summary_every: d.summary_every,
                probe_interval: d.probe_interval,
                chaos: !d.no_chaos,
                web_config_file: cli.config.web_config_file.clone(),
                per_partition_histograms: d.per_partition_histograms,
            };
            runtime.block_on(async {
                let token = CancellationToken::new();
                on_signals(token.clone());
                match losswatch::demo::run(opts, token).await {
                    Ok(o) if o.exact => ExitCode::SUCCESS,
                    Ok(_) => {
                        eprintln!("losswatch demo: the counts differ from what was injected");
                        ExitCode::FAILURE
                    }
                    Err(e) => {
                        eprintln!("losswatch demo: {e}");
                        ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
                    }
                }
            })
        }
        Command::Lag(l) => {
            let cfg = match Config::load(cli.config.config.as_deref(), &o) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("losswatch: {e}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            runtime.block_on(async {
                match losswatch::lag::once::poll_once(&cfg, l.group.as_deref()).await {
                    Ok(rows) if l.json => match serde_json::to_string_pretty(&rows) {
                        Ok(j) => {
                            println!("{j}");
                            ExitCode::SUCCESS
                        }
                        Err(e) => {
                            eprintln!("losswatch: {e}");
                            ExitCode::FAILURE
                        }
                    },
                    Ok(rows) => {
                        print!("{}", losswatch::lag::once::table(&rows));
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("losswatch lag: {e}");
                        ExitCode::from(e.exit_code())
                    }
                }
            })
        }
        Command::Audit(a) => {
            let cfg = match Config::load(cli.config.config.as_deref(), &o) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("losswatch: {e}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            let out = runtime.block_on(losswatch::audit::oneshot::run(&cfg, a.json));
            print!("{}", out.stdout);
            eprint!("{}", out.stderr);
            ExitCode::from(out.code)
        }
        Command::Report(r) => {
            let path = match (&cli.config.state, cli.config.config.as_deref()) {
                (Some(p), _) => p.clone(),
                (None, Some(_)) => match Config::load(cli.config.config.as_deref(), &o) {
                    Ok(c) => c.state.path.clone(),
                    Err(e) => {
                        eprintln!("losswatch: {e}");
                        return ExitCode::from(EX_USAGE);
                    }
                },
                (None, None) => {
                    eprintln!("losswatch: report needs --state FILE (or --config)");
                    return ExitCode::from(EX_USAGE);
                }
            };
            match losswatch::report::report(&path, r.limit) {
                Ok(table) => {
                    print!("{table}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("losswatch: {e}");
                    ExitCode::from(74)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
