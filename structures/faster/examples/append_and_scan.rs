//! Appends a few entries to FasterLog `events` in the store at `$1` (default `flog-example`),
//! commits, saves a named iterator, scans, and closes. `vellum dump DIR --faster-log` then shows
//! the log.

use std::sync::Arc;
use std::time::Duration;

use vellum::runtime::{DurableRuntime, RuntimeOptions};
use vellum_faster::{FasterLog, FasterLogOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "flog-example".into());
    let rt = Arc::new(DurableRuntime::open(&dir, RuntimeOptions::default())?);
    let log = FasterLog::open(rt.clone(), "events", FasterLogOptions::default())?;
    let first = log.append(b"hello")?;
    log.append_batch(&[b"one", b"two", b"three"])?;
    log.save_iterator("consumer", first)?;
    let tail = log.commit()?;
    let mut it = log.named_iterator("consumer");
    let mut n = 0;
    while let Some(e) = it.next_timeout(Duration::ZERO)? {
        tracing::info!(address = e.address, len = e.bytes.len(), "entry");
        n += 1;
    }
    drop(log);
    if let Some(rt) = Arc::into_inner(rt) {
        rt.close()?;
    }
    // An example reports on stdout.
    #[expect(clippy::print_stdout, reason = "an example's output")]
    {
        println!("{n} entries committed up to address {tail} in {dir}");
    }
    Ok(())
}
