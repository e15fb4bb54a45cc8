//! Decoding a consumer group member's assignment (the Kafka consumer protocol's
//! `ConsumerProtocolAssignment`, as DescribeGroups returns it), sans-IO. It tells which topics
//! a live group reads, so their committed offsets are fetched without searching every topic.
//! Bytes come from the network: decoding never panics and rejects anything malformed.
//!
//! ```text
//! version: int16
//! assigned_partitions: int32 count, then per topic: topic (int16 length + UTF-8),
//!                      partitions (int32 count + int32 each)
//! user_data: bytes (ignored)
//! ```

/// Topics (with their partitions) assigned to one member; `None` when the bytes are not a
/// consumer-protocol assignment.
pub fn decode(bytes: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    let mut r = Reader { b: bytes };
    let version = r.i16()?;
    if version < 0 {
        return None;
    }
    let topics = r.count()?;
    let mut out = Vec::with_capacity(topics.min(1024));
    for _ in 0..topics {
        let len = usize::try_from(r.i16()?).ok()?;
        let topic = std::str::from_utf8(r.take(len)?).ok()?.to_owned();
        let n = r.count()?;
        let mut parts = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            parts.push(r.i32()?);
        }
        out.push((topic, parts));
    }
    Some(out)
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    /// An array length: non-negative and not longer than what is left could hold.
    fn count(&mut self) -> Option<usize> {
        let n = usize::try_from(self.i32()?).ok()?;
        (n <= self.b.len()).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(version: i16, topics: &[(String, Vec<i32>)], user_data: &[u8]) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (t, parts) in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
            b.extend((parts.len() as i32).to_be_bytes());
            for p in parts {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((user_data.len() as i32).to_be_bytes());
        b.extend(user_data);
        b
    }

    #[test]
    fn decodes_an_assignment() {
        let topics = vec![
            ("orders".to_owned(), vec![0, 3]),
            ("audit".to_owned(), vec![]),
        ];
        assert_eq!(decode(&encode(1, &topics, b"x")), Some(topics));
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[0xff, 0xff, 0, 0, 0, 0]), None);
        // A count larger than the bytes left is refused without allocating it.
        assert_eq!(decode(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn round_trips(
            topics in proptest::collection::vec(("[a-z0-9._-]{1,20}", proptest::collection::vec(0i32..1000, 0..8)), 0..6),
            version in 0i16..4,
            user in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let bytes = encode(version, &topics, &user);
            prop_assert_eq!(decode(&bytes), Some(topics.clone()));
            // Any truncation inside the topic array is refused.
            let user_len = 4 + user.len();
            for cut in 0..bytes.len() - user_len {
                prop_assert!(decode(&bytes[..cut]).is_none(), "cut at {}", cut);
            }
        }
    }
}
