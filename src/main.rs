//! The `realnvp` command-line tool: parses the command line and hands the subcommand to
//! [`cli::run`] (one file per subcommand in `src/cli/`).

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// `realnvp … | head` closes stdout early; `println!` then panics. Exit quietly with the
/// status of a SIGPIPE death (128 + 13) instead, as other command-line tools do.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg =
            payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if msg.is_some_and(|m| m.contains("Broken pipe")) {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// Most CPU threads `--threads` accepts.
const MAX_THREADS: usize = 1024;

/// Mesa's Vulkan drivers print "error: XDG_RUNTIME_DIR is invalid or not set" when it is unset
/// (a fresh machine, a container, cron): give them a private one under the temp directory.
fn ensure_runtime_dir() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("realnvp-runtime-{uid}"));
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        // only a directory of ours that nobody else can enter
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0) {
            std::env::set_var("XDG_RUNTIME_DIR", dir);
        }
    }
}

fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    ensure_runtime_dir();
    cli::interrupt::install();
    let args = cli::Cli::parse();
    if let Some(n) = args.threads {
        if n == 0 || n > MAX_THREADS {
            eprintln!("error: --threads {n}: give 1 to {MAX_THREADS} (default: all cores)");
            return ExitCode::FAILURE;
        }
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
            eprintln!("error: --threads {n}: {e}");
            return ExitCode::FAILURE;
        }
    }
    match cli::run(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match cli::interrupt::received() {
            Some(signal) if matches!(e.downcast_ref(), Some(realnvp::Error::Interrupted)) => {
                eprintln!("interrupted by signal {signal}; no output written");
                ExitCode::from(128 + signal as u8)
            }
            _ => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
