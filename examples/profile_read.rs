//! Profiling aid: 2 million snapshot reads of resident 100-byte nodes (run under callgrind).

use vellum::runtime::{DurableRuntime, RuntimeOptions};

fn main() -> vellum::Result<()> {
    let dir = std::env::temp_dir().join(format!("vellum-profile-{}", std::process::id()));
    let rt = DurableRuntime::open(&dir, RuntimeOptions::default())?;
    let mut tx = rt.begin();
    let ids: Vec<_> = (0..4096)
        .map(|i| tx.alloc(1, &[i as u8; 100]))
        .collect::<Result<_, _>>()?;
    tx.commit()?;
    let snap = rt.snapshot();
    let reader = snap.reader();
    let mut sum = 0u64;
    for i in 0..2_000_000usize {
        if let Some(b) = reader.get(ids[i % 4096])? {
            sum += u64::from(b[0]);
        }
    }
    drop(reader);
    drop(snap);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
    std::hint::black_box(sum);
    Ok(())
}
