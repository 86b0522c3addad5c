//! A key's node content: the key index and its generation, so the final check can tell a lost
//! update (an older generation), a misplaced one (another key's index) and a torn one apart.
//!
//! Layout: bytes 0..8 the key index, 8..16 the generation (both little-endian), then zeros up
//! to the node's length. The load writes generation 0; each acknowledged rewrite adds one.

/// Bytes of the header every node starts with; nodes are at least this long.
pub const HEADER_BYTES: usize = 16;

/// Writes the header of (`key`, `generation`) into `node`, whose other bytes stay as they are
/// (zeros, as `alloc_with` and `write_with` hand them over).
pub fn fill(node: &mut [u8], key: usize, generation: u64) {
    debug_assert!(node.len() >= HEADER_BYTES, "nodes hold the whole header");
    node[..8].copy_from_slice(&(key as u64).to_le_bytes());
    node[8..HEADER_BYTES].copy_from_slice(&generation.to_le_bytes());
}

/// The exact bytes of a node of `len` bytes holding (`key`, `generation`).
pub fn expected(key: usize, generation: u64, len: usize) -> Vec<u8> {
    let mut node = vec![0u8; len];
    fill(&mut node, key, generation);
    node
}

/// What a node's header says, for an error message (`None` if it is shorter than a header).
pub fn describe(node: &[u8]) -> String {
    let word = |at: usize| {
        node.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    match (word(0), word(8)) {
        (Some(key), Some(generation)) => {
            format!("key {key} generation {generation}, {} bytes", node.len())
        }
        _ => format!("{} bytes, shorter than a header", node.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_hold_key_then_generation_then_zeros() {
        let node = expected(0x0102, 7, 20);
        assert_eq!(
            node,
            [2, 1, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(describe(&node), "key 258 generation 7, 20 bytes");
        assert_eq!(describe(&node[..10]), "10 bytes, shorter than a header");
    }
}
