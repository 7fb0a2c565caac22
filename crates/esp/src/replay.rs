//! Anti-replay window (RFC 4303 §3.4.3, Appendix A2 style bitmap), no allocation after construction.

/// A sliding window over received sequence numbers: `top` is the highest authenticated one.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    size: u32,
    top: u32,
    bits: Vec<u64>,
}

impl ReplayWindow {
    /// `size` packets, clamped to 64..=4096 and rounded up to a multiple of 64 (AWS: 64..=2048, default 1024).
    /// The bitmap is allocated here, once.
    pub fn new(size: u32) -> Self {
        let size = size.clamp(64, 4096).div_ceil(64) * 64;
        ReplayWindow { size, top: 0, bits: vec![0; (size / 64) as usize] }
    }
    pub fn size(&self) -> u32 {
        self.size
    }
    fn bit(&self, seq: u32) -> (usize, u64) {
        let i = (seq % self.size) as usize;
        (i / 64, 1u64 << (i % 64))
    }
    /// Would `seq` be accepted? (Sequence number 0 never is: senders start at 1.)
    pub fn check(&self, seq: u32) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.top {
            return true;
        }
        if self.top - seq >= self.size {
            return false;
        }
        let (w, m) = self.bit(seq);
        self.bits[w] & m == 0
    }
    /// Records an authenticated `seq` (call only after `check` passed and the ICV verified).
    pub fn update(&mut self, seq: u32) {
        if seq > self.top {
            let shift = seq - self.top;
            if shift >= self.size {
                self.bits.iter_mut().for_each(|b| *b = 0);
            } else {
                // Clear the slots of the skipped numbers (top+1 .. seq), whole words where aligned: the
                // window size is a multiple of 64, so an aligned word never wraps around the ring.
                let mut s = self.top.wrapping_add(1);
                while s < seq {
                    let i = (s % self.size) as usize;
                    if i.is_multiple_of(64) && seq - s >= 64 {
                        self.bits[i / 64] = 0;
                        s += 64;
                    } else {
                        self.bits[i / 64] &= !(1u64 << (i % 64));
                        s += 1;
                    }
                }
            }
            self.top = seq;
        }
        let (w, m) = self.bit(seq);
        self.bits[w] |= m;
    }
}
