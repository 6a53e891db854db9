//! The daemon's own log: `tracing` with fields to stderr (procd forwards it
//! to logread). Alerts do not go here; they go to syslog (`syslog.rs`).

pub fn init() {
    let filter = std::env::var("LEASH_LOG").ok().and_then(|s| s.parse::<tracing::Level>().ok()).unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt().with_max_level(filter).with_writer(std::io::stderr).with_ansi(false).without_time().try_init();
}
