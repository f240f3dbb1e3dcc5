//! The fast path of the hand-off message: a plain FrameRef (no extra fields)
//! packed to and parsed from msgpack without building Python dicts. The message
//! is the same map the general path (pipeline/protocol.py with the msgpack
//! package) reads and writes; anything this parser does not recognise exactly
//! (extra keys, other types, duplicates, bad values) returns None and the
//! caller takes the general path, which also produces the precise error.

use crate::frame::{FrameMeta, PixelFormat};

/// Keys in wire order; `v` (the protocol version) comes first.
const KEYS: [&str; 12] =
    ["v", "ring_gen", "slot", "seq", "epoch", "monitor", "w", "h", "stride", "fmt", "t_mono_ns", "t_wall_ns"];

fn put_uint(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0x7f => out.push(v as u8),
        0x80..=0xff => out.extend_from_slice(&[0xcc, v as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
        _ => {
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    debug_assert!(s.len() < 32);
    out.push(0xa0 | s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// Packs `m` with protocol version `version` as a msgpack map.
pub fn pack(m: &FrameMeta, version: (u64, u64)) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.push(0x80 | KEYS.len() as u8);
    put_str(&mut out, "v");
    out.push(0x92);
    put_uint(&mut out, version.0);
    put_uint(&mut out, version.1);
    let ints = [
        m.ring_gen,
        m.slot.into(),
        m.seq,
        m.epoch,
        m.monitor.into(),
        m.width.into(),
        m.height.into(),
        m.stride.into(),
    ];
    for (key, v) in KEYS[1..9].iter().zip(ints) {
        put_str(&mut out, key);
        put_uint(&mut out, v);
    }
    put_str(&mut out, "fmt");
    put_str(&mut out, m.format.name());
    put_str(&mut out, "t_mono_ns");
    put_uint(&mut out, m.t_mono_ns);
    put_str(&mut out, "t_wall_ns");
    put_uint(&mut out, m.t_wall_ns);
    out
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.data.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(s)
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        Some(self.bytes(n)?.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn uint(&mut self) -> Option<u64> {
        match self.byte()? {
            b @ 0..=0x7f => Some(b.into()),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            _ => None,
        }
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = match self.byte()? {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => self.be(1)? as usize,
            0xda => self.be(2)? as usize,
            _ => return None,
        };
        std::str::from_utf8(self.bytes(len)?).ok()
    }
}

/// Parses a hand-off message that holds exactly the FrameRef fields and `v`.
pub fn unpack(data: &[u8]) -> Option<(FrameMeta, (u64, u64))> {
    let mut r = Reader { data, pos: 0 };
    let entries = match r.byte()? {
        b @ 0x80..=0x8f => usize::from(b & 0x0f),
        0xde => r.be(2)? as usize,
        _ => return None,
    };
    if entries != KEYS.len() {
        return None;
    }
    let mut ints = [0u64; 11];
    let mut seen = 0u16;
    let (mut version, mut format) = (None, None);
    for _ in 0..entries {
        let key = r.str()?;
        let index = KEYS.iter().position(|k| *k == key)?;
        if seen & (1 << index) != 0 {
            return None;
        }
        seen |= 1 << index;
        match key {
            "v" => {
                if r.byte()? != 0x92 {
                    return None;
                }
                version = Some((r.uint()?, r.uint()?));
            }
            "fmt" => format = Some(PixelFormat::parse(r.str()?).ok()?),
            _ => ints[index - 1] = r.uint()?,
        }
    }
    if r.pos != data.len() {
        return None;
    }
    let u32_of = |v: u64| u32::try_from(v).ok();
    let m = FrameMeta {
        ring_gen: ints[0],
        slot: u32_of(ints[1])?,
        seq: ints[2],
        epoch: ints[3],
        monitor: u32_of(ints[4])?,
        width: u32_of(ints[5])?,
        height: u32_of(ints[6])?,
        stride: u32_of(ints[7])?,
        format: format?,
        t_mono_ns: ints[9],
        t_wall_ns: ints[10],
    };
    let plausible = m.seq > 0 && m.width > 0 && m.height > 0 && m.stride as usize >= m.width as usize * m.channels();
    plausible.then_some((m, version?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64) -> FrameMeta {
        FrameMeta {
            ring_gen: 0xdead_beef_1234_5678,
            slot: 3,
            seq,
            epoch: 70_000,
            monitor: 1,
            width: 1920,
            height: 1080,
            stride: 7680,
            format: PixelFormat::Bgra,
            t_mono_ns: 123_456_789_012,
            t_wall_ns: 1_795_000_000_000_000_000,
        }
    }

    #[test]
    fn round_trips_every_integer_width() {
        for seq in [1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000, 0xffff_ffff, 0x1_0000_0000, u64::MAX] {
            let bytes = pack(&meta(seq), (1, 0));
            assert!(bytes.len() < 512);
            assert_eq!(unpack(&bytes), Some((meta(seq), (1, 0))));
        }
    }

    #[test]
    fn anything_unusual_takes_the_general_path() {
        let good = pack(&meta(5), (1, 2));
        assert!(unpack(&good[..good.len() - 1]).is_none(), "truncated");
        let mut long = good.clone();
        long.push(0);
        assert!(unpack(&long).is_none(), "trailing bytes");
        let mut extra = good.clone();
        extra[0] += 1;
        assert!(unpack(&extra).is_none(), "an extra entry");
        assert!(unpack(&pack(&meta(0), (1, 0))).is_none(), "seq 0");
        let mut bad_fmt = meta(5);
        bad_fmt.stride = 10;
        assert!(unpack(&pack(&bad_fmt, (1, 0))).is_none(), "impossible stride");
        assert!(unpack(b"").is_none() && unpack(b"\xc1").is_none());
    }
}
