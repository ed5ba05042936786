//! The timing wheel of one pacing thread: 1 ms slots, and the load table that spreads
//! streams over them.

/// Slots in the wheel: more than the longest ptime, so a stream re-inserted after sending
/// never lands in the slot being processed (except after a long stall; see `due` checks).
pub(crate) const WHEEL_SLOTS: usize = 128;
const WHEEL_MASK: u64 = WHEEL_SLOTS as u64 - 1;

/// Longest packet time accepted, in milliseconds.
pub const MAX_PTIME_MS: u32 = 120;

/// The period the load table covers: 120 ms is a multiple of every common ptime (10, 20, 30,
/// 40, 60 and all divisors of 120), so a stream of those ptimes due at ticks ≡ phase (mod
/// ptime) loads exactly the same residues mod 120 forever.
pub(crate) const LOAD_PERIOD: usize = 120;

/// The ticks ≡ `phase` (mod `ptime`) within one load period.
fn residues(phase: u32, ptime: u32) -> impl Iterator<Item = usize> {
    let ptime = ptime.clamp(1, MAX_PTIME_MS) as usize;
    (phase as usize % ptime..LOAD_PERIOD).step_by(ptime)
}

/// How many packets fall due at each millisecond of the load period.
pub(crate) struct LoadTable {
    load: [u32; LOAD_PERIOD],
}

impl LoadTable {
    pub(crate) fn new() -> Self {
        LoadTable {
            load: [0; LOAD_PERIOD],
        }
    }

    /// The least-loaded phase for a new stream of `ptime` ms: smallest peak over the ticks it
    /// would occupy, then smallest total, then earliest.
    pub(crate) fn choose(&self, ptime: u32) -> u32 {
        let ptime = ptime.clamp(1, MAX_PTIME_MS);
        let mut best = (u32::MAX, u64::MAX, 0);
        for phase in 0..ptime {
            let mut peak = 0;
            let mut total = 0u64;
            for r in residues(phase, ptime) {
                peak = peak.max(self.load[r]);
                total += u64::from(self.load[r]);
            }
            if (peak, total) < (best.0, best.1) {
                best = (peak, total, phase);
            }
        }
        best.2
    }

    pub(crate) fn add(&mut self, phase: u32, ptime: u32) {
        for r in residues(phase, ptime) {
            self.load[r] += 1;
        }
    }

    pub(crate) fn remove(&mut self, phase: u32, ptime: u32) {
        for r in residues(phase, ptime) {
            self.load[r] = self.load[r].saturating_sub(1);
        }
    }

    /// Packets due at `tick` (by the table).
    #[cfg(test)]
    pub(crate) fn at(&self, tick: u64) -> u32 {
        self.load[(tick % LOAD_PERIOD as u64) as usize]
    }
}

/// The first tick at or after `not_before` that is ≡ `phase` (mod `ptime`).
pub(crate) fn first_due(phase: u32, ptime: u32, not_before: u64) -> u64 {
    let ptime = u64::from(ptime.max(1));
    let phase = u64::from(phase) % ptime;
    let offset = (phase + ptime - not_before % ptime) % ptime;
    not_before + offset
}

/// Streams (slab indices) filed under the tick they are next due, modulo the wheel size.
pub(crate) struct Wheel {
    slots: Vec<Vec<u32>>,
}

impl Wheel {
    pub(crate) fn new() -> Self {
        Wheel {
            slots: (0..WHEEL_SLOTS).map(|_| Vec::new()).collect(),
        }
    }

    pub(crate) fn slot_of(tick: u64) -> usize {
        (tick & WHEEL_MASK) as usize
    }

    pub(crate) fn insert(&mut self, due: u64, index: u32) {
        self.slots[Self::slot_of(due)].push(index);
    }

    /// Removes `index` filed under `due`; false if it was not there.
    pub(crate) fn remove(&mut self, due: u64, index: u32) -> bool {
        let slot = &mut self.slots[Self::slot_of(due)];
        match slot.iter().position(|&i| i == index) {
            Some(pos) => {
                slot.swap_remove(pos);
                true
            }
            None => false,
        }
    }

    /// Takes the slot of `tick` out for processing (its capacity comes back with `restore`).
    pub(crate) fn take(&mut self, tick: u64) -> Vec<u32> {
        std::mem::take(&mut self.slots[Self::slot_of(tick)])
    }

    /// Puts a processed slot back; `list` holds what stays filed there.
    pub(crate) fn restore(&mut self, tick: u64, list: Vec<u32>) {
        let slot = &mut self.slots[Self::slot_of(tick)];
        debug_assert!(slot.is_empty());
        *slot = list;
    }

    /// The first tick in `from..limit` whose slot holds a stream, or `limit`.
    pub(crate) fn next_occupied(&self, from: u64, limit: u64) -> u64 {
        (from..limit)
            .find(|&t| !self.slots[Self::slot_of(t)].is_empty())
            .unwrap_or(limit)
    }

    #[cfg(test)]
    pub(crate) fn len_at(&self, tick: u64) -> usize {
        self.slots[Self::slot_of(tick)].len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_due_is_aligned() {
        assert_eq!(first_due(3, 20, 100), 103);
        assert_eq!(first_due(3, 20, 103), 103);
        assert_eq!(first_due(3, 20, 104), 123);
        assert_eq!(first_due(0, 30, 1), 30);
        assert_eq!(first_due(25, 20, 0), 5, "phase is taken mod ptime");
    }

    #[test]
    fn spreads_equal_streams_evenly() {
        let mut table = LoadTable::new();
        for _ in 0..100 {
            let phase = table.choose(20);
            table.add(phase, 20);
        }
        // 100 streams over 20 phases: exactly 5 due every millisecond.
        for tick in 0..LOAD_PERIOD as u64 {
            assert_eq!(table.at(tick), 5, "tick {tick}");
        }
    }

    #[test]
    fn spreads_mixed_ptimes() {
        let mut table = LoadTable::new();
        let mut placed = Vec::new();
        for i in 0..240 {
            let ptime = [20, 30, 10, 40][i % 4];
            let phase = table.choose(ptime);
            table.add(phase, ptime);
            placed.push((phase, ptime));
        }
        // Packets per 120 ms: 60×6 + 60×4 + 60×12 + 60×3 = 1500, i.e. 12.5 per ms on average.
        let loads: Vec<u32> = (0..LOAD_PERIOD as u64).map(|t| table.at(t)).collect();
        let total: u32 = loads.iter().sum();
        assert_eq!(total, 1500);
        let (min, max) = (loads.iter().min(), loads.iter().max());
        assert!(
            matches!((min, max), (Some(&lo), Some(&hi)) if hi - lo <= 2),
            "{loads:?}"
        );
        for (phase, ptime) in placed {
            table.remove(phase, ptime);
        }
        assert!((0..LOAD_PERIOD as u64).all(|t| table.at(t) == 0));
    }

    #[test]
    fn wheel_files_by_due_tick() {
        let mut wheel = Wheel::new();
        wheel.insert(5, 1);
        wheel.insert(5 + WHEEL_SLOTS as u64, 2);
        wheel.insert(6, 3);
        assert_eq!(wheel.len_at(5), 2);
        assert!(wheel.remove(5, 1));
        assert!(!wheel.remove(5, 1));
        let list = wheel.take(5);
        assert_eq!(list, vec![2]);
        wheel.restore(5, list);
        assert_eq!(wheel.len_at(5), 1);
        assert_eq!(wheel.next_occupied(1, 20), 5);
        assert_eq!(wheel.next_occupied(6, 20), 6);
        assert_eq!(wheel.next_occupied(7, 20), 20, "empty up to the limit");
        assert_eq!(
            wheel.next_occupied(7, 7 + WHEEL_SLOTS as u64),
            5 + WHEEL_SLOTS as u64
        );
    }
}
