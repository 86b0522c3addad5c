//! The size-class segment allocator, the large class's extents, and their mapped windows.

mod location;

pub use location::{
    CLASS_COUNT, EXTENT_UNIT_BYTES, FILE_MAX, LARGE_CLASS, Location, REGION_BYTES, SLOT_BYTES_MAX,
    SLOT_BYTES_MIN, SLOT_SHIFT_MIN, SMALL_CLASS_COUNT, SMALL_SLOT_BYTES_MAX, class_for_len, class_len_max,
    class_unit_bytes, is_small_class, len_fits, slot_bytes,
};

mod extents;

pub use extents::{ExtentSpace, REGION_UNITS, RegionExtents};

mod segments;

pub use segments::{
    AllocOptions, Allocation, ClassSpace, EmptySegment, SEGMENT_BYTES_MIN, SPARE_SEGMENT_BYTES_MAX,
    SegmentAllocator, SegmentUsage, segment_bytes,
};

mod files;
mod windows;

pub use files::{DataFileOptions, DataFiles, data_file_name, parse_data_file_name};
