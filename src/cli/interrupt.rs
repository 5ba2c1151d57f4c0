//! SIGINT, SIGTERM and SIGHUP end a run cleanly: the first sets a flag that the streaming loop
//! reads between chunks ([`realnvp::pipeline::StreamOptions::interrupted`]); the run then
//! returns [`realnvp::Error::Interrupted`], its unfinished outputs are deleted as they drop,
//! and the process exits with status 128 + the signal number. If the run has not ended
//! [`GRACE`] after the signal (a chunk or a GPU kernel build that takes longer), the handler
//! deletes the temporary output files itself and exits with that status. Nothing at an output
//! path is ever replaced by an unfinished file.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// How long a run has to stop on its own after a signal.
pub const GRACE: Duration = Duration::from_millis(700);

/// The first signal received (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Whether a stop was requested (for [`realnvp::pipeline::StreamOptions::interrupted`]).
pub fn requested() -> bool {
    SIGNAL.load(Ordering::Relaxed) != 0
}

/// The signal that asked the run to stop.
pub fn received() -> Option<i32> {
    Some(SIGNAL.load(Ordering::Relaxed)).filter(|&s| s != 0)
}

/// Starts the thread that receives the signals (a no-op where signals do not exist).
pub fn install() {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return; // the default dispositions stay: the process dies, its temporary files remain
        };
        std::thread::spawn(move || {
            for signal in signals.forever() {
                if SIGNAL.compare_exchange(0, signal, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                    std::thread::spawn(move || {
                        std::thread::sleep(GRACE);
                        give_up(signal)
                    });
                } else {
                    give_up(signal) // a second signal: stop now
                }
            }
        });
    }
}

/// Deletes this process's unfinished outputs and exits.
fn give_up(signal: i32) -> ! {
    realnvp::output::remove_partial_files();
    eprintln!("interrupted by signal {signal}; no output written");
    std::process::exit(128 + signal)
}
