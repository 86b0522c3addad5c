//! What a run costs the machine: the disk a directory's files take and the process's peak
//! resident memory, for the summary a bench prints at its end.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The regular files under a directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUse {
    /// Regular files counted.
    pub files: u64,
    /// Sum of their lengths (what `ls -l` shows; sparse and preallocated files differ from
    /// what they occupy).
    pub bytes: u64,
    /// Sum of the blocks the filesystem allocated to them (what `du` shows).
    pub allocated_bytes: u64,
}

/// Adds up the regular files under `dir`, recursively; symbolic links are not followed.
pub fn disk_use(dir: &Path) -> io::Result<DiskUse> {
    let mut total = DiskUse::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                total.files += 1;
                total.bytes += meta.len();
                // st_blocks counts 512-byte units whatever the filesystem's block size.
                total.allocated_bytes += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}

/// The most memory this process has held resident so far (`VmHWM` of `/proc/self/status`), or
/// `None` where the kernel does not report it. Pages of mapped files count as well as the heap.
pub fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    resident_field_bytes(&status, "VmHWM:")
}

/// Starts a new peak: `VmHWM` falls to the current resident size (writing `5` to
/// `/proc/self/clear_refs`); false where the kernel does not allow it.
pub fn reset_peak_resident() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A `/proc/<pid>/status` field given in kB, in bytes.
fn resident_field_bytes(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_status_field_in_kib() {
        let status = "Name:\tvellum\nVmPeak:\t  123 kB\nVmHWM:\t   2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(resident_field_bytes(status, "VmHWM:"), Some(2 << 20));
        assert_eq!(resident_field_bytes(status, "VmSwap:"), None);
        assert_eq!(resident_field_bytes("VmHWM:\tlots\n", "VmHWM:"), None);
    }

    #[test]
    fn adds_up_lengths_and_allocated_blocks_recursively() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("a"), vec![1u8; 10_000]).expect("write");
        std::fs::create_dir(tmp.path().join("sub")).expect("mkdir");
        let sparse = std::fs::File::create(tmp.path().join("sub/sparse")).expect("create");
        sparse.set_len(1 << 30).expect("set_len");
        let used = disk_use(tmp.path()).expect("disk use");
        assert_eq!(used.files, 2);
        assert_eq!(used.bytes, 10_000 + (1 << 30));
        // The written file takes at least its length; the sparse one next to nothing.
        assert!(
            (10_000..1 << 20).contains(&used.allocated_bytes),
            "{used:?}"
        );
        if let Some(peak) = peak_resident_bytes() {
            assert!(peak > 0);
        }
    }
}
