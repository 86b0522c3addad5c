//! FasterKV: FASTER's hash index and hybrid log as node structures on the runtime (issue 14, in
//! progress). One concept per file:
//! - `record.rs`: the record format (`design/FORMAT.md` §9).
pub mod record;
