//! The manifest: the JSON document naming every file recovery must trust.
//!
//! Invariants:
//! 1. An encoded manifest is deterministic: fields in a fixed order, pretty-printed by `serde_json`
//!    with a trailing newline, so equal manifests have equal bytes (and equal CRC32Cs).
//! 2. Only valid manifests are encoded ([`Manifest::encode`] validates first), and a decoded
//!    manifest is returned only after the same validation passed, so every `Manifest` that crossed
//!    the disk satisfies [`Manifest::validate`].
//! 3. Decoding never panics: `serde_json` rejects malformed input with an error (its recursion limit
//!    bounds nesting), and validation uses only checked comparisons.
//! 4. Every decoding failure is a structured corruption error of kind `InvalidDocument` at offset 0
//!    of the manifest file, whose reason names the offending field.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{CorruptionKind, Error, Result};

/// The value of the document's `format` field.
pub const MANIFEST_FORMAT: &str = "vellum-manifest";

/// The schema version this build writes and reads.
pub const MANIFEST_VERSION: u32 = 2;

/// Smallest `layout.file_bytes_max`: the largest segment (64 MiB), so every segment fits a file.
pub const LAYOUT_FILE_BYTES_MIN: u64 = 64 << 20;
/// Largest `layout.file_bytes_max` (1 TiB).
pub const LAYOUT_FILE_BYTES_MAX: u64 = 1 << 40;
/// Smallest `layout.window_bytes` (1 MiB).
pub const LAYOUT_WINDOW_BYTES_MIN: u64 = 1 << 20;

/// What a superblock slot records about the manifest in force: enough to find its file and to
/// prove the file holds exactly the bytes that were published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestRef {
    /// The manifest's seq, which also names its file.
    pub seq: u64,
    /// The file's length in bytes.
    pub bytes: u64,
    /// CRC32C of the file's bytes.
    pub crc32c: u32,
}

impl ManifestRef {
    /// The reference to the manifest with `seq` whose encoding is `encoded`.
    pub fn of(seq: u64, encoded: &[u8]) -> Self {
        ManifestRef {
            seq,
            bytes: encoded.len() as u64,
            crc32c: crate::codec::crc32c(encoded),
        }
    }
}

/// The files and counters a store's recovery starts from.
///
/// The document's `format` and `version` fields are not stored here: they are constants, written
/// by [`Manifest::encode`] and checked by [`Manifest::decode`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest's sequence number (at least 1); it also names the file. [`super::MetaStore`]
    /// assigns it when publishing.
    pub seq: u64,
    /// How the store's data files are cut, fixed when the store is created.
    pub layout: Layout,
    /// The newest complete checkpoint, if any.
    pub checkpoint: Option<CheckpointRef>,
    /// The delta logs to replay after the checkpoint, oldest first.
    pub delta_logs: Vec<DeltaLogRef>,
    /// The data files holding objects.
    pub data_files: Vec<DataFileRef>,
    /// The next sequence numbers to hand out.
    pub counters: Counters,
}

/// How a store's data files are cut: fixed at creation, since locations, segment numbers and
/// file lengths depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// Size at which a class's data file rolls over to the next.
    pub file_bytes_max: u64,
    /// Bytes of a mapped window; data files grow in whole windows.
    pub window_bytes: u64,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            file_bytes_max: 1 << 30,
            window_bytes: 64 << 20,
        }
    }
}

impl Layout {
    fn validate(&self) -> std::result::Result<(), String> {
        let f = self.file_bytes_max;
        if !f.is_power_of_two() || !(LAYOUT_FILE_BYTES_MIN..=LAYOUT_FILE_BYTES_MAX).contains(&f) {
            return Err(format!(
                "layout.file_bytes_max: {f} is not a power of two from 64 MiB to 1 TiB"
            ));
        }
        let w = self.window_bytes;
        if !w.is_power_of_two() || !(LAYOUT_WINDOW_BYTES_MIN..=f).contains(&w) {
            return Err(format!(
                "layout.window_bytes: {w} is not a power of two from 1 MiB to file_bytes_max"
            ));
        }
        Ok(())
    }
}

/// A checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRef {
    /// File name within the store directory.
    pub file: String,
    /// The commit epoch the checkpoint captures.
    pub epoch: u64,
    /// Number of entries in it.
    pub entries: u64,
    /// Its length in bytes.
    pub bytes: u64,
    /// CRC32C of its bytes.
    pub crc32c: u32,
}

/// A delta log file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaLogRef {
    /// File name within the store directory.
    pub file: String,
    /// The log's sequence number.
    pub seq: u64,
    /// The first commit epoch the log may hold.
    pub start_epoch: u64,
    /// For a closed log, the last commit epoch it holds; `None` for the open (last) log.
    #[serde(deserialize_with = "present_option")]
    pub end_epoch: Option<u64>,
    /// For a closed log, its final length in bytes; `None` for the open (last) log.
    #[serde(deserialize_with = "present_option")]
    pub bytes: Option<u64>,
}

/// A data file of one size class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFileRef {
    /// The size class the file's slots belong to.
    pub class: u32,
    /// The file's sequence number within its class.
    pub seq: u64,
    /// File name within the store directory.
    pub file: String,
    /// The file's length in bytes.
    pub bytes: u64,
}

/// Sequence numbers not yet used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counters {
    /// The sequence number the next delta log gets.
    pub next_log_seq: u64,
    /// The sequence number the next checkpoint gets.
    pub next_checkpoint_seq: u64,
    /// The sequence number the next data file gets.
    pub next_data_seq: u64,
}

/// Deserializes an `Option` whose key must be present (as `null` or a value): a plain `Option`
/// field would silently accept a missing key, and a document missing a key is not one we wrote.
fn present_option<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// The document as written: field order here is the order on disk.
#[derive(Serialize)]
struct DocumentOut<'a> {
    format: &'a str,
    version: u32,
    seq: u64,
    layout: &'a Layout,
    checkpoint: &'a Option<CheckpointRef>,
    delta_logs: &'a [DeltaLogRef],
    data_files: &'a [DataFileRef],
    counters: &'a Counters,
}

/// Just enough of the document to tell whether the rest is a schema this build knows, so that a
/// newer version is reported as such rather than as an unknown field.
#[derive(Deserialize)]
struct Header {
    format: String,
    version: u64,
}

/// The whole version-2 document as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentIn {
    #[serde(rename = "format")]
    _format: String,
    #[serde(rename = "version")]
    _version: u64,
    seq: u64,
    layout: Layout,
    #[serde(deserialize_with = "present_option")]
    checkpoint: Option<CheckpointRef>,
    delta_logs: Vec<DeltaLogRef>,
    data_files: Vec<DataFileRef>,
    counters: Counters,
}

/// Checks a file name the manifest refers to: a plain name within the store directory.
fn check_file_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("file name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("file name {name:?} is not a plain name"));
    }
    // ASCII graphic characters exclude '/' only by the next check; they exclude spaces, controls
    // and non-ASCII bytes here, so names are portable and print unambiguously.
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "file name {name:?} has a non-graphic or non-ASCII byte"
        ));
    }
    if name.contains('/') {
        return Err(format!("file name {name:?} contains '/'"));
    }
    Ok(())
}

impl Manifest {
    /// An empty manifest with the default layout: no checkpoint, logs or data files, every
    /// counter at 1.
    pub fn empty() -> Self {
        Manifest {
            seq: 1,
            layout: Layout::default(),
            checkpoint: None,
            delta_logs: Vec::new(),
            data_files: Vec::new(),
            counters: Counters {
                next_log_seq: 1,
                next_checkpoint_seq: 1,
                next_data_seq: 1,
            },
        }
    }

    /// Checks every rule of the schema beyond its shape; the error names the field that broke one.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.seq == 0 {
            return Err("seq: must be at least 1".into());
        }
        self.layout.validate()?;
        self.validate_file_names()?;
        self.validate_logs()?;
        let mut classes_seqs = BTreeSet::new();
        for (i, df) in self.data_files.iter().enumerate() {
            if !classes_seqs.insert((df.class, df.seq)) {
                return Err(format!(
                    "data_files[{i}]: (class {}, seq {}) appears twice",
                    df.class, df.seq
                ));
            }
        }
        self.validate_counters()
    }

    /// Every file name is a plain name, and no file is named twice: two entries naming one file
    /// would let the collector delete a file still in use.
    fn validate_file_names(&self) -> std::result::Result<(), String> {
        let checkpoint = self
            .checkpoint
            .iter()
            .map(|cp| ("checkpoint.file".to_owned(), cp.file.as_str()));
        let logs = self
            .delta_logs
            .iter()
            .enumerate()
            .map(|(i, log)| (format!("delta_logs[{i}].file"), log.file.as_str()));
        let data = self
            .data_files
            .iter()
            .enumerate()
            .map(|(i, df)| (format!("data_files[{i}].file"), df.file.as_str()));
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for (field, name) in checkpoint.chain(logs).chain(data) {
            check_file_name(name).map_err(|why| format!("{field}: {why}"))?;
            if !seen.insert(name) {
                return Err(format!("{field}: file {name:?} is named twice"));
            }
        }
        Ok(())
    }

    fn validate_logs(&self) -> std::result::Result<(), String> {
        let count = self.delta_logs.len();
        for (i, log) in self.delta_logs.iter().enumerate() {
            match (log.end_epoch, log.bytes) {
                (None, None) if i + 1 == count => {}
                (None, None) => {
                    return Err(format!(
                        "delta_logs[{i}].end_epoch: only the last log may be open"
                    ));
                }
                (Some(end), Some(_)) if end < log.start_epoch => {
                    return Err(format!(
                        "delta_logs[{i}].end_epoch: {end} is before start_epoch {}",
                        log.start_epoch
                    ));
                }
                (Some(_), Some(_)) => {}
                _ => {
                    return Err(format!(
                        "delta_logs[{i}]: end_epoch and bytes must be both null (open log) or \
                         both set (closed log)"
                    ));
                }
            }
            let Some(prev) = i.checked_sub(1).and_then(|p| self.delta_logs.get(p)) else {
                continue;
            };
            if log.seq <= prev.seq {
                return Err(format!(
                    "delta_logs[{i}].seq: {} does not follow {}",
                    log.seq, prev.seq
                ));
            }
            if log.start_epoch < prev.start_epoch {
                return Err(format!(
                    "delta_logs[{i}].start_epoch: {} is before the previous log's {}",
                    log.start_epoch, prev.start_epoch
                ));
            }
            if let Some(prev_end) = prev.end_epoch
                && prev_end > log.start_epoch
            {
                return Err(format!(
                    "delta_logs[{i}].start_epoch: {} is before the previous log's end_epoch \
                     {prev_end}",
                    log.start_epoch
                ));
            }
        }
        Ok(())
    }

    fn validate_counters(&self) -> std::result::Result<(), String> {
        let c = &self.counters;
        // Logs are sorted by seq, so the last one has the largest.
        if let Some(last) = self.delta_logs.last()
            && c.next_log_seq <= last.seq
        {
            return Err(format!(
                "counters.next_log_seq: {} is not above log seq {}",
                c.next_log_seq, last.seq
            ));
        }
        if let Some(max) = self.data_files.iter().map(|d| d.seq).max()
            && c.next_data_seq <= max
        {
            return Err(format!(
                "counters.next_data_seq: {} is not above data file seq {max}",
                c.next_data_seq
            ));
        }
        Ok(())
    }

    /// The document's bytes. Fails with [`Error::InvalidArgument`] if the manifest is invalid.
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.validate()
            .map_err(|reason| Error::InvalidArgument(format!("manifest: {reason}")))?;
        let doc = DocumentOut {
            format: MANIFEST_FORMAT,
            version: MANIFEST_VERSION,
            seq: self.seq,
            layout: &self.layout,
            checkpoint: &self.checkpoint,
            delta_logs: &self.delta_logs,
            data_files: &self.data_files,
            counters: &self.counters,
        };
        let mut out = serde_json::to_vec_pretty(&doc)
            .map_err(|e| Error::InvalidArgument(format!("manifest: cannot serialize: {e}")))?;
        out.push(b'\n');
        Ok(out)
    }

    /// Parses and validates a manifest read from `path`.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let invalid =
            |reason: String| Error::corruption(path, 0, CorruptionKind::InvalidDocument { reason });
        let header: Header = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("not a manifest document: {e}")))?;
        if header.format != MANIFEST_FORMAT {
            return Err(invalid(format!(
                "format: expected {MANIFEST_FORMAT:?}, found {:?}",
                header.format
            )));
        }
        if header.version != u64::from(MANIFEST_VERSION) {
            return Err(invalid(format!(
                "version: this build reads version {MANIFEST_VERSION}, found {}",
                header.version
            )));
        }
        let doc: DocumentIn =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("schema: {e}")))?;
        let manifest = Manifest {
            seq: doc.seq,
            layout: doc.layout,
            checkpoint: doc.checkpoint,
            delta_logs: doc.delta_logs,
            data_files: doc.data_files,
            counters: doc.counters,
        };
        manifest.validate().map_err(invalid)?;
        Ok(manifest)
    }
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
