//! The pacing-thread path — `Playout::fill` and `LiveRing::read` — never allocates.
//! Counted by a global allocator wrapper, per thread, over every kind of plan item.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imss_media::{Clip, ClipCache, Fill, Law, LiveSource, LiveSpec, PlayItem, Playout, Repeat};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only adds a thread-local counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn fill_and_read_do_not_allocate() {
    let tone = LiveSource::spawn(
        "tone",
        LiveSpec::Tone {
            frequency_hz: 440.0,
            level_dbfs: -10.0,
        },
        Arc::new(ClipCache::new(0)),
    )
    .unwrap();
    let ring = tone.ring();
    let clip = Arc::new(Clip::from_samples_8k(&vec![0.25; 1000]));
    let mut plan = Playout::new(
        vec![
            PlayItem::Clip(Arc::clone(&clip)),
            PlayItem::Silence(Duration::from_millis(15)),
            PlayItem::Clip(clip),
        ],
        Repeat::Times(3),
        Duration::from_millis(30),
        Some(Duration::from_millis(700)),
    );
    let mut live = Playout::live(Arc::clone(&ring));
    let mut out = [0u8; 480];
    let start = Instant::now();

    let before = allocations();
    let mut packets = 0;
    for (i, size) in [160, 80, 240, 480, 333]
        .iter()
        .cycle()
        .take(200)
        .enumerate()
    {
        let at = start + Duration::from_millis(10 * i as u64);
        let law = if i % 2 == 0 { Law::Pcmu } else { Law::Pcma };
        if plan.fill(law, at, &mut out[..*size]) == Fill::Audio {
            packets += 1;
        }
        assert_eq!(
            live.fill(law, Instant::now(), &mut out[..*size]),
            Fill::Audio
        );
        let pos = ring.position_at(Instant::now());
        assert!(ring.read(law, pos + 3, &mut out[..*size]));
    }
    let after = allocations();
    assert_eq!(after - before, 0, "the pacing path allocated");
    assert!(packets > 10 && plan.is_ended(), "{packets} packets");
    // The counter itself works.
    let probe: Vec<u8> = Vec::with_capacity(16);
    assert!(allocations() > after, "allocation counter is not counting");
    drop(probe);
}
