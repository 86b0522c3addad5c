//! The user's merge for read-modify-write, like FASTER's `Functions`: what a key's first value
//! is, and how an input changes a value in place or into a copy.

/// How [`Session::rmw`](super::Session::rmw) changes a value.
///
/// Each call may run more than once for one operation when it races other writers (the
/// attempt that loses is thrown away), so the methods must not have side effects outside their
/// outputs. A panic in one leaves the record unchanged.
pub trait Functions {
    /// What an RMW carries (kept by value while the operation is pending).
    type Input: Clone;

    /// The value of a key that has none (absent or deleted): written to `value` (empty on
    /// entry).
    fn initial_value(&self, input: &Self::Input, value: &mut Vec<u8>);

    /// The new value from the old, for a copy to the log's tail: written to `value` (empty on
    /// entry).
    fn copy_update(&self, input: &Self::Input, old: &[u8], value: &mut Vec<u8>);

    /// Updates the value in place: `value` is the record's whole capacity, its first `len`
    /// bytes the current value. Returns the new length (at most `value.len()`), or `None` when
    /// the new value does not fit, and then [`Functions::copy_update`] makes a larger record.
    fn in_place_update(&self, input: &Self::Input, value: &mut [u8], len: usize) -> Option<usize>;
}

/// Values are little-endian `u64` counters, RMW adds its input (wrapping). A value that is not
/// 8 bytes counts as 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddU64;

fn counter(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(0, u64::from_le_bytes)
}

impl Functions for AddU64 {
    type Input = u64;

    fn initial_value(&self, input: &u64, value: &mut Vec<u8>) {
        value.extend_from_slice(&input.to_le_bytes());
    }

    fn copy_update(&self, input: &u64, old: &[u8], value: &mut Vec<u8>) {
        value.extend_from_slice(&counter(old).wrapping_add(*input).to_le_bytes());
    }

    fn in_place_update(&self, input: &u64, value: &mut [u8], len: usize) -> Option<usize> {
        let slot = value.get_mut(..8)?;
        let old = if len == 8 { counter(slot) } else { 0 };
        slot.copy_from_slice(&old.wrapping_add(*input).to_le_bytes());
        Some(8)
    }
}

/// RMW appends its input to the value (a growing value: in place while the record's capacity
/// lasts, then copied). For tests of the copy paths and for logs of events per key.
#[derive(Debug, Clone, Copy, Default)]
pub struct Append;

impl Functions for Append {
    type Input = Vec<u8>;

    fn initial_value(&self, input: &Vec<u8>, value: &mut Vec<u8>) {
        value.extend_from_slice(input);
    }

    fn copy_update(&self, input: &Vec<u8>, old: &[u8], value: &mut Vec<u8>) {
        value.extend_from_slice(old);
        value.extend_from_slice(input);
    }

    fn in_place_update(&self, input: &Vec<u8>, value: &mut [u8], len: usize) -> Option<usize> {
        let end = len.checked_add(input.len())?;
        value.get_mut(len..end)?.copy_from_slice(input);
        Some(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_u64_adds_in_place_and_in_a_copy() {
        let mut v = Vec::new();
        AddU64.initial_value(&5, &mut v);
        assert_eq!(v, 5u64.to_le_bytes());
        let mut buf = [0u8; 8];
        buf.copy_from_slice(&v);
        assert_eq!(AddU64.in_place_update(&3, &mut buf, 8), Some(8));
        assert_eq!(buf, 8u64.to_le_bytes());
        let mut out = Vec::new();
        AddU64.copy_update(&u64::MAX, &buf, &mut out);
        assert_eq!(out, 7u64.to_le_bytes());
        // No room: a copy is needed.
        assert_eq!(AddU64.in_place_update(&1, &mut [0u8; 0], 0), None);
    }

    #[test]
    fn append_grows_in_place_until_the_capacity_then_refuses() {
        let mut buf = *b"ab\0\0\0\0\0\0";
        assert_eq!(
            Append.in_place_update(&b"cd".to_vec(), &mut buf, 2),
            Some(4)
        );
        assert_eq!(&buf, b"abcd\0\0\0\0");
        assert_eq!(
            Append.in_place_update(&b"efghi".to_vec(), &mut buf, 4),
            None
        );
        assert_eq!(&buf, b"abcd\0\0\0\0");
        let mut out = Vec::new();
        Append.copy_update(&b"efghi".to_vec(), &buf[..4], &mut out);
        assert_eq!(out, b"abcdefghi");
    }
}
