//! The bench's values and its RMW: a value's first 8 bytes are `version << 40 | count` (the
//! version is the run whose upsert wrote it, the count the RMW increments since), then a fixed
//! pattern up to the value size; so every key's final value is known exactly, and a torn or
//! foreign value is caught.

use vellum_faster::kv::Functions;

/// Bits of the count in a value's first word.
const COUNT_BITS: u32 = 40;

/// The value an upsert of run `version` writes (every key the same: the pattern does not
/// depend on the key, so concurrent upserts of one run agree).
pub fn value(version: u64, count: u64, value_bytes: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(value_bytes);
    v.extend_from_slice(&((version << COUNT_BITS) | count).to_le_bytes());
    v.extend((8..value_bytes).map(|i| i as u8));
    v
}

/// `(version, count)` of a value `value` made, or `None` for anything else.
pub fn decode(v: &[u8], value_bytes: usize) -> Option<(u64, u64)> {
    if v.len() != value_bytes {
        return None;
    }
    let word = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    if !v[8..].iter().enumerate().all(|(i, &b)| b == (i + 8) as u8) {
        return None;
    }
    Some((word >> COUNT_BITS, word & ((1 << COUNT_BITS) - 1)))
}

/// RMW adds its input to the count, in place.
#[derive(Debug, Clone, Copy)]
pub struct Count {
    pub value_bytes: usize,
}

fn add(word: &mut [u8], input: u64) {
    if let Ok(w) = <&mut [u8; 8]>::try_from(word) {
        *w = u64::from_le_bytes(*w).wrapping_add(input).to_le_bytes();
    }
}

impl Functions for Count {
    type Input = u64;

    fn initial_value(&self, input: &u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&value(0, *input, self.value_bytes));
    }

    fn copy_update(&self, input: &u64, old: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(old);
        add(&mut out[..8.min(old.len())], *input);
    }

    fn in_place_update(&self, input: &u64, value: &mut [u8], len: usize) -> Option<usize> {
        if len < 8 {
            return None;
        }
        add(&mut value[..8], *input);
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_rmw_counts() {
        let v = value(3, 0, 100);
        assert_eq!(decode(&v, 100), Some((3, 0)));
        let f = Count { value_bytes: 100 };
        let mut buf = v.clone();
        assert_eq!(f.in_place_update(&2, &mut buf, 100), Some(100));
        assert_eq!(decode(&buf, 100), Some((3, 2)));
        let mut out = Vec::new();
        f.copy_update(&5, &buf, &mut out);
        assert_eq!(decode(&out, 100), Some((3, 7)));
        let mut torn = out.clone();
        torn[50] ^= 1;
        assert_eq!(decode(&torn, 100), None);
        assert_eq!(decode(&value(1, 0, 8), 8), Some((1, 0)));
        assert_eq!(decode(&value(1, 0, 8), 100), None);
    }
}
