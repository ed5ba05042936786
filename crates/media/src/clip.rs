//! Decoded clips and the byte-bounded cache that shares them between streams.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use lru::LruCache;

use crate::resample::Resampler8k;
use crate::{BLOCK_SAMPLES, Law, MediaError, decode, duration_of, g711};

/// Immutable decoded audio, 8 kHz, both laws, padded with silence to whole 10 ms blocks.
#[derive(Debug, PartialEq, Eq)]
pub struct Clip {
    ulaw: Box<[u8]>,
    alaw: Box<[u8]>,
    /// Samples of real audio, before the padding.
    content: usize,
}

impl Clip {
    /// Encodes 8 kHz float samples in both laws.
    pub fn from_samples_8k(s: &[f32]) -> Clip {
        let padded = s.len().div_ceil(BLOCK_SAMPLES) * BLOCK_SAMPLES;
        let mut ulaw = vec![Law::Pcmu.silence(); padded].into_boxed_slice();
        let mut alaw = vec![Law::Pcma.silence(); padded].into_boxed_slice();
        g711::encode_f32(Law::Pcmu, s, &mut ulaw);
        g711::encode_f32(Law::Pcma, s, &mut alaw);
        Clip {
            ulaw,
            alaw,
            content: s.len(),
        }
    }

    /// Decodes, downmixes and resamples an audio file.
    pub fn from_file(p: &Path) -> Result<Clip, MediaError> {
        // Resampling as packets arrive keeps only 8 kHz audio in memory, whatever the
        // source rate.
        let mut resampler: Option<Resampler8k> = None;
        let mut samples = Vec::new();
        decode::decode_path_with(p, &mut |rate, block| {
            let r = match &mut resampler {
                Some(r) => r,
                slot => slot.insert(Resampler8k::new(rate)?),
            };
            r.push(block, &mut samples)
        })?;
        if let Some(r) = resampler {
            r.finish(&mut samples)?;
        }
        Ok(Clip::from_samples_8k(&samples))
    }

    /// Length in samples, including the padding to a whole block.
    pub fn samples(&self) -> usize {
        self.ulaw.len()
    }

    /// Length in samples of the audio itself, without the padding.
    pub fn content_samples(&self) -> usize {
        self.content
    }

    /// The clip's G.711 bytes in `law`, one per sample.
    pub fn bytes(&self, law: Law) -> &[u8] {
        match law {
            Law::Pcmu => &self.ulaw,
            Law::Pcma => &self.alaw,
        }
    }

    /// The clip's audio as linear samples (its μ-law codes expanded), without the padding.
    pub fn to_pcm(&self) -> Vec<f32> {
        self.ulaw[..self.content]
            .iter()
            .map(|&b| f32::from(g711::ulaw_decode(b)) / 32768.0)
            .collect()
    }

    /// Playing time, including the padding.
    pub fn duration(&self) -> Duration {
        duration_of(self.samples() as u64)
    }

    /// Heap and inline bytes this clip holds, as charged by [`ClipCache`].
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Clip>() + self.ulaw.len() + self.alaw.len()
    }
}

/// What identifies a version of a file: a change to either means "decode again".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

struct Cached {
    stamp: FileStamp,
    clip: Arc<Clip>,
}

struct CacheState {
    entries: LruCache<PathBuf, Cached>,
    used: usize,
}

/// LRU by bytes, keyed by path, reloaded when the file's (mtime, len) changes. Sync.
pub struct ClipCache {
    max_bytes: usize,
    state: Mutex<CacheState>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

impl ClipCache {
    /// A cache holding at most `max_bytes` of clips (a larger clip is served, not kept).
    pub fn new(max_bytes: usize) -> Self {
        ClipCache {
            max_bytes,
            state: Mutex::new(CacheState {
                entries: LruCache::unbounded(),
                used: 0,
            }),
            hits: std::sync::atomic::AtomicU64::new(0),
            misses: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Requests answered from the cache and requests that decoded, since the start.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }

    /// The most bytes of clips kept.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The clip of `p`, decoded now unless a current version is cached.
    pub fn get(&self, p: &Path) -> Result<Arc<Clip>, MediaError> {
        let key = std::fs::canonicalize(p).map_err(|e| MediaError::io(p, e))?;
        let meta = std::fs::metadata(&key).map_err(|e| MediaError::io(p, e))?;
        let stamp = FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
        };
        if let Some(hit) = self.lock().entries.get(&key)
            && hit.stamp == stamp
        {
            self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(Arc::clone(&hit.clip));
        }
        self.misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Decode without the lock: other paths stay available meanwhile; two concurrent
        // misses of one path decode it twice, and the second insert wins.
        let clip = Arc::new(Clip::from_file(&key).map_err(|e| with_path(e, p))?);
        let size = clip.memory_bytes();
        let mut state = self.lock();
        if let Some(old) = state.entries.pop(&key) {
            state.used -= old.clip.memory_bytes();
        }
        if size <= self.max_bytes {
            while state.used + size > self.max_bytes {
                match state.entries.pop_lru() {
                    Some((_, old)) => state.used -= old.clip.memory_bytes(),
                    None => break,
                }
            }
            state.used += size;
            state.entries.put(
                key,
                Cached {
                    stamp,
                    clip: Arc::clone(&clip),
                },
            );
        }
        Ok(clip)
    }

    /// The clip of `p` if it is cached and the file has not changed since; never decodes.
    /// Costs a `canonicalize` and a `stat`: cheap enough for a request's hot path, which
    /// then needs no blocking thread for a clip that is already there.
    pub fn get_cached(&self, p: &Path) -> Option<Arc<Clip>> {
        let key = std::fs::canonicalize(p).ok()?;
        let meta = std::fs::metadata(&key).ok()?;
        let stamp = FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
        };
        let mut state = self.lock();
        let hit = state.entries.get(&key)?;
        let current = (hit.stamp == stamp).then(|| Arc::clone(&hit.clip));
        if current.is_some() {
            self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        current
    }

    /// Bytes of clips held now.
    pub fn used_bytes(&self) -> usize {
        self.lock().used
    }

    /// Number of clips held now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when no clip is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every clip (streams playing them keep their own reference).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.entries.clear();
        state.used = 0;
    }

    fn lock(&self) -> MutexGuard<'_, CacheState> {
        // The state is consistent between statements, so a panic elsewhere cannot leave it
        // half-updated; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for ClipCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipCache")
            .field("max_bytes", &self.max_bytes)
            .field("used_bytes", &self.used_bytes())
            .finish()
    }
}

/// Errors name the path the caller asked for, not its canonical form.
fn with_path(e: MediaError, p: &Path) -> MediaError {
    let p = p.to_path_buf();
    match e {
        MediaError::NotFound { .. } => MediaError::NotFound { path: p },
        MediaError::Unsupported { detail, .. } => MediaError::Unsupported { path: p, detail },
        MediaError::Decode { detail, .. } => MediaError::Decode { path: p, detail },
        MediaError::Io { source, .. } => MediaError::Io { path: p, source },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::TAU;

    fn write_wav(path: &Path, rate: u32, seconds: f64, freq: f64) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        let n = (f64::from(rate) * seconds) as usize;
        for i in 0..n {
            let v = 0.5 * (TAU * freq * i as f64 / f64::from(rate)).sin();
            w.write_sample((v * 32767.0) as i16).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn clip_is_padded_to_whole_blocks() {
        let clip = Clip::from_samples_8k(&[0.5; 81]);
        assert_eq!(clip.samples(), 160);
        assert_eq!(clip.content_samples(), 81);
        assert_eq!(clip.duration(), Duration::from_millis(20));
        let u = clip.bytes(Law::Pcmu);
        assert_eq!(u[80], g711::ulaw_encode(16384));
        assert!(u[81..].iter().all(|&b| b == 0xFF));
        let a = clip.bytes(Law::Pcma);
        assert_eq!(a[0], g711::alaw_encode(16384));
        assert!(a[81..].iter().all(|&b| b == 0xD5));
        assert_eq!(clip.memory_bytes(), std::mem::size_of::<Clip>() + 320);
        assert_eq!(Clip::from_samples_8k(&[]).samples(), 0);
        assert_eq!(Clip::from_samples_8k(&[0.0; 80]).samples(), 80);
    }

    #[test]
    fn cache_hits_reloads_and_evicts() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.wav");
        let b = dir.path().join("b.wav");
        write_wav(&a, 8000, 1.0, 440.0);
        write_wav(&b, 16_000, 1.0, 440.0);
        let one = Clip::from_file(&a).unwrap().memory_bytes();
        assert_eq!(one, std::mem::size_of::<Clip>() + 16_000);

        let cache = ClipCache::new(one * 2);
        assert!(cache.get_cached(&a).is_none(), "a lookup never decodes");
        assert!(cache.is_empty());
        let first = cache.get(&a).unwrap();
        assert!(Arc::ptr_eq(&first, &cache.get_cached(&a).unwrap()));
        let again = cache.get(&dir.path().join(".").join("a.wav")).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "same canonical path is one entry"
        );
        assert_eq!(cache.used_bytes(), one);

        // Rewriting the file with a different length invalidates the entry.
        write_wav(&a, 8000, 0.5, 440.0);
        assert!(
            cache.get_cached(&a).is_none(),
            "a changed file is not served stale"
        );
        let reloaded = cache.get(&a).unwrap();
        assert!(!Arc::ptr_eq(&first, &reloaded));
        assert_eq!(reloaded.samples(), 4000);
        let half = reloaded.memory_bytes();
        assert_eq!(cache.used_bytes(), half);

        let clip_b = cache.get(&b).unwrap();
        assert_eq!(clip_b.samples(), 8000);
        assert_eq!(cache.used_bytes(), half + one);
        assert_eq!(cache.len(), 2);

        // A third clip pushes out the least recently used one (a), not b.
        let c = dir.path().join("c.wav");
        write_wav(&c, 8000, 1.0, 440.0);
        let _ = cache.get(&b).unwrap();
        let _ = cache.get(&c).unwrap();
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.used_bytes(), 2 * one);
        assert!(Arc::ptr_eq(&clip_b, &cache.get(&b).unwrap()));

        // Too big for the cache: served, not kept.
        let small = ClipCache::new(100);
        assert_eq!(small.get(&b).unwrap().samples(), 8000);
        assert_eq!(small.used_bytes(), 0);
        assert!(small.is_empty());
    }

    #[test]
    fn cache_errors_name_the_requested_path() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ClipCache::new(1 << 20);
        let missing = dir.path().join("nope.wav");
        match cache.get(&missing) {
            Err(MediaError::NotFound { path }) => assert_eq!(path, missing),
            other => panic!("expected NotFound, got {other:?}"),
        }
        let text = dir.path().join("notes.wav");
        std::fs::write(&text, "these are not the samples you are looking for").unwrap();
        let err = cache.get(&text).unwrap_err();
        assert!(matches!(err, MediaError::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("notes.wav"), "{err}");
    }

    #[test]
    fn concurrent_gets_share_one_cache() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.wav");
        write_wav(&a, 22_050, 0.5, 440.0);
        let cache = Arc::new(ClipCache::new(1 << 20));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let cache = Arc::clone(&cache);
                let a = a.clone();
                std::thread::spawn(move || cache.get(&a).unwrap().samples())
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 4000);
        }
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.used_bytes(), cache.get(&a).unwrap().memory_bytes());
    }
}
