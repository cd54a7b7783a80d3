//! Where pieces go in a sector: each piece aligned to its own (padded, power-of-two) size, in
//! order, and the gaps and the tail filled with the largest aligned zero pieces. Used by the
//! deal manager to fill sectors and by the devnet to check their CommD; it depends on nothing
//! else of the manager.

/// The sizes of the aligned zero pieces that fill `[from, to)` of a sector, in order.
pub fn filler_sizes(mut from: u64, to: u64) -> Vec<u64> {
    let mut sizes = Vec::new();
    while from < to {
        let align = if from == 0 {
            u64::MAX
        } else {
            1 << from.trailing_zeros()
        };
        let room = 1u64 << (63 - (to - from).leading_zeros());
        let size = align.min(room);
        sizes.push(size);
        from += size;
    }
    sizes
}

/// The end offset of pieces laid out in order, each aligned to its own size.
pub fn layout_end(sizes: impl IntoIterator<Item = u64>) -> u64 {
    sizes
        .into_iter()
        .fold(0, |off, size| off.next_multiple_of(size) + size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_aligned_and_the_rest_is_filled_with_aligned_zero_pieces() {
        assert_eq!(layout_end([128, 512]), 1024, "512 is aligned to 512");
        assert_eq!(layout_end([512, 128]), 640);
        assert_eq!(filler_sizes(640, 2048), vec![128, 256, 1024]);
        assert_eq!(filler_sizes(0, 2048), vec![2048]);
        assert!(filler_sizes(2048, 2048).is_empty());
        let mut off = 640;
        for size in filler_sizes(640, 2048) {
            assert_eq!(off % size, 0, "{size} at {off}");
            off += size;
        }
        assert_eq!(off, 2048);
    }
}
