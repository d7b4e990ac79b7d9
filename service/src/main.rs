//! `stockledgerd`: see cli.md. Exit status 0 after a clean shutdown, 2 for invalid
//! configuration, 1 when the service cannot start (the ledger's lock is held, the port is taken).

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

// Every request allocates (bodies, JSON, ledger records): mimalloc's thread-local free lists
// cost less than glibc's arenas (issue 11, "the reservation path").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = stockledger_service::admin::dispatch(&args) {
        return code;
    }
    let cfg = match stockledger_service::config::Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stockledgerd: {}", e.trim_end());
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // When stderr cannot be written (a full disk under a redirected log, a closed
        // pipe), tracing-subscriber reports it with `eprintln!`, which panics: the log
        // writer thread died inside its own panic handler and every waiting request hung
        // (service/tests/disk_full_tmpfs.rs). Losing a log line is the lesser harm.
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stockledgerd: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(stockledger_service::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stockledgerd: {e}");
            ExitCode::from(1)
        }
    }
}
