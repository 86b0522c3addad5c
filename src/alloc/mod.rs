//! The size-class segment allocator and its mapped windows.

mod location;

pub use location::{
    CLASS_COUNT, FILE_MAX, Location, SLOT_BYTES_MAX, SLOT_BYTES_MIN, SMALL_SLOT_BYTES_MAX,
    class_for_len, class_slot_bytes,
};

mod segments;

pub use segments::{
    AllocOptions, Allocation, ClassSpace, EmptySegment, SEGMENT_BYTES_MIN, SPARE_SEGMENT_BYTES_MAX,
    SegmentAllocator, SegmentUsage, segment_bytes,
};

mod files;
mod windows;

pub use files::{DataFileOptions, DataFiles, data_file_name, parse_data_file_name};
