//! Chunk images of the hash index (invariant I7 of `index.rs`): the words a checkpoint stores
//! for a chunk, and an index rebuilt from them, with every refusal a structured
//! [`IndexError::ChunkCorrupt`].

use std::sync::atomic::Ordering::{Acquire, Relaxed};

use super::*;

impl HashIndex {
    /// The chunk's image (I7): its main buckets' words, then its overflow buckets'. Copied word by
    /// word while other threads may change it, so under concurrent writes it is fuzzy: each word
    /// is one that slot held during the copy (a deleted and re-created tag may then show twice,
    /// and tentative entries may show). Panics if `chunk >= chunk_count()`.
    pub fn chunk_words(&self, chunk: usize) -> Vec<u64> {
        let buckets = self.chunk_buckets(chunk);
        let mut image = Vec::with_capacity(buckets.len() * BUCKET_WORDS);
        let mut overflow_image = Vec::new();
        let mut overflow_buckets = 0;
        for main in buckets.iter() {
            let mut next = self.push_image_bucket(main, &mut image, &mut overflow_buckets);
            while let Some(bucket) = next {
                next = self.push_image_bucket(bucket, &mut overflow_image, &mut overflow_buckets);
            }
        }
        image.extend_from_slice(&overflow_image);
        image
    }

    /// Appends `bucket`'s words to `out` with its overflow pointer made local (I7); returns the
    /// next bucket of the chain.
    fn push_image_bucket<'a>(
        &'a self,
        bucket: &'a Bucket,
        out: &mut Vec<u64>,
        overflow_buckets: &mut u64,
    ) -> Option<&'a Bucket> {
        out.extend(bucket.slots().iter().map(|s| s.load(Acquire)));
        let next = self.next_in_chain(bucket, Acquire);
        if next.is_some() {
            *overflow_buckets += 1;
        }
        out.push(if next.is_some() { *overflow_buckets } else { 0 });
        next
    }

    /// An index of `options` holding the chunk images `chunks` (one per chunk, in order, as
    /// [`HashIndex::chunk_words`] makes them), every chunk clean. Tentative entries are dropped.
    pub fn from_chunks<W: AsRef<[u64]>>(
        options: &IndexOptions,
        chunks: &[W],
    ) -> Result<HashIndex, IndexError> {
        let index = HashIndex::new(options)?;
        if chunks.len() != index.chunk_count() {
            return Err(IndexError::ChunkCountMismatch {
                expected: index.chunk_count(),
                actual: chunks.len(),
            });
        }
        for (chunk, words) in chunks.iter().enumerate() {
            index.load_chunk(chunk, words.as_ref())?;
        }
        Ok(index)
    }

    /// Stores one chunk image into an index nobody else uses yet.
    fn load_chunk(&self, chunk: usize, words: &[u64]) -> Result<(), IndexError> {
        let buckets = self.chunk_buckets(chunk);
        let mut load = ChunkLoad {
            chunk,
            words,
            main_words: buckets.len() * BUCKET_WORDS,
            overflow_loaded: 0,
        };
        let overflow_words = words.len().checked_sub(load.main_words);
        let Some(overflow_words) = overflow_words.filter(|w| w % BUCKET_WORDS == 0) else {
            let defect = ChunkDefect::Length {
                words: words.len(),
                main_words: load.main_words,
            };
            return Err(load.corrupt(words.len(), defect));
        };
        for (b, main) in buckets.iter().enumerate() {
            self.load_chain(&mut load, main, b * BUCKET_WORDS)?;
        }
        let unreached = overflow_words / BUCKET_WORDS - load.overflow_loaded;
        if unreached > 0 {
            let word = load.main_words + load.overflow_loaded * BUCKET_WORDS;
            let defect = ChunkDefect::UnreachableOverflow { buckets: unreached };
            return Err(load.corrupt(word, defect));
        }
        Ok(())
    }

    /// Stores the chain of the main bucket whose image starts at word `start`, allocating its
    /// overflow buckets; the image's pointers must number them in walk order (I7).
    fn load_chain(
        &self,
        load: &mut ChunkLoad<'_>,
        main: &Bucket,
        start: usize,
    ) -> Result<(), IndexError> {
        let mut bucket = main;
        let mut at = start;
        loop {
            for (k, slot) in bucket.slots().iter().enumerate() {
                let word = load_entry_word(load.words[at + k])
                    .map_err(|defect| load.corrupt(at + k, defect))?;
                slot.store(word, Relaxed);
            }
            let pointer = load.words[at + OVERFLOW_WORD];
            if pointer == 0 {
                return Ok(());
            }
            let expected = load.overflow_loaded as u64 + 1;
            let next_at = load.main_words + load.overflow_loaded * BUCKET_WORDS;
            if pointer != expected || next_at >= load.words.len() {
                let defect = ChunkDefect::OverflowPointer { pointer, expected };
                return Err(load.corrupt(at + OVERFLOW_WORD, defect));
            }
            let (index, next) = self.overflow.alloc()?;
            bucket[OVERFLOW_WORD].store(index + 1, Relaxed);
            load.overflow_loaded += 1;
            bucket = next;
            at = next_at;
        }
    }
}

impl HashIndex {
    /// The image of main bucket `bucket`'s chain (a checkpoint delta's entry): its buckets'
    /// words in chain order, each overflow pointer replaced by the next bucket's position in
    /// the image (the main bucket's is 0), and 0 in the last. Fuzzy under concurrent writes, as `chunk_words`. Panics if
    /// `bucket >= bucket_count()`.
    pub fn chain_words(&self, bucket: usize) -> Vec<u64> {
        let mut image = Vec::with_capacity(BUCKET_WORDS);
        let mut position = 0;
        let mut next = Some(&self.buckets()[bucket]);
        while let Some(b) = next {
            next = self.push_image_bucket(b, &mut image, &mut position);
        }
        image
    }

    /// Replaces main bucket `bucket`'s chain by the chain image `words` (as `chain_words` makes
    /// it), freeing the old chain's overflow buckets; tentative entries are dropped. For
    /// recovery, while nobody else uses the index. On a refusal the chain is left as it was
    /// if the image's length or pointers are wrong, and part-written otherwise (the index is
    /// then not to be used).
    pub fn replace_chain(&self, bucket: usize, words: &[u64]) -> Result<(), (usize, ChunkDefect)> {
        let buckets = words.len() / BUCKET_WORDS;
        if words.is_empty() || !words.len().is_multiple_of(BUCKET_WORDS) {
            let defect = ChunkDefect::Length {
                words: words.len(),
                main_words: BUCKET_WORDS,
            };
            return Err((words.len(), defect));
        }
        for i in 0..buckets {
            let pointer = words[i * BUCKET_WORDS + OVERFLOW_WORD];
            let expected = if i + 1 == buckets { 0 } else { i as u64 + 1 };
            if pointer != expected {
                let defect = ChunkDefect::OverflowPointer { pointer, expected };
                return Err((i * BUCKET_WORDS + OVERFLOW_WORD, defect));
            }
        }
        let main = &self.buckets()[bucket];
        let mut old = Vec::new();
        let mut at = main;
        while let Some(next) = self.next_in_chain(at, Relaxed) {
            old.push(at[OVERFLOW_WORD].load(Relaxed) - 1);
            at = next;
        }
        main[OVERFLOW_WORD].store(0, Relaxed);
        for i in old {
            self.overflow.free(i);
        }
        let mut target = main;
        for (i, image) in words.chunks(BUCKET_WORDS).enumerate() {
            for (k, slot) in target.slots().iter().enumerate() {
                let word = load_entry_word(image[k]).map_err(|d| (i * BUCKET_WORDS + k, d))?;
                slot.store(word, Relaxed);
            }
            if i + 1 < buckets {
                let (index, next) = self.overflow.alloc().map_err(|_| {
                    (
                        i * BUCKET_WORDS + OVERFLOW_WORD,
                        ChunkDefect::UnreachableOverflow {
                            buckets: buckets - i - 1,
                        },
                    )
                })?;
                target[OVERFLOW_WORD].store(index + 1, Relaxed);
                target = next;
            }
        }
        Ok(())
    }
}

/// A chunk image being loaded by `from_chunks`.
struct ChunkLoad<'w> {
    chunk: usize,
    words: &'w [u64],
    /// Words of the chunk's main buckets; its overflow buckets follow.
    main_words: usize,
    /// Overflow buckets of the image loaded so far.
    overflow_loaded: usize,
}

impl ChunkLoad<'_> {
    fn corrupt(&self, word: usize, defect: ChunkDefect) -> IndexError {
        IndexError::ChunkCorrupt {
            chunk: self.chunk,
            word,
            defect,
        }
    }
}

/// The word to store for an image's entry word: tentative entries become free slots (I7).
fn load_entry_word(word: u64) -> Result<u64, ChunkDefect> {
    let entry = IndexEntry(word);
    if entry.reserved_bit() {
        return Err(ChunkDefect::ReservedBit);
    }
    if entry.is_tentative() {
        return Ok(0);
    }
    if !entry.is_free() && entry.address() == ADDRESS_INVALID {
        return Err(ChunkDefect::AddressMissing);
    }
    Ok(word)
}
