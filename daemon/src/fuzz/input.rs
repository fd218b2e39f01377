//! A cursor over a fuzz input that hands out small choices (numbers, flags, byte runs), so
//! each target reads a structured case from plain bytes. When the bytes run out every
//! choice is zero or empty: any input, however short, is a valid case.

pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(bytes: &'a [u8]) -> Input<'a> {
        Input { bytes }
    }

    pub fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// A number in `0..=max`.
    pub fn upto(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let n = if max < 256 {
            u64::from(self.u8())
        } else if max < 65_536 {
            u64::from(self.u16())
        } else {
            self.u64()
        };
        n % (max + 1)
    }

    /// A run of bytes whose length (at most `max`) comes first.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = (self.upto(max as u64) as usize).min(self.bytes.len());
        let (run, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        run
    }

    /// Everything not taken yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}
