//! The IP addresses of a transport parameter.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::ops::Deref;

/// The addresses of a transport: a list that keeps a single address inline.
///
/// Almost every transport carries one address, and every pool element
/// carries two transports (user and ASAP). Inline, a registrar saves two
/// heap blocks per PE in its handlespace and two allocations in every copy
/// of a PE it makes (handle resolution answers, handle updates to peers).
/// Reads like a slice; build it from a `Vec`, an iterator or one address.
#[derive(Clone)]
pub struct IpAddrs(Repr);

/// One address inline; any other number in a boxed slice (never one).
#[derive(Clone)]
enum Repr {
    One(IpAddr),
    Many(Box<[IpAddr]>),
}

impl IpAddrs {
    /// No address.
    pub fn new() -> Self {
        Self(Repr::Many(Box::default()))
    }

    /// The addresses as a slice.
    pub fn as_slice(&self) -> &[IpAddr] {
        match &self.0 {
            Repr::One(a) => std::slice::from_ref(a),
            Repr::Many(v) => v,
        }
    }
}

impl Default for IpAddrs {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for IpAddrs {
    type Target = [IpAddr];

    fn deref(&self) -> &[IpAddr] {
        self.as_slice()
    }
}

impl From<IpAddr> for IpAddrs {
    fn from(a: IpAddr) -> Self {
        Self(Repr::One(a))
    }
}

impl From<Vec<IpAddr>> for IpAddrs {
    fn from(v: Vec<IpAddr>) -> Self {
        match v.as_slice() {
            [a] => Self(Repr::One(*a)),
            _ => Self(Repr::Many(v.into_boxed_slice())),
        }
    }
}

impl From<&[IpAddr]> for IpAddrs {
    fn from(v: &[IpAddr]) -> Self {
        match v {
            [a] => Self(Repr::One(*a)),
            _ => Self(Repr::Many(v.into())),
        }
    }
}

impl FromIterator<IpAddr> for IpAddrs {
    fn from_iter<I: IntoIterator<Item = IpAddr>>(iter: I) -> Self {
        let mut it = iter.into_iter();
        let Some(first) = it.next() else {
            return Self::new();
        };
        match it.next() {
            None => Self(Repr::One(first)),
            Some(second) => {
                let mut v = vec![first, second];
                v.extend(it);
                Self(Repr::Many(v.into_boxed_slice()))
            }
        }
    }
}

impl<'a> IntoIterator for &'a IpAddrs {
    type Item = &'a IpAddr;
    type IntoIter = std::slice::Iter<'a, IpAddr>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl PartialEq for IpAddrs {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for IpAddrs {}

impl PartialEq<Vec<IpAddr>> for IpAddrs {
    fn eq(&self, other: &Vec<IpAddr>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Hash for IpAddrs {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl fmt::Debug for IpAddrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }

    #[test]
    fn every_way_of_building_reads_the_same() {
        for n in 0..4u8 {
            let v: Vec<IpAddr> = (1..=n).map(ip).collect();
            let a = IpAddrs::from(v.clone());
            let b: IpAddrs = v.iter().copied().collect();
            let c = IpAddrs::from(v.as_slice());
            assert_eq!(a.as_slice(), v.as_slice());
            assert_eq!(a, b);
            assert_eq!(b, c);
            assert_eq!(a, v);
            assert_eq!(format!("{a:?}"), format!("{v:?}"));
        }
        assert_eq!(IpAddrs::from(ip(7)), vec![ip(7)]);
        assert!(IpAddrs::new().is_empty());
    }

    #[test]
    fn one_address_is_kept_inline() {
        assert!(matches!(IpAddrs::from(vec![ip(1)]).0, Repr::One(_)));
        assert!(matches!(
            [ip(1)].into_iter().collect::<IpAddrs>().0,
            Repr::One(_)
        ));
        assert!(std::mem::size_of::<IpAddrs>() <= 24);
    }
}
