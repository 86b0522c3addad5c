//! What the kernel counts of a run's writes: the bytes this process sent towards storage
//! (`write_bytes` of `/proc/self/io`) and the sectors the block device holding a directory wrote
//! (`/proc/diskstats`). A bench samples both before and after a measured interval.
//!
//! Neither is always available (a container may hide `/proc/self/io`; a directory on overlayfs,
//! tmpfs or btrfs sits on a device number with no `diskstats` line), so every reader here returns
//! `None` instead of failing, and the report prints "n/a".
//!
//! The device counts every writer of the disk, not only this process, and it counts what the
//! filesystem adds (its journal, metadata); `write_bytes` counts the pages this process dirtied
//! or wrote directly, when it dirtied them, not when the disk took them.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The unit of the sector counts in `/proc/diskstats`, whatever the device's sector size.
const DISKSTATS_SECTOR_BYTES: u64 = 512;
/// The 0-based column of "sectors written" in a `/proc/diskstats` line: major, minor, name, then
/// reads completed, reads merged, sectors read, ms reading, writes completed, writes merged.
const SECTORS_WRITTEN_COLUMN: usize = 9;

/// A block device's major and minor numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceId {
    pub major: u64,
    pub minor: u64,
}

impl DeviceId {
    /// Splits a `st_dev` the way glibc's `gnu_dev_major`/`gnu_dev_minor` do, without calling
    /// into libc: the major's low 12 bits sit in bits 8..20 and its high ones in 44..64; the
    /// minor's low 8 bits in 0..8 and its next 24 in 20..44. The minor's mask stops at bit 44,
    /// so a major above 12 bits does not leak into it.
    pub fn from_dev(dev: u64) -> DeviceId {
        DeviceId {
            major: ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000),
            minor: (dev & 0xff) | ((dev >> 12) & 0xffff_ff00),
        }
    }

    /// The device holding `path`.
    pub fn of(path: &Path) -> std::io::Result<DeviceId> {
        Ok(DeviceId::from_dev(std::fs::metadata(path)?.dev()))
    }
}

/// One reading of both counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoSample {
    /// `write_bytes` of `/proc/self/io`.
    pub process_write_bytes: Option<u64>,
    /// Sectors written by the device, in bytes.
    pub device_write_bytes: Option<u64>,
}

impl IoSample {
    /// Reads both counters now; `device` is the disk to read (`None`: unknown).
    pub fn take(device: Option<DeviceId>) -> IoSample {
        IoSample {
            process_write_bytes: process_write_bytes(),
            device_write_bytes: device.and_then(device_write_bytes),
        }
    }

    /// What was written between `earlier` and this sample, counter by counter (`None` where
    /// either sample lacks it, or the counter went backwards, as a removed and re-added device's
    /// does).
    pub fn since(&self, earlier: &IoSample) -> IoSample {
        let delta = |now: Option<u64>, then: Option<u64>| now?.checked_sub(then?);
        IoSample {
            process_write_bytes: delta(self.process_write_bytes, earlier.process_write_bytes),
            device_write_bytes: delta(self.device_write_bytes, earlier.device_write_bytes),
        }
    }
}

/// `write_bytes` of `/proc/self/io`: the bytes this process (all its threads, living or ended)
/// caused to be sent to storage.
pub fn process_write_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/io").ok()?;
    proc_io_field(&text, "write_bytes")
}

/// The bytes the block device `device` has written since boot, from `/proc/diskstats`.
pub fn device_write_bytes(device: DeviceId) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/diskstats").ok()?;
    Some(diskstats_sectors_written(&text, device)? * DISKSTATS_SECTOR_BYTES)
}

/// The value of `field` in the text of a `/proc/<pid>/io` file (`name: value` lines).
pub fn proc_io_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == field).then(|| value.trim().parse().ok())?
    })
}

/// The sectors written of `device`'s line in the text of `/proc/diskstats`.
pub fn diskstats_sectors_written(text: &str, device: DeviceId) -> Option<u64> {
    text.lines().find_map(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| columns.get(i)?.parse::<u64>().ok();
        if number(0)? != device.major || number(1)? != device.minor {
            return None;
        }
        number(SECTORS_WRITTEN_COLUMN)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_IO: &str = "rchar: 6976\nwchar: 120\nsyscr: 10\nsyscw: 3\nread_bytes: 4096\n\
                           write_bytes: 1228800\ncancelled_write_bytes: 8192\n";

    const DISKSTATS: &str = "\
   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 5395 2782 1675226 4415 958 10481 894856 2547 0 2544 7219 3337 17 40280 255 21 0
 254       1 vda1 5000 2700 1600000 4000 900 10000 894000 2500 0 2500 7000 3000 17 40000 255 21 0
 253       0 zram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 259       3 nvme0n1p3 10 0 80 1 77 5 123456789012 9 0 1 10
";

    #[test]
    fn proc_io_fields_are_read_exactly() {
        assert_eq!(proc_io_field(PROC_IO, "write_bytes"), Some(1_228_800));
        assert_eq!(proc_io_field(PROC_IO, "read_bytes"), Some(4096));
        assert_eq!(proc_io_field(PROC_IO, "cancelled_write_bytes"), Some(8192));
        assert_eq!(proc_io_field(PROC_IO, "bytes"), None);
        assert_eq!(proc_io_field("write_bytes: many\n", "write_bytes"), None);
        assert_eq!(proc_io_field("", "write_bytes"), None);
    }

    #[test]
    fn diskstats_lines_are_matched_by_major_and_minor() {
        let at = |major, minor| diskstats_sectors_written(DISKSTATS, DeviceId { major, minor });
        assert_eq!(at(254, 0), Some(894_856));
        assert_eq!(at(254, 1), Some(894_000));
        assert_eq!(at(7, 0), Some(0));
        assert_eq!(at(259, 3), Some(123_456_789_012));
        assert_eq!(at(254, 2), None);
        assert_eq!(at(0, 42), None);
        assert_eq!(
            diskstats_sectors_written(
                "254 0 vda 1 2\n",
                DeviceId {
                    major: 254,
                    minor: 0
                }
            ),
            None
        );
    }

    #[test]
    fn device_numbers_split_like_glibc() {
        assert_eq!(
            DeviceId::from_dev(0xfe00),
            DeviceId {
                major: 254,
                minor: 0
            }
        );
        assert_eq!(DeviceId::from_dev(0x0801), DeviceId { major: 8, minor: 1 });
        // makedev(259, 0x12345): minor's high bits above bit 8 go to bits 20 and up.
        let dev = (0x12345u64 & 0xff) | ((259 & 0xfff) << 8) | ((0x12345u64 & !0xff) << 12);
        assert_eq!(
            DeviceId::from_dev(dev),
            DeviceId {
                major: 259,
                minor: 0x12345
            }
        );
        // A major above 12 bits keeps its high part in bits 32 and up.
        let dev = ((0x1234u64 & 0xfff) << 8) | ((0x1234u64 & !0xfff) << 32) | 5;
        assert_eq!(
            DeviceId::from_dev(dev),
            DeviceId {
                major: 0x1234,
                minor: 5
            }
        );
    }

    #[test]
    fn samples_subtract_counter_by_counter() {
        let before = IoSample {
            process_write_bytes: Some(1000),
            device_write_bytes: Some(5120),
        };
        let after = IoSample {
            process_write_bytes: Some(9192),
            device_write_bytes: None,
        };
        let delta = after.since(&before);
        assert_eq!(delta.process_write_bytes, Some(8192));
        assert_eq!(delta.device_write_bytes, None);
        assert_eq!(before.since(&after).process_write_bytes, None);
    }
}
