//! The delta log (see design/FORMAT.md).
