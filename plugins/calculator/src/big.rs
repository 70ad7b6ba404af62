//! Unsigned integers of any size in base 10^9 (little-endian limbs, no high zero limbs; zero
//! is no limbs): only what exact decimal arithmetic needs. Decimal digits in and out are
//! trivial in this base, and division goes one decimal digit at a time (simple, and the
//! digit limits of the calculator keep it fast).

use std::cmp::Ordering;

const BASE: u64 = 1_000_000_000;

/// An unsigned integer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Big(Vec<u32>);

impl Big {
    /// Zero.
    pub fn zero() -> Self {
        Big(Vec::new())
    }

    /// `n`.
    pub fn from_u64(mut n: u64) -> Self {
        let mut v = Vec::new();
        while n > 0 {
            v.push((n % BASE) as u32);
            n /= BASE;
        }
        Big(v)
    }

    /// Whether it is zero.
    pub fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of limbs (a measure of the work an operation costs).
    pub fn limbs(&self) -> usize {
        self.0.len()
    }

    /// `digits`, ASCII decimal digits (at least one; leading zeros allowed).
    pub fn from_digits(digits: &[u8]) -> Self {
        let mut v = Vec::with_capacity(digits.len() / 9 + 1);
        let mut end = digits.len();
        while end > 0 {
            let start = end.saturating_sub(9);
            let limb = digits[start..end]
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
            v.push(limb);
            end = start;
        }
        let mut b = Big(v);
        b.trim();
        b
    }

    /// The decimal digits ("0" for zero).
    pub fn to_digits(&self) -> String {
        let Some((top, rest)) = self.0.split_last() else {
            return "0".into();
        };
        let mut s = top.to_string();
        for limb in rest.iter().rev() {
            s.push_str(&format!("{limb:09}"));
        }
        s
    }

    /// The number of decimal digits (1 for zero).
    pub fn digit_count(&self) -> usize {
        match self.0.last() {
            None => 1,
            Some(top) => (self.0.len() - 1) * 9 + top.to_string().len(),
        }
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    /// `self + other`.
    pub fn add(&self, other: &Big) -> Big {
        let (long, short) = if self.0.len() >= other.0.len() {
            (self, other)
        } else {
            (other, self)
        };
        let mut out = Vec::with_capacity(long.0.len() + 1);
        let mut carry = 0u64;
        for (i, &l) in long.0.iter().enumerate() {
            let s = u64::from(l) + u64::from(short.0.get(i).copied().unwrap_or(0)) + carry;
            out.push((s % BASE) as u32);
            carry = s / BASE;
        }
        if carry > 0 {
            out.push(carry as u32);
        }
        Big(out)
    }

    /// `self - other`; `other` must not be larger.
    pub fn sub(&self, other: &Big) -> Big {
        debug_assert!(self.cmp(other) != Ordering::Less);
        let mut out = Vec::with_capacity(self.0.len());
        let mut borrow = 0i64;
        for (i, &l) in self.0.iter().enumerate() {
            let mut d = i64::from(l) - i64::from(other.0.get(i).copied().unwrap_or(0)) - borrow;
            borrow = 0;
            if d < 0 {
                d += BASE as i64;
                borrow = 1;
            }
            out.push(d as u32);
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    /// `self * other` (schoolbook).
    pub fn mul(&self, other: &Big) -> Big {
        if self.is_zero() || other.is_zero() {
            return Big::zero();
        }
        let mut out = vec![0u64; self.0.len() + other.0.len() + 1];
        for (i, &a) in self.0.iter().enumerate() {
            let mut carry = 0u64;
            for (j, &b) in other.0.iter().enumerate() {
                let t = out[i + j] + u64::from(a) * u64::from(b) + carry;
                out[i + j] = t % BASE;
                carry = t / BASE;
            }
            let mut k = i + other.0.len();
            while carry > 0 {
                let t = out[k] + carry;
                out[k] = t % BASE;
                carry = t / BASE;
                k += 1;
            }
        }
        let mut b = Big(out.into_iter().map(|x| x as u32).collect());
        b.trim();
        b
    }

    /// `self * m + add` for small `m` and `add`.
    fn mul_small_add(&self, m: u32, add: u32) -> Big {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut carry = u64::from(add);
        for &l in &self.0 {
            let t = u64::from(l) * u64::from(m) + carry;
            out.push((t % BASE) as u32);
            carry = t / BASE;
        }
        while carry > 0 {
            out.push((carry % BASE) as u32);
            carry /= BASE;
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    /// `self * 10^n`.
    pub fn shl10(&self, n: usize) -> Big {
        if self.is_zero() {
            return Big::zero();
        }
        let (limbs, digits) = (n / 9, n % 9);
        let mut v = vec![0u32; limbs];
        v.extend_from_slice(&self.0);
        Big(v).mul_small_add(10u32.pow(digits as u32), 0)
    }

    /// `(self / 10, self % 10)`.
    pub fn div10(&self) -> (Big, u32) {
        let mut out = vec![0u32; self.0.len()];
        let mut rem = 0u64;
        for (i, &l) in self.0.iter().enumerate().rev() {
            let cur = rem * BASE + u64::from(l);
            out[i] = (cur / 10) as u32;
            rem = cur % 10;
        }
        let mut b = Big(out);
        b.trim();
        (b, rem as u32)
    }

    /// `(self / d, self % d)`; `d` must not be zero. One decimal digit of the quotient at a
    /// time: at most 9 comparisons and subtractions of `d`'s size per digit.
    pub fn divrem(&self, d: &Big) -> (Big, Big) {
        debug_assert!(!d.is_zero());
        if self.cmp(d) == Ordering::Less {
            return (Big::zero(), self.clone());
        }
        let digits = self.to_digits();
        // The first digits of `d`'s length less one are below `d`: no quotient digit there.
        let head = d.digit_count() - 1;
        let (first, rest) = digits.as_bytes().split_at(head);
        let mut q = Vec::with_capacity(rest.len());
        let mut rem = Big::from_digits(first);
        for &c in rest {
            rem = rem.mul_small_add(10, u32::from(c - b'0'));
            let mut qd = b'0';
            while rem.cmp(d) != Ordering::Less {
                rem = rem.sub(d);
                qd += 1;
            }
            q.push(qd);
        }
        (Big::from_digits(&q), rem)
    }
}

impl Ord for Big {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }
}

impl PartialOrd for Big {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(s: &str) -> Big {
        Big::from_digits(s.as_bytes())
    }

    #[test]
    fn digits_round_trip() {
        for s in [
            "0",
            "1",
            "999999999",
            "1000000000",
            "123456789012345678901234567890",
        ] {
            assert_eq!(big(s).to_digits(), s);
            assert_eq!(big(s).digit_count(), s.len());
        }
        assert_eq!(big("000120").to_digits(), "120");
        assert_eq!(Big::from_u64(u64::MAX).to_digits(), u64::MAX.to_string());
    }

    #[test]
    fn arithmetic_matches_u128() {
        let xs: [u128; 8] = [
            0,
            1,
            9,
            10,
            999_999_999,
            1_000_000_000,
            123_456_789_123_456_789,
            u64::MAX as u128,
        ];
        for &a in &xs {
            for &b in &xs {
                let (ba, bb) = (big(&a.to_string()), big(&b.to_string()));
                assert_eq!(ba.add(&bb).to_digits(), (a + b).to_string());
                assert_eq!(ba.mul(&bb).to_digits(), (a * b).to_string());
                if a >= b {
                    assert_eq!(ba.sub(&bb).to_digits(), (a - b).to_string());
                }
                if let (Some(q), Some(r)) = (a.checked_div(b), a.checked_rem(b)) {
                    let (bq, br) = ba.divrem(&bb);
                    assert_eq!(
                        (bq.to_digits(), br.to_digits()),
                        (q.to_string(), r.to_string())
                    );
                }
                assert_eq!(ba.cmp(&bb), a.cmp(&b));
            }
        }
        assert_eq!(big("12").shl10(10).to_digits(), "120000000000");
        assert_eq!(big("1234").div10(), (big("123"), 4));
    }

    #[test]
    fn big_division_is_exact() {
        // (10^40 + 7) * (10^25 + 3) + 5, divided by 10^25 + 3.
        let a = big(&format!("1{}7", "0".repeat(39)));
        let b = big(&format!("1{}3", "0".repeat(24)));
        let n = a.mul(&b).add(&Big::from_u64(5));
        let (q, r) = n.divrem(&b);
        assert_eq!((q, r), (a, Big::from_u64(5)));
    }
}
