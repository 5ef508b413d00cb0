//! `mail-order-bot`: parses the command line and hands over to the library.
//!
//! Exit codes: 0 ok, 2 configuration problem, 1 any other failure.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    Demo,
}

fn exit(result: Result<(), AppError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = error.exit_code();
            let error = anyhow::Error::new(error);
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Runtime(RuntimeCommand::Run(args)) => exit(app::run(&args).await),
            Command::Runtime(RuntimeCommand::CheckConfig(args)) => {
                cli::check_config(&config_spec(), &args).await
            }
            Command::Runtime(RuntimeCommand::PrintConfig(args)) => {
                cli::print_config(&config_spec(), &args).await
            }
            Command::Orders { json, config } => {
                exit(report::orders_command(&config, json, &mut std::io::stdout().lock()).await)
            }
            Command::Demo => exit(demo::demo().await),
        }
    })
}
