//! Short byte strings stored inline (no allocation), longer ones on the heap: order ids in
//! the reservation table and encoded names in the catalog's cells.

/// Up to `N` bytes inline (`N` <= 255), more on the heap.
#[derive(Debug, Clone)]
pub(crate) enum InlineBytes<const N: usize> {
    Inline { len: u8, bytes: [u8; N] },
    Heap(Box<[u8]>),
}

impl<const N: usize> InlineBytes<N> {
    const FITS_U8: () = assert!(N <= u8::MAX as usize);

    pub(crate) fn new(value: &[u8]) -> InlineBytes<N> {
        let () = Self::FITS_U8;
        if value.len() <= N {
            let mut bytes = [0u8; N];
            bytes[..value.len()].copy_from_slice(value);
            InlineBytes::Inline {
                len: value.len() as u8,
                bytes,
            }
        } else {
            InlineBytes::Heap(value.into())
        }
    }

    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            InlineBytes::Inline { len, bytes } => &bytes[..*len as usize],
            InlineBytes::Heap(b) => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::InlineBytes;

    #[test]
    fn short_and_long_values_round_trip() {
        for len in [0usize, 1, 7, 8, 9, 40] {
            let v: Vec<u8> = (0..len as u8).collect();
            assert_eq!(InlineBytes::<8>::new(&v).as_bytes(), &v[..]);
        }
        assert!(matches!(
            InlineBytes::<8>::new(&[1; 8]),
            InlineBytes::Inline { .. }
        ));
        assert!(matches!(
            InlineBytes::<8>::new(&[1; 9]),
            InlineBytes::Heap(_)
        ));
    }
}
