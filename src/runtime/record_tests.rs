//! Unit tests of the commit record: golden bytes, the decoder's rejection matrix with exact kinds
//! and offsets, truncation at every byte, the encoder's argument checks, and property tests
//! (round trips, and arbitrary or mutated bytes never panicking).

use proptest::prelude::*;
use proptest::sample::Index;

use super::*;
use crate::alloc::{
    CLASS_COUNT, FILE_MAX, LARGE_CLASS, SLOT_BYTES_MAX, SMALL_SLOT_BYTES_MAX, class_len_max,
};
use crate::error::Corruption;
use crate::object_table::{HANDLE_MAX, SHARDS};

/// Where the tests pretend the body lies in its log file. Every expected offset adds it, so a
/// decoder reporting body-relative offsets fails.
const BASE: u64 = 8192 + 16;

fn path() -> &'static Path {
    Path::new("/db/log-0000000000000001.vlog")
}

fn id(shard: usize, handle: u64, tag: u16) -> NodeId {
    NodeId::new(shard, handle, tag).unwrap()
}

fn golden() -> CommitRecord {
    CommitRecord {
        epoch: 7,
        ops: vec![
            Op::New(NodeVersion {
                id: id(3, 1042, 7),
                location: Location {
                    class: 0,
                    file: 1,
                    offset: 128,
                },
                len: 3,
                crc32c: crc32c(b"abc"),
                kind: 5,
                payload: Some(b"abc".to_vec()),
            }),
            Op::Update(NodeVersion {
                id: id(0, 1, 1),
                location: Location {
                    class: 2,
                    file: 0,
                    offset: 512,
                },
                len: 200,
                crc32c: 0xdead_beef,
                kind: 9,
                payload: None,
            }),
            Op::Retire(id(63, 5, u16::MAX)),
            Op::SetRoot("index".to_owned(), id(3, 1042, 7)),
            Op::DelRoot("stale".to_owned()),
        ],
    }
}

/// The golden record, spelled out by hand. The CRC32C of `abc` (0x364b3fb7) was computed with an
/// independent bitwise Castagnoli CRC.
#[rustfmt::skip]
const GOLDEN: [u8; 112] = [
    // header
    1, 1, 0, 0,                                     // record_type, format_version, reserved
    5, 0, 0, 0,                                     // op_count
    7, 0, 0, 0, 0, 0, 0, 0,                         // epoch
    0, 0, 0, 0, 0, 0, 0, 0,                         // reserved
    // op 0 at 24: NEW
    1,
    0x12, 0x04, 0, 0, 0, 0x0c, 0x07, 0,             // node_id 3:1042:7 = 0x00070c0000000412
    0x02, 0, 0, 0, 0, 0x01, 0, 0,                   // location class 0, file 1, offset 128 / 64
    3, 0, 0, 0,                                     // len
    0xb7, 0x3f, 0x4b, 0x36,                         // crc32c
    5,                                              // kind
    1,                                              // flags: payload follows
    b'a', b'b', b'c',                               // payload
    // op 1 at 54: UPDATE
    2,
    1, 0, 0, 0, 0, 0, 1, 0,                         // node_id 0:1:1
    8, 0, 0, 0, 0, 0, 0, 0x10,                      // location class 2, file 0, offset 512 / 64
    200, 0, 0, 0,                                   // len
    0xef, 0xbe, 0xad, 0xde,                         // crc32c
    9,                                              // kind
    0,                                              // flags: no payload
    // op 2 at 81: RETIRE
    3,
    5, 0, 0, 0, 0, 0xfc, 0xff, 0xff,                // node_id 63:5:65535
    // op 3 at 90: SET_ROOT
    4,
    5, b'i', b'n', b'd', b'e', b'x',                // name_len, name
    0x12, 0x04, 0, 0, 0, 0x0c, 0x07, 0,             // node_id 3:1042:7
    // op 4 at 105: DEL_ROOT
    5,
    5, b's', b't', b'a', b'l', b'e',                // name_len, name
];

/// (start, size) of every field of [`GOLDEN`], in order.
#[rustfmt::skip]
const GOLDEN_FIELDS: [(usize, usize); 30] = [
    (0, 1), (1, 1), (2, 2), (4, 4), (8, 8), (16, 8),
    (24, 1), (25, 8), (33, 8), (41, 4), (45, 4), (49, 1), (50, 1), (51, 3),
    (54, 1), (55, 8), (63, 8), (71, 4), (75, 4), (79, 1), (80, 1),
    (81, 1), (82, 8),
    (90, 1), (91, 1), (92, 5), (97, 8),
    (105, 1), (106, 1), (107, 5),
];

fn corruption_of<T: std::fmt::Debug>(r: Result<T>) -> Corruption {
    match r {
        Err(Error::Corruption(c)) => *c,
        other => panic!("expected corruption, got {other:?}"),
    }
}

fn field(field: &'static str, value: u64) -> CorruptionKind {
    CorruptionKind::InvalidField { field, value }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Decodes `bytes` and checks the exact error, at `BASE + offset`.
fn rejects_bytes(bytes: &[u8], offset: usize, kind: CorruptionKind) {
    let c = corruption_of(CommitRecord::decode(bytes, path(), BASE));
    assert_eq!(
        (c.offset, &c.kind, c.file.as_path()),
        (BASE + offset as u64, &kind, path())
    );
    // The borrowing decoder is the same decoder.
    let c2 = corruption_of(CommitRecordRef::decode(bytes, path(), BASE));
    assert_eq!(c2, c);
}

/// Applies `edit` to the golden bytes and checks the exact error.
fn rejects(edit: impl FnOnce(&mut Vec<u8>), offset: usize, kind: CorruptionKind) {
    let mut b = GOLDEN.to_vec();
    edit(&mut b);
    rejects_bytes(&b, offset, kind);
}

#[test]
fn golden_bytes() {
    let r = golden();
    let b = r.encode().unwrap();
    assert_eq!(b, GOLDEN);
    let refs: Vec<OpRef<'_>> = r.ops.iter().map(Op::as_borrowed).collect();
    assert_eq!(encoded_len(&refs), 112);
    assert_eq!(encode_record(7, &refs).unwrap(), GOLDEN);
    assert_eq!(CommitRecord::decode(&GOLDEN, path(), BASE).unwrap(), r);
}

#[test]
fn borrowed_decode_points_into_the_body() {
    let d = CommitRecordRef::decode(&GOLDEN, path(), BASE).unwrap();
    let OpRef::New(v) = d.ops[0] else {
        panic!("op 0 is {:?}", d.ops[0]);
    };
    let payload = v.payload.unwrap();
    assert_eq!(payload, b"abc");
    assert!(std::ptr::eq(payload.as_ptr(), GOLDEN[51..].as_ptr()));
    assert_eq!(d.clone().into_owned(), golden());
    assert_eq!(d.encode().unwrap(), GOLDEN);
}

#[test]
fn versions_are_born_at_the_record_epoch() {
    let Op::Update(v) = &golden().ops[1] else {
        panic!("op 1 is not an update");
    };
    let version = v.version(7);
    assert_eq!(
        version,
        Version {
            location: v.location,
            len: 200,
            crc32c: 0xdead_beef,
            kind: 9,
            birth: 7,
        }
    );
}

#[test]
fn header_rejections() {
    rejects(|b| b[0] = 2, 0, field("commit_record.record_type", 2));
    rejects(|b| b[0] = 0, 0, field("commit_record.record_type", 0));
    rejects(
        |b| b[1] = 2,
        1,
        CorruptionKind::UnsupportedVersion { found: 2 },
    );
    rejects(|b| b[3] = 9, 3, field("commit_record.reserved", 9));
    rejects(|b| b[20] = 1, 20, field("commit_record.reserved", 1));
    rejects(|b| put_u32(b, 4, 0), 4, field("commit_record.op_count", 0));
    rejects(
        |b| put_u32(b, 4, OPS_MAX + 1),
        4,
        field("commit_record.op_count", u64::from(OPS_MAX) + 1),
    );
    rejects(
        |b| put_u32(b, 4, u32::MAX),
        4,
        field("commit_record.op_count", u64::from(u32::MAX)),
    );
    rejects(|b| put_u64(b, 8, 0), 8, field("commit_record.epoch", 0));
}

#[test]
fn op_count_must_match_the_ops() {
    // One op more than present: the sixth op's code is missing.
    rejects(
        |b| put_u32(b, 4, 6),
        112,
        CorruptionKind::Truncated {
            needed: 1,
            available: 0,
        },
    );
    // One op fewer: the DEL_ROOT op is left over.
    rejects(
        |b| put_u32(b, 4, 4),
        105,
        field("commit_record.trailing_bytes", 7),
    );
    rejects(|b| b.push(0), 112, field("commit_record.trailing_bytes", 1));
}

#[test]
fn a_huge_op_count_allocates_nothing_it_cannot_fill() {
    let mut b = GOLDEN[..24].to_vec();
    put_u32(&mut b, 4, OPS_MAX);
    rejects_bytes(
        &b,
        24,
        CorruptionKind::Truncated {
            needed: 1,
            available: 0,
        },
    );
    assert_eq!(ops_capacity(OPS_MAX, 0), 0);
    assert_eq!(ops_capacity(OPS_MAX, 88), 29);
    assert_eq!(ops_capacity(5, 88), 5);
}

#[test]
fn op_rejections() {
    rejects(|b| b[81] = 6, 81, field("op.code", 6));
    rejects(|b| b[24] = 0, 24, field("op.code", 0));
    // A zero tag (raw 5 is shard 0, handle 5, tag 0), in each op kind that names a node.
    rejects(|b| put_u64(b, 25, 5), 25, field("op.node_id", 5));
    rejects(|b| put_u64(b, 55, 0), 55, field("op.node_id", 0));
    rejects(|b| put_u64(b, 82, 5), 82, field("op.node_id", 5));
    rejects(|b| put_u64(b, 97, 5), 97, field("op.node_id", 5));
    // Class 21 does not exist.
    rejects(
        |b| put_u64(b, 33, 21 << 59),
        33,
        field("op.location", 21 << 59),
    );
    rejects(
        |b| put_u64(b, 63, u64::MAX),
        63,
        field("op.location", u64::MAX),
    );
    // UPDATE's slot (class 2) is 256 bytes: 256 fits, 257 does not.
    let mut b = GOLDEN.to_vec();
    put_u32(&mut b, 71, 256);
    let d = CommitRecord::decode(&b, path(), BASE).unwrap();
    assert!(matches!(&d.ops[1], Op::Update(v) if v.len == 256));
    rejects(|b| put_u32(b, 71, 257), 71, field("op.len", 257));
    // NEW's slot (class 0) is 64 bytes.
    rejects(|b| put_u32(b, 41, 65), 41, field("op.len", 65));
    rejects(|b| b[50] = 3, 50, field("op.flags", 3));
    rejects(|b| b[80] = 0x80, 80, field("op.flags", 0x80));
}

#[test]
fn payload_checksum_is_verified() {
    rejects(
        |b| b[52] = b'x',
        51,
        CorruptionKind::ChecksumMismatch {
            expected: 0x364b_3fb7,
            actual: crc32c(b"axc"),
        },
    );
    rejects(
        |b| put_u32(b, 45, 0x1234_5678),
        51,
        CorruptionKind::ChecksumMismatch {
            expected: 0x1234_5678,
            actual: 0x364b_3fb7,
        },
    );
}

#[test]
fn duplicates_are_rejected() {
    let new_id = id(3, 1042, 7).raw();
    // RETIRE of the node NEW creates.
    rejects(|b| put_u64(b, 82, new_id), 82, field("op.node_id", new_id));
    // UPDATE of the node NEW creates.
    rejects(|b| put_u64(b, 55, new_id), 55, field("op.node_id", new_id));
    // DEL_ROOT of the root SET_ROOT sets; the value is the op index.
    rejects(
        |b| b[107..112].copy_from_slice(b"index"),
        107,
        field("op.name", 4),
    );
    // A root may name a node another op of the record changes: that is the usual commit.
    let mut b = GOLDEN.to_vec();
    put_u64(&mut b, 97, id(63, 5, u16::MAX).raw());
    assert!(CommitRecord::decode(&b, path(), BASE).is_ok());
}

/// A record of one DEL_ROOT op whose name_len byte is `name_len` followed by `name`.
fn del_root_record(name_len: u8, name: &[u8]) -> Vec<u8> {
    let mut e = Encoder::default();
    e.u8(1)
        .u8(1)
        .zeros(2)
        .u32(1)
        .u64(1)
        .zeros(8)
        .u8(5)
        .u8(name_len)
        .bytes(name);
    e.finish()
}

#[test]
fn root_names_are_checked() {
    rejects(|b| b[106] = 0, 106, field("op.name_len", 0));
    rejects(|b| b[91] = 48, 91, field("op.name_len", 48));
    rejects_bytes(
        &del_root_record(48, &[b'x'; 48]),
        25,
        field("op.name_len", 48),
    );
    let longest = del_root_record(47, &[b'x'; 47]);
    let d = CommitRecord::decode(&longest, path(), BASE).unwrap();
    assert_eq!(d.ops, [Op::DelRoot("x".repeat(47))]);
    // Invalid UTF-8: a stray continuation byte, and a character cut short. The offset is the first
    // invalid byte; the value is the op index.
    rejects(|b| b[109] = 0xff, 109, field("op.name", 4));
    rejects(|b| b[94] = 0x80, 94, field("op.name", 3));
    rejects_bytes(
        &del_root_record(3, &[b'a', 0xe2, 0x82]),
        27,
        field("op.name", 0),
    );
}

#[test]
fn truncation_at_every_byte_is_reported_at_the_cut_field() {
    // The field table tiles the record.
    let mut end = 0;
    for &(start, size) in &GOLDEN_FIELDS {
        assert_eq!(start, end);
        end = start + size;
    }
    assert_eq!(end, GOLDEN.len());
    for cut in 0..GOLDEN.len() {
        let &(start, size) = GOLDEN_FIELDS
            .iter()
            .find(|&&(s, n)| s <= cut && cut < s + n)
            .unwrap();
        rejects_bytes(
            &GOLDEN[..cut],
            start,
            CorruptionKind::Truncated {
                needed: size as u64,
                available: (cut - start) as u64,
            },
        );
    }
}

fn assert_invalid_argument(r: Result<Vec<u8>>) {
    assert!(
        matches!(r, Err(Error::InvalidArgument(_))),
        "expected InvalidArgument, got {r:?}"
    );
}

/// Encodes the golden record after `edit` and expects the encoder to refuse it.
fn encoder_rejects(edit: impl FnOnce(&mut CommitRecord)) {
    let mut r = golden();
    edit(&mut r);
    assert_invalid_argument(r.encode());
}

fn new_op(r: &mut CommitRecord) -> &mut NodeVersion {
    match &mut r.ops[0] {
        Op::New(v) => v,
        other => panic!("op 0 is {other:?}"),
    }
}

#[test]
fn encoder_refuses_what_the_decoder_would_reject() {
    encoder_rejects(|r| r.epoch = 0);
    encoder_rejects(|r| r.ops.clear());
    encoder_rejects(|r| new_op(r).location.class = CLASS_COUNT as u8);
    encoder_rejects(|r| new_op(r).location.file = FILE_MAX + 1);
    encoder_rejects(|r| new_op(r).location.offset = 96);
    encoder_rejects(|r| new_op(r).location.offset = 1 << 46);
    encoder_rejects(|r| {
        let v = new_op(r);
        v.payload = None;
        v.len = 65;
    });
    encoder_rejects(|r| new_op(r).len = 4);
    encoder_rejects(|r| new_op(r).crc32c ^= 1);
    encoder_rejects(|r| r.ops[2] = Op::Retire(id(3, 1042, 7)));
    encoder_rejects(|r| r.ops[4] = Op::DelRoot("index".to_owned()));
    encoder_rejects(|r| r.ops[4] = Op::DelRoot(String::new()));
    encoder_rejects(|r| r.ops[4] = Op::DelRoot("x".repeat(48)));
    // 16 three-byte characters are 48 bytes.
    encoder_rejects(|r| r.ops[3] = Op::SetRoot("€".repeat(16), id(1, 1, 1)));
    // Limits that hold are accepted: a 47-byte name, a len equal to the slot.
    let mut r = golden();
    r.ops[4] = Op::DelRoot("€".repeat(15) + "xy");
    if let Op::Update(v) = &mut r.ops[1] {
        v.len = 256;
    }
    let b = r.encode().unwrap();
    assert_eq!(CommitRecord::decode(&b, path(), BASE).unwrap(), r);
}

#[test]
fn encoder_refuses_too_many_ops() {
    let ops = vec![OpRef::Retire(id(0, 0, 1)); OPS_MAX as usize + 1];
    assert_invalid_argument(encode_record(1, &ops));
}

fn arb_id() -> impl Strategy<Value = NodeId> {
    (0..SHARDS, 0..=HANDLE_MAX, 1..=u16::MAX).prop_map(|(s, h, t)| id(s, h, t))
}

fn arb_location() -> impl Strategy<Value = Location> {
    (0..CLASS_COUNT as u8, 0..=FILE_MAX, 0..1u64 << 40).prop_map(|(class, file, unit)| Location {
        class,
        file,
        offset: unit << 6,
    })
}

fn arb_version() -> impl Strategy<Value = NodeVersion> {
    // Payloads of at most 64 bytes fit every small class; a version with one is never large.
    let payload = prop::option::of(prop::collection::vec(any::<u8>(), 0..=64));
    (
        arb_id(),
        arb_location(),
        any::<u8>(),
        payload,
        any::<u32>(),
        any::<Index>(),
    )
        .prop_map(|(id, mut location, kind, payload, crc, len)| {
            let (len, crc32c) = match &payload {
                Some(p) => {
                    if location.class == LARGE_CLASS {
                        location.class = 0;
                    }
                    (p.len() as u32, crc32c(p))
                }
                None if location.class == LARGE_CLASS => {
                    let span = (SLOT_BYTES_MAX - SMALL_SLOT_BYTES_MAX) as usize;
                    (
                        (SMALL_SLOT_BYTES_MAX as usize + 1 + len.index(span)) as u32,
                        crc,
                    )
                }
                None => {
                    let slot = class_len_max(location.class);
                    (len.index(slot as usize + 1) as u32, crc)
                }
            };
            NodeVersion {
                id,
                location,
                len,
                crc32c,
                kind,
                payload,
            }
        })
}

/// Names of 1 to 47 bytes, often multi-byte characters.
fn arb_name() -> impl Strategy<Value = String> {
    "\\PC{1,20}".prop_map(|s| {
        let mut out = String::new();
        for c in s.chars() {
            if out.len() + c.len_utf8() > ROOT_NAME_BYTES_MAX {
                break;
            }
            out.push(c);
        }
        out
    })
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        arb_version().prop_map(Op::New),
        arb_version().prop_map(Op::Update),
        arb_id().prop_map(Op::Retire),
        (arb_name(), arb_id()).prop_map(|(n, i)| Op::SetRoot(n, i)),
        arb_name().prop_map(Op::DelRoot),
    ]
}

/// Valid records: ops that would break a uniqueness rule are dropped (never the first).
fn arb_record() -> impl Strategy<Value = CommitRecord> {
    (1..=u64::MAX, prop::collection::vec(arb_op(), 1..16)).prop_map(|(epoch, ops)| {
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        let ops = ops
            .into_iter()
            .filter(|op| match op {
                Op::New(v) | Op::Update(v) => ids.insert(v.id),
                Op::Retire(id) => ids.insert(*id),
                Op::SetRoot(n, _) | Op::DelRoot(n) => names.insert(n.clone()),
            })
            .collect();
        CommitRecord { epoch, ops }
    })
}

/// One change to an encoded record.
#[derive(Debug, Clone)]
enum Mutation {
    Xor(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 1..=u8::MAX).prop_map(|(i, x)| Mutation::Xor(i, x)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, x)| Mutation::Set(i, x)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, x)| Mutation::Insert(i, x)),
        1 => any::<Index>().prop_map(Mutation::Remove),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(b: &mut Vec<u8>, m: &Mutation) {
    if b.is_empty() {
        return;
    }
    let n = b.len();
    match m {
        Mutation::Xor(i, x) => b[i.index(n)] ^= x,
        Mutation::Set(i, x) => b[i.index(n)] = *x,
        Mutation::Insert(i, x) => b.insert(i.index(n + 1), *x),
        Mutation::Remove(i) => {
            b.remove(i.index(n));
        }
        Mutation::Truncate(i) => b.truncate(i.index(n)),
    }
}

/// Decodes `bytes`, which must not panic; a success must re-encode to the same bytes (the
/// encoding is canonical and the encoder accepts whatever the decoder does), and a failure must be
/// a corruption report inside the body.
fn check_decode(bytes: &[u8]) -> std::result::Result<(), TestCaseError> {
    match CommitRecord::decode(bytes, path(), BASE) {
        Ok(r) => prop_assert_eq!(r.encode().unwrap(), bytes),
        Err(e) => {
            let c = e.as_corruption();
            prop_assert!(c.is_some(), "not a corruption report: {}", e);
            if let Some(c) = c {
                prop_assert!(c.offset >= BASE && c.offset <= BASE + bytes.len() as u64);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_records_round_trip(r in arb_record()) {
        let b = r.encode().unwrap();
        let refs: Vec<OpRef<'_>> = r.ops.iter().map(Op::as_borrowed).collect();
        prop_assert_eq!(b.len() as u64, encoded_len(&refs));
        prop_assert_eq!(&CommitRecord::decode(&b, path(), BASE).unwrap(), &r);
        let borrowed = CommitRecordRef::decode(&b, path(), BASE).unwrap();
        prop_assert_eq!(borrowed.encode().unwrap(), b);
    }

    #[test]
    fn mutated_records_never_panic(
        r in arb_record(),
        mutations in prop::collection::vec(arb_mutation(), 1..6),
    ) {
        let mut b = r.encode().unwrap();
        for m in &mutations {
            apply(&mut b, m);
        }
        check_decode(&b)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..256)) {
        check_decode(&b)?;
    }

    #[test]
    fn arbitrary_ops_after_a_valid_header_never_panic(
        op_count in 1..=8u32,
        tail in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut b = GOLDEN[..24].to_vec();
        put_u32(&mut b, 4, op_count);
        b.extend_from_slice(&tail);
        check_decode(&b)?;
    }
}
