//! The probe wire format: what the canary producer writes and the verifier reads back.
//!
//! A probe is a versioned binary record. Every field is big-endian:
//!
//! ```text
//! offset size field
//!      0    4 magic  b"LWPR"
//!      4    1 version (1)
//!      5    1 flags (0; reserved)
//!      6    4 total length of the record in bytes (header + padding)
//!     10   16 producer instance id (uuid)
//!     26    4 partition the probe was sent to (i32)
//!     30    8 sequence number (u64), per instance and partition
//!     38    8 produced-at, microseconds since the Unix epoch (i64)
//!     46    … padding (a fixed byte pattern) up to the configured payload size
//! ```
//!
//! The length field catches records cut short anywhere, not just inside the header, and the
//! partition field catches a probe that turns up on a partition it was not sent to.
//! [`decode`] is total: every byte string gives a [`Probe`] or a [`ProbeError`], never a panic,
//! because the canary topic is shared and anyone can write garbage to it.

use uuid::Uuid;

/// The first four bytes of every probe.
pub const MAGIC: [u8; 4] = *b"LWPR";
/// The only version this build writes and reads.
pub const VERSION: u8 = 1;
/// Size of the fixed header; a probe is never shorter than this.
pub const HEADER_LEN: usize = 46;
/// Byte used to pad probes to the configured payload size.
const PAD: u8 = 0x5a;

/// A decoded probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub instance: Uuid,
    pub partition: i32,
    pub seq: u64,
    pub produced_at_us: i64,
}

/// Why a record on the canary topic is not a probe. Each variant is a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ProbeError {
    #[error("record has no value")]
    Empty,
    #[error("record does not start with the probe magic")]
    BadMagic,
    #[error("probe version is not supported by this build")]
    UnknownVersion,
    #[error("record is shorter than a probe header")]
    Truncated,
    #[error("record length differs from the length the probe declares")]
    BadLength,
}

impl ProbeError {
    pub const ALL: [ProbeError; 5] = [
        ProbeError::Empty,
        ProbeError::BadMagic,
        ProbeError::UnknownVersion,
        ProbeError::Truncated,
        ProbeError::BadLength,
    ];

    /// The `reason` label of `losswatch_foreign_records_total`.
    pub fn as_label(self) -> &'static str {
        match self {
            ProbeError::Empty => "empty",
            ProbeError::BadMagic => "bad_magic",
            ProbeError::UnknownVersion => "unknown_version",
            ProbeError::Truncated => "truncated",
            ProbeError::BadLength => "bad_length",
        }
    }
}

impl Probe {
    /// Encodes the probe into `buf` (cleared first), padded to `payload_len` bytes; a
    /// `payload_len` below [`HEADER_LEN`] gives a bare header.
    pub fn encode_into(&self, payload_len: usize, buf: &mut Vec<u8>) {
        let len = payload_len.max(HEADER_LEN);
        buf.clear();
        buf.reserve(len);
        buf.extend_from_slice(&MAGIC);
        buf.push(VERSION);
        buf.push(0);
        // Payload size is validated by the config to fit in u32; saturate rather than wrap.
        buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        buf.extend_from_slice(self.instance.as_bytes());
        buf.extend_from_slice(&self.partition.to_be_bytes());
        buf.extend_from_slice(&self.seq.to_be_bytes());
        buf.extend_from_slice(&self.produced_at_us.to_be_bytes());
        buf.resize(len, PAD);
    }

    /// Encodes into a fresh buffer.
    pub fn encode(&self, payload_len: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode_into(payload_len, &mut buf);
        buf
    }
}

/// Decodes a record value. `None` (a null value) and `Some(&[])` are both [`ProbeError::Empty`].
pub fn decode(value: Option<&[u8]>) -> Result<Probe, ProbeError> {
    let bytes = match value {
        None | Some([]) => return Err(ProbeError::Empty),
        Some(b) => b,
    };
    // Check what is there of the magic before complaining about length, so that a short
    // non-probe is reported as foreign (bad magic), not as a damaged probe.
    let magic_len = bytes.len().min(MAGIC.len());
    if bytes[..magic_len] != MAGIC[..magic_len] {
        return Err(ProbeError::BadMagic);
    }
    if bytes.len() < HEADER_LEN {
        return Err(ProbeError::Truncated);
    }
    if bytes[4] != VERSION {
        return Err(ProbeError::UnknownVersion);
    }
    let declared = u32::from_be_bytes(field(bytes, 6));
    if usize::try_from(declared).ok() != Some(bytes.len()) {
        return Err(ProbeError::BadLength);
    }
    Ok(Probe {
        instance: Uuid::from_bytes(field(bytes, 10)),
        partition: i32::from_be_bytes(field(bytes, 26)),
        seq: u64::from_be_bytes(field(bytes, 30)),
        produced_at_us: i64::from_be_bytes(field(bytes, 38)),
    })
}

/// Copies `N` bytes at `at`. Callers have checked `bytes.len() >= HEADER_LEN`, and every field
/// ends within the header, so the slice is always in bounds.
fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Probe {
        Probe {
            instance: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            partition: 7,
            seq: 42,
            produced_at_us: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn round_trip_with_padding() {
        let p = sample();
        let bytes = p.encode(100);
        assert_eq!(bytes.len(), 100);
        assert_eq!(decode(Some(&bytes)), Ok(p));
    }

    #[test]
    fn small_payload_gives_bare_header() {
        let bytes = sample().encode(10);
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(decode(Some(&bytes)), Ok(sample()));
    }

    #[test]
    fn each_damage_has_its_reason() {
        let good = sample().encode(100);
        assert_eq!(decode(None), Err(ProbeError::Empty));
        assert_eq!(decode(Some(&[])), Err(ProbeError::Empty));
        assert_eq!(decode(Some(b"hello world")), Err(ProbeError::BadMagic));
        assert_eq!(decode(Some(&good[..3])), Err(ProbeError::Truncated));
        assert_eq!(decode(Some(&good[..20])), Err(ProbeError::Truncated));
        assert_eq!(decode(Some(&good[..99])), Err(ProbeError::BadLength));
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(decode(Some(&longer)), Err(ProbeError::BadLength));
        let mut v2 = good.clone();
        v2[4] = 2;
        assert_eq!(decode(Some(&v2)), Err(ProbeError::UnknownVersion));
        let big = vec![0u8; 1 << 20];
        assert_eq!(decode(Some(&big)), Err(ProbeError::BadMagic));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(Some(&bytes));
        }

        #[test]
        fn arbitrary_bytes_after_magic_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend(tail);
            let _ = decode(Some(&bytes));
        }

        #[test]
        fn round_trip(id in any::<u128>(), partition in any::<i32>(), seq in any::<u64>(),
                      at in any::<i64>(), len in 0usize..4096) {
            let p = Probe { instance: Uuid::from_u128(id), partition, seq, produced_at_us: at };
            let bytes = p.encode(len);
            prop_assert_eq!(bytes.len(), len.max(HEADER_LEN));
            prop_assert_eq!(decode(Some(&bytes)), Ok(p));
        }

        #[test]
        fn every_prefix_is_rejected(len in 0usize..100) {
            let bytes = sample().encode(100);
            prop_assert!(decode(Some(&bytes[..len])).is_err());
        }
    }
}
