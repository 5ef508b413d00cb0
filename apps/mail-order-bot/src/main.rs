//! `mail-order-bot`: parses the command line and hands over to the library.
//!
//! Exit codes: those of `runtime_core::cli` (`EXIT_OK`, `EXIT_FAILURE`, `EXIT_CONFIG`),
//! shown in every subcommand's `--help`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use mail_order_bot::app::{self, AppError};
use mail_order_bot::config::config_spec;
use mail_order_bot::{demo, report};
use runtime_core::cli::{self, ConfigArgs, RuntimeCommand};

/// Turns order emails into orders: reads a mailbox (IMAP polling, IMAP IDLE or a
/// Maildir), stores each order in SQLite or PostgreSQL, and marks the email \Seen once
/// its order is stored.
///
/// Configuration: embedded defaults < --config files (later wins) < database layer
/// ([config_db]) < MOB_* environment variables (MOB_MAIL__PASSWORD sets mail.password).
/// Try `mail-order-bot demo` first: it needs no server.
#[derive(Parser, Debug)]
#[command(name = "mail-order-bot", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Runtime(RuntimeCommand),
    /// List the stored orders (id, created, customer, PO, status, reason, total, lines)
    #[command(after_help = orders_help())]
    Orders {
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Run on embedded defaults with no server: seeds ./var/maildir with sample order
    /// emails, stores orders in ./var/orders.db, prints them, then keeps watching the
    /// Maildir until Ctrl-C
    #[command(after_help = demo_help())]
    Demo,
}

fn orders_help() -> String {
    format!(
        "Examples:\n  mail-order-bot orders --config /etc/mail-order-bot/bot.toml\n  \
         mail-order-bot orders --json -c bot.toml | jq '.[] | select(.status == \"rejected\")'\n  \
         mail-order-bot orders                  # ./var/orders.db, where `demo` stores\n\n{}",
        cli::exit_codes_help("listed (also when the reader closes the output early)")
    )
}

fn demo_help() -> String {
    format!(
        "Examples:\n  mail-order-bot demo                    # then mv .eml files into ./var/maildir/new\n  \
         MOB_TRACING__LEVEL=info mail-order-bot demo   # show the runtime's logs too\n\n{}",
        cli::exit_codes_help_interruptible("stopped by Ctrl-C")
    )
}

fn exit(result: Result<(), AppError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // At once: returning would wait for the async runtime's blocking tasks.
        Err(error) if error.is_interrupted() => {
            eprintln!("{error}");
            std::process::exit(i32::from(error.exit_code()))
        }
        Err(error) => {
            eprintln!("error: {}", runtime_contracts::error_chain(&error));
            ExitCode::from(error.exit_code())
        }
    }
}

fn main() -> ExitCode {
    // The runtime's subcommands get their examples and exit codes in `--help` here.
    let matches = cli::with_runtime_help(Cli::command(), "mail-order-bot").get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Runtime(RuntimeCommand::Run(args)) => exit(app::run(&args).await),
            Command::Runtime(RuntimeCommand::CheckConfig(args)) => {
                cli::check_config(&config_spec(), &args, &app::probes).await
            }
            Command::Runtime(RuntimeCommand::PrintConfig(args)) => {
                cli::print_effective_config(&config_spec(), &args, &|snapshot, tree| {
                    runtime_compose::fill_effective(
                        &runtime_compose::Backends::builtin(),
                        snapshot,
                        tree,
                    )
                })
                .await
            }
            Command::Orders { json, config } => {
                exit(report::orders_command(&config, json, &mut std::io::stdout().lock()).await)
            }
            Command::Demo => exit(demo::demo().await),
        }
    })
}
