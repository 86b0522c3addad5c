//! Commit records: the body of one delta-log frame, one per committed transaction.
//!
//! The log frame around a record already carries its length, CRC32C and frame index; the record
//! is what is inside. The format is in `design/FORMAT.md` §6.
//!
//! Invariants:
//! 1. The encoder accepts exactly what the decoder accepts. Every rule the decoder enforces is
//!    checked before encoding (failing with [`Error::InvalidArgument`]), so a record that was
//!    written always replays: a bad argument fails the commit instead of poisoning recovery.
//! 2. The encoding is canonical. Every byte is either a value stored verbatim or a zero the
//!    decoder checks, so decoding and re-encoding gives back the same bytes.
//! 3. Decoding never panics, and allocates at most a constant multiple of the body's length,
//!    whatever `op_count` claims.
//! 4. Node bytes are copied at most once per direction: [`encode_record`] takes borrowed payloads
//!    ([`OpRef`]) and copies them straight into the body, sized exactly up front; and
//!    [`CommitRecordRef::decode`] returns payloads as slices of the body.

use std::collections::HashSet;
use std::path::Path;

use crate::alloc::{Location, SLOT_SHIFT_MIN, class_len_max, len_fits, slot_bytes};
use crate::codec::{Decoder, Encoder, crc32c, unzigzag, varint_len, zigzag};
use crate::error::{CorruptionKind, Error, Result};
use crate::meta::ROOT_NAME_BYTES_MAX;
use crate::object_table::{IdSet, NodeId, Version};

/// `record_type` of a commit record.
pub const RECORD_TYPE_COMMIT: u8 = 1;
/// The record format version this build writes and reads. Version 2 (store format 3) packs a
/// version op's location as a varint difference from the end of the record's previous version
/// and its length as a varint, and leaves out the CRC32C of a payload the op carries (it is the
/// payload's): 29 bytes for a 16-byte update instead of 43. Version 1 records live only in
/// stores of format 2, which this build refuses, so it reads no version 1 record.
pub const RECORD_FORMAT_VERSION: u8 = 2;
/// Bytes of the record header.
pub const RECORD_HEADER_BYTES: usize = 24;
/// The most ops one record may hold.
pub const OPS_MAX: u32 = 1_000_000;

/// Op code of [`Op::New`].
pub const OP_NEW: u8 = 1;
/// Op code of [`Op::Update`].
pub const OP_UPDATE: u8 = 2;
/// Op code of [`Op::Retire`].
pub const OP_RETIRE: u8 = 3;
/// Op code of [`Op::SetRoot`].
pub const OP_SET_ROOT: u8 = 4;
/// Op code of [`Op::DelRoot`].
pub const OP_DEL_ROOT: u8 = 5;

/// `flags` bit 0 of a NEW or UPDATE op: the node's bytes follow the op. Every other bit is zero.
pub const FLAG_PAYLOAD: u8 = 1;

/// Bytes of a NEW or UPDATE op before its varints: code, node_id, kind, flags.
const VERSION_OP_FIXED_BYTES: u64 = 1 + 8 + 1 + 1;
/// Bytes of a RETIRE op: code, node_id.
const RETIRE_OP_BYTES: u64 = 1 + 8;
/// The smallest op (DEL_ROOT with a one-byte name). The remaining bytes divided by this bound how
/// many ops a body can still hold, which caps what a corrupt `op_count` can make us allocate.
const OP_BYTES_MIN: usize = 1 + 1 + 1;

const _: () = assert!(RECORD_HEADER_BYTES == 1 + 1 + 2 + 4 + 8 + 8);
// A root name's length must fit its u8 field.
const _: () = assert!(ROOT_NAME_BYTES_MAX <= u8::MAX as usize);

/// One version of a node as a commit record carries it (owned payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVersion {
    /// The node.
    pub id: NodeId,
    /// The slot holding the version's bytes.
    pub location: Location,
    /// Bytes of the version; at most the location's slot size.
    pub len: u32,
    /// CRC32C of the version's bytes.
    pub crc32c: u32,
    /// The caller's node kind.
    pub kind: u8,
    /// The version's bytes, when the record carries them (exactly `len` bytes). Without them,
    /// the bytes are only in the data file slot.
    pub payload: Option<Vec<u8>>,
}

/// One version of a node as a commit record carries it, with a borrowed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeVersionRef<'a> {
    /// The node.
    pub id: NodeId,
    /// The slot holding the version's bytes.
    pub location: Location,
    /// Bytes of the version; at most the location's slot size.
    pub len: u32,
    /// CRC32C of the version's bytes.
    pub crc32c: u32,
    /// The caller's node kind.
    pub kind: u8,
    /// The version's bytes, when the record carries them (exactly `len` bytes).
    pub payload: Option<&'a [u8]>,
}

impl NodeVersion {
    /// A view borrowing the payload.
    pub fn as_borrowed(&self) -> NodeVersionRef<'_> {
        NodeVersionRef {
            id: self.id,
            location: self.location,
            len: self.len,
            crc32c: self.crc32c,
            kind: self.kind,
            payload: self.payload.as_deref(),
        }
    }

    /// The object-table version this op installs, born at the record's epoch.
    pub fn version(&self, birth: u64) -> Version {
        self.as_borrowed().version(birth)
    }
}

impl NodeVersionRef<'_> {
    /// A copy owning the payload.
    pub fn into_owned(self) -> NodeVersion {
        NodeVersion {
            id: self.id,
            location: self.location,
            len: self.len,
            crc32c: self.crc32c,
            kind: self.kind,
            payload: self.payload.map(<[u8]>::to_vec),
        }
    }

    /// The object-table version this op installs, born at the record's epoch.
    pub fn version(&self, birth: u64) -> Version {
        Version {
            location: self.location,
            len: self.len,
            crc32c: self.crc32c,
            kind: self.kind,
            birth,
        }
    }
}

/// One effect of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The first version of a node.
    New(NodeVersion),
    /// A new version of an existing node.
    Update(NodeVersion),
    /// The node is retired: it has no current version from this epoch on.
    Retire(NodeId),
    /// The root `name` (1 to 47 bytes) now names the node.
    SetRoot(String, NodeId),
    /// The root `name` is removed.
    DelRoot(String),
}

/// [`Op`] with borrowed payloads and names, for encoding without copying them first and for
/// decoding without copying them out of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpRef<'a> {
    /// The first version of a node.
    New(NodeVersionRef<'a>),
    /// A new version of an existing node.
    Update(NodeVersionRef<'a>),
    /// The node is retired.
    Retire(NodeId),
    /// The root `name` now names the node.
    SetRoot(&'a str, NodeId),
    /// The root `name` is removed.
    DelRoot(&'a str),
}

impl Op {
    /// A view borrowing the payload or name.
    pub fn as_borrowed(&self) -> OpRef<'_> {
        match self {
            Op::New(v) => OpRef::New(v.as_borrowed()),
            Op::Update(v) => OpRef::Update(v.as_borrowed()),
            Op::Retire(id) => OpRef::Retire(*id),
            Op::SetRoot(name, id) => OpRef::SetRoot(name, *id),
            Op::DelRoot(name) => OpRef::DelRoot(name),
        }
    }
}

impl OpRef<'_> {
    /// A copy owning the payload or name.
    pub fn into_owned(self) -> Op {
        match self {
            OpRef::New(v) => Op::New(v.into_owned()),
            OpRef::Update(v) => Op::Update(v.into_owned()),
            OpRef::Retire(id) => Op::Retire(id),
            OpRef::SetRoot(name, id) => Op::SetRoot(name.to_owned(), id),
            OpRef::DelRoot(name) => Op::DelRoot(name.to_owned()),
        }
    }

    /// Bytes of this op's encoding after a version op ending at `prev_end` (see
    /// [`PrevEnd`]), which it moves past its own version.
    fn encoded_len(&self, prev_end: &mut PrevEnd) -> u64 {
        // Widening usize to u64 is lossless on every platform Rust supports.
        let name_op = |name: &str| 1 + 1 + name.len() as u64;
        match self {
            OpRef::New(v) | OpRef::Update(v) => {
                let delta = prev_end.delta_to(v.location, v.len);
                let tail = match v.payload {
                    Some(p) => p.len() as u64,
                    None => 4,
                };
                VERSION_OP_FIXED_BYTES
                    + varint_len(delta) as u64
                    + varint_len(u64::from(v.len)) as u64
                    + tail
            }
            OpRef::Retire(_) => RETIRE_OP_BYTES,
            OpRef::SetRoot(name, _) => name_op(name) + 8,
            OpRef::DelRoot(name) => name_op(name),
        }
    }
}

/// One committed transaction: its epoch and its ops, in the order they apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRecord {
    /// The commit epoch (at least 1); the birth of every version in the record.
    pub epoch: u64,
    /// The ops (1 to [`OPS_MAX`]).
    pub ops: Vec<Op>,
}

/// [`CommitRecord`] with borrowed payloads and names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRecordRef<'a> {
    /// The commit epoch (at least 1).
    pub epoch: u64,
    /// The ops (1 to [`OPS_MAX`]).
    pub ops: Vec<OpRef<'a>>,
}

impl CommitRecord {
    /// The record's bytes; see [`encode_record`].
    pub fn encode(&self) -> Result<Vec<u8>> {
        // Collecting views copies no payload, only a few words per op.
        let ops: Vec<OpRef<'_>> = self.ops.iter().map(Op::as_borrowed).collect();
        encode_record(self.epoch, &ops)
    }

    /// Decodes a record body read from `file`, whose first byte is at absolute offset `offset`.
    /// See [`CommitRecordRef::decode`].
    pub fn decode(body: &[u8], file: &Path, offset: u64) -> Result<CommitRecord> {
        CommitRecordRef::decode(body, file, offset).map(CommitRecordRef::into_owned)
    }
}

impl<'a> CommitRecordRef<'a> {
    /// The record's bytes; see [`encode_record`].
    pub fn encode(&self) -> Result<Vec<u8>> {
        encode_record(self.epoch, &self.ops)
    }

    /// A copy owning every payload and name.
    pub fn into_owned(self) -> CommitRecord {
        CommitRecord {
            epoch: self.epoch,
            ops: self.ops.into_iter().map(OpRef::into_owned).collect(),
        }
    }

    /// Decodes a record body read from `file`, whose first byte is at absolute offset `offset`,
    /// borrowing payloads and names from `body`.
    ///
    /// Every failure is [`Error::Corruption`] at the absolute offset of the offending field, with
    /// the kinds listed in `design/FORMAT.md` §6. The whole body must be the record: bytes after
    /// the last op are an error.
    pub fn decode(body: &'a [u8], file: &Path, offset: u64) -> Result<CommitRecordRef<'a>> {
        let mut r = Reader {
            d: Decoder::new(body, file, offset),
            body,
            ids: IdSet::default(),
            names: HashSet::new(),
            prev_end: PrevEnd::default(),
        };
        let (op_count, epoch) = r.header()?;
        let mut ops = Vec::with_capacity(ops_capacity(op_count, r.d.remaining()));
        for index in 0..op_count {
            ops.push(r.op(index)?);
        }
        let remaining = r.d.remaining();
        if remaining != 0 {
            return Err(r.invalid(
                r.d.position(),
                "commit_record.trailing_bytes",
                remaining as u64,
            ));
        }
        Ok(CommitRecordRef { epoch, ops })
    }
}

/// Bytes of the record [`encode_record`] writes for `ops`.
///
/// Saturates instead of overflowing; [`encode_record`]'s limits keep real records far below that.
pub fn encoded_len(ops: &[OpRef<'_>]) -> u64 {
    let mut prev_end = PrevEnd::default();
    ops.iter().fold(RECORD_HEADER_BYTES as u64, |n, op| {
        n.saturating_add(op.encoded_len(&mut prev_end))
    })
}

/// Where the record's previous NEW or UPDATE version ends, as a packed location word: its
/// location's word plus the 16-byte units it owns (0 before the first). A version op stores its
/// location as the zigzag varint of the difference from it, so the slots a commit group takes
/// side by side cost one byte each.
#[derive(Debug, Default, Clone, Copy)]
struct PrevEnd(u64);

impl PrevEnd {
    /// The stored difference for a version at `location` of `len` bytes; moves past it.
    fn delta_to(&mut self, location: Location, len: u32) -> u64 {
        let word = location.pack();
        let delta = zigzag(word.wrapping_sub(self.0) as i64);
        self.advance(location, len);
        delta
    }

    /// The location word a stored difference names (not yet checked).
    fn word_at(self, delta: u64) -> u64 {
        self.0.wrapping_add(unzigzag(delta) as u64)
    }

    fn advance(&mut self, location: Location, len: u32) {
        let units = slot_bytes(location.class, u64::from(len)) >> SLOT_SHIFT_MIN;
        self.0 = location.pack().wrapping_add(units);
    }
}

/// Encodes a commit record.
///
/// Fails with [`Error::InvalidArgument`], writing nothing, if the record breaks a rule the decoder
/// enforces: `epoch` is 0; there are no ops or more than [`OPS_MAX`]; a location cannot be packed
/// (class, file or offset out of range, or an offset that is not a multiple of 16); a `len` exceeds
/// its slot; a payload is not exactly `len` bytes or its CRC32C is not `crc32c`; a node appears in
/// more than one NEW, UPDATE or RETIRE op; a root name is not 1 to 47 bytes or appears twice.
///
/// Checking the payload CRC costs one pass over the node bytes. It is paid so that a caller's
/// mistake fails this commit rather than every later recovery.
pub fn encode_record(epoch: u64, ops: &[OpRef<'_>]) -> Result<Vec<u8>> {
    let op_count = check_record(epoch, ops)?;
    let len = usize::try_from(encoded_len(ops)).map_err(|_| {
        Error::InvalidArgument("commit record is larger than the address space".to_owned())
    })?;
    let mut e = Encoder::with_capacity(len);
    e.u8(RECORD_TYPE_COMMIT)
        .u8(RECORD_FORMAT_VERSION)
        .zeros(2)
        .u32(op_count)
        .u64(epoch)
        .zeros(8);
    let mut prev_end = PrevEnd::default();
    for op in ops {
        encode_op(&mut e, op, &mut prev_end);
    }
    debug_assert_eq!(e.len(), len);
    Ok(e.finish())
}

fn encode_op(e: &mut Encoder, op: &OpRef<'_>, prev_end: &mut PrevEnd) {
    match op {
        OpRef::New(v) => encode_version(e, OP_NEW, v, prev_end),
        OpRef::Update(v) => encode_version(e, OP_UPDATE, v, prev_end),
        OpRef::Retire(id) => {
            e.u8(OP_RETIRE).u64(id.raw());
        }
        OpRef::SetRoot(name, id) => {
            e.u8(OP_SET_ROOT);
            encode_name(e, name);
            e.u64(id.raw());
        }
        OpRef::DelRoot(name) => {
            e.u8(OP_DEL_ROOT);
            encode_name(e, name);
        }
    }
}

fn encode_version(e: &mut Encoder, code: u8, v: &NodeVersionRef<'_>, prev_end: &mut PrevEnd) {
    let flags = if v.payload.is_some() { FLAG_PAYLOAD } else { 0 };
    e.u8(code)
        .u64(v.id.raw())
        .u8(v.kind)
        .u8(flags)
        .varint(prev_end.delta_to(v.location, v.len))
        .varint(u64::from(v.len));
    match v.payload {
        // `check_version` has checked that `crc32c` is the payload's: the decoder computes it.
        Some(p) => e.bytes(p),
        None => e.u32(v.crc32c),
    };
}

/// Writes `name_len` and the name; `check_record` has kept the length within 1..=47.
fn encode_name(e: &mut Encoder, name: &str) {
    e.u8(name.len() as u8).bytes(name.as_bytes());
}

/// True when a root name of `len` bytes is allowed (the root catalog's rule).
fn root_name_len_ok(len: usize) -> bool {
    (1..=ROOT_NAME_BYTES_MAX).contains(&len)
}

/// How many ops to reserve room for: what `op_count` claims, but never more than the remaining
/// bytes could hold, so a corrupt count cannot drive a huge allocation.
fn ops_capacity(op_count: u32, remaining: usize) -> usize {
    usize::try_from(op_count)
        .unwrap_or(usize::MAX)
        .min(remaining / OP_BYTES_MIN)
}

fn invalid_argument(message: String) -> Error {
    Error::InvalidArgument(message)
}

/// Checks every rule the decoder enforces, returning the op count as stored.
fn check_record(epoch: u64, ops: &[OpRef<'_>]) -> Result<u32> {
    if epoch == 0 {
        return Err(invalid_argument(
            "commit record epoch must be at least 1".to_owned(),
        ));
    }
    let op_count = u32::try_from(ops.len())
        .ok()
        .filter(|n| (1..=OPS_MAX).contains(n))
        .ok_or_else(|| {
            invalid_argument(format!(
                "a commit record holds 1 to {OPS_MAX} ops, not {}",
                ops.len()
            ))
        })?;
    // Node ids hash with one multiply (`IdSet`): SipHash over a commit's ids cost more than
    // encoding them.
    let mut ids = IdSet::with_capacity_and_hasher(ops.len(), Default::default());
    let mut names = HashSet::new();
    let mut unique_id = |i: usize, id: NodeId| {
        if ids.insert(id) {
            Ok(())
        } else {
            Err(invalid_argument(format!(
                "op {i}: node {id} already has a NEW, UPDATE or RETIRE op in this record"
            )))
        }
    };
    for (i, op) in ops.iter().enumerate() {
        match op {
            OpRef::New(v) | OpRef::Update(v) => {
                unique_id(i, v.id)?;
                check_version(i, v)?;
            }
            OpRef::Retire(id) => unique_id(i, *id)?,
            OpRef::SetRoot(name, _) | OpRef::DelRoot(name) => {
                if !root_name_len_ok(name.len()) {
                    return Err(invalid_argument(format!(
                        "op {i}: root name {name:?} is {} bytes; names must be 1 to \
                         {ROOT_NAME_BYTES_MAX} bytes",
                        name.len()
                    )));
                }
                if !names.insert(*name) {
                    return Err(invalid_argument(format!(
                        "op {i}: root {name:?} is changed twice in this record"
                    )));
                }
            }
        }
    }
    Ok(op_count)
}

fn check_version(i: usize, v: &NodeVersionRef<'_>) -> Result<()> {
    // Packing keeps only the bits each field owns, so a location that does not survive a round
    // trip (class >= 16, file beyond 19 bits, offset not a multiple of 16 or beyond 44 bits) would
    // be stored as some other location.
    if Location::unpack(v.location.pack()) != Some(v.location) {
        return Err(invalid_argument(format!(
            "op {i}: location {:?} cannot be stored",
            v.location
        )));
    }
    if !len_fits(v.location.class, u64::from(v.len)) {
        return Err(invalid_argument(format!(
            "op {i}: len {} does not fit class {} (at most {} bytes{})",
            v.len,
            v.location.class,
            class_len_max(v.location.class),
            if v.location.class == crate::alloc::LARGE_CLASS {
                ", more than 256 KiB"
            } else {
                ""
            }
        )));
    }
    if let Some(p) = v.payload {
        if p.len() as u64 != u64::from(v.len) {
            return Err(invalid_argument(format!(
                "op {i}: payload is {} bytes but len is {}",
                p.len(),
                v.len
            )));
        }
        let actual = crc32c(p);
        if actual != v.crc32c {
            return Err(invalid_argument(format!(
                "op {i}: payload CRC32C is {actual:#010x} but crc32c is {:#010x}",
                v.crc32c
            )));
        }
    }
    Ok(())
}

/// Decoding state: the cursor, plus what the uniqueness rules have seen so far.
struct Reader<'a, 'd> {
    d: Decoder<'d>,
    /// The same bytes the decoder reads. `Decoder` gives its buffer and its path one lifetime, so
    /// slices it returns cannot outlive the path; payloads and names are re-sliced from here to
    /// borrow from the body alone.
    body: &'a [u8],
    ids: IdSet,
    names: HashSet<&'a str>,
    prev_end: PrevEnd,
}

impl<'a> Reader<'a, '_> {
    fn invalid(&self, pos: usize, field: &'static str, value: u64) -> Error {
        self.d
            .error_at(pos, CorruptionKind::InvalidField { field, value })
    }

    /// Takes the next `n` bytes, borrowed from the body.
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let start = self.d.position();
        self.d.bytes(n)?;
        // The decoder has just checked these bounds, so this cannot fail; `get` rather than
        // indexing keeps a panic path out of code that reads disk bytes all the same.
        self.body.get(start..self.d.position()).ok_or_else(|| {
            self.d.error_at(
                start,
                CorruptionKind::Truncated {
                    needed: n as u64,
                    available: 0,
                },
            )
        })
    }

    /// Reads the header, returning (op_count, epoch).
    fn header(&mut self) -> Result<(u32, u64)> {
        let at = self.d.position();
        let record_type = self.d.u8()?;
        if record_type != RECORD_TYPE_COMMIT {
            return Err(self.invalid(at, "commit_record.record_type", u64::from(record_type)));
        }
        let at = self.d.position();
        let version = self.d.u8()?;
        if version != RECORD_FORMAT_VERSION {
            return Err(self.d.error_at(
                at,
                CorruptionKind::UnsupportedVersion {
                    found: u32::from(version),
                },
            ));
        }
        self.d.zeros(2, "commit_record.reserved")?;
        let at = self.d.position();
        let op_count = self.d.u32()?;
        if !(1..=OPS_MAX).contains(&op_count) {
            return Err(self.invalid(at, "commit_record.op_count", u64::from(op_count)));
        }
        let at = self.d.position();
        let epoch = self.d.u64()?;
        if epoch == 0 {
            return Err(self.invalid(at, "commit_record.epoch", 0));
        }
        self.d.zeros(8, "commit_record.reserved")?;
        Ok((op_count, epoch))
    }

    /// Reads op number `index`.
    fn op(&mut self, index: u32) -> Result<OpRef<'a>> {
        let at = self.d.position();
        match self.d.u8()? {
            OP_NEW => Ok(OpRef::New(self.version()?)),
            OP_UPDATE => Ok(OpRef::Update(self.version()?)),
            OP_RETIRE => Ok(OpRef::Retire(self.unique_node_id()?)),
            OP_SET_ROOT => {
                let name = self.root_name(index)?;
                Ok(OpRef::SetRoot(name, self.node_id()?))
            }
            OP_DEL_ROOT => Ok(OpRef::DelRoot(self.root_name(index)?)),
            code => Err(self.invalid(at, "op.code", u64::from(code))),
        }
    }

    fn node_id(&mut self) -> Result<NodeId> {
        let at = self.d.position();
        let raw = self.d.u64()?;
        NodeId::from_raw(raw).ok_or_else(|| self.invalid(at, "op.node_id", raw))
    }

    /// A node id that no earlier NEW, UPDATE or RETIRE op of this record named: two ops on one
    /// node in one record would make replay depend on their order within the record.
    fn unique_node_id(&mut self) -> Result<NodeId> {
        let at = self.d.position();
        let id = self.node_id()?;
        if !self.ids.insert(id) {
            return Err(self.invalid(at, "op.node_id", id.raw()));
        }
        Ok(id)
    }

    /// The fields of a NEW or UPDATE op after its code.
    fn version(&mut self) -> Result<NodeVersionRef<'a>> {
        let id = self.unique_node_id()?;
        let kind = self.d.u8()?;
        let at = self.d.position();
        let flags = self.d.u8()?;
        if flags & !FLAG_PAYLOAD != 0 {
            return Err(self.invalid(at, "op.flags", u64::from(flags)));
        }
        let at = self.d.position();
        let word = self.prev_end.word_at(self.d.varint("op.location")?);
        let location =
            Location::unpack(word).ok_or_else(|| self.invalid(at, "op.location", word))?;
        let at = self.d.position();
        let len = self.d.varint("op.len")?;
        if !len_fits(location.class, len) {
            return Err(self.invalid(at, "op.len", len));
        }
        // `len` fits its slot, so at most 64 MiB: lossless as u32, and as usize on any platform
        // with 32-bit usize.
        let len = len as u32;
        self.prev_end.advance(location, len);
        let (crc32c_field, payload) = if flags & FLAG_PAYLOAD != 0 {
            let bytes = self.take(len as usize)?;
            (crc32c(bytes), Some(bytes))
        } else {
            (self.d.u32()?, None)
        };
        Ok(NodeVersionRef {
            id,
            location,
            len,
            crc32c: crc32c_field,
            kind,
            payload,
        })
    }

    /// `name_len` and `name` of a SET_ROOT or DEL_ROOT op (op number `index`). A root changed
    /// twice in one record would make replay depend on the order of its ops.
    fn root_name(&mut self, index: u32) -> Result<&'a str> {
        let at = self.d.position();
        let name_len = self.d.u8()?;
        if !root_name_len_ok(usize::from(name_len)) {
            return Err(self.invalid(at, "op.name_len", u64::from(name_len)));
        }
        let name_at = self.d.position();
        let bytes = self.take(usize::from(name_len))?;
        let name = std::str::from_utf8(bytes)
            .map_err(|e| self.invalid(name_at + e.valid_up_to(), "op.name", u64::from(index)))?;
        if !self.names.insert(name) {
            return Err(self.invalid(name_at, "op.name", u64::from(index)));
        }
        Ok(name)
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
