//! A line-for-line port of `contracts/libraries/Secp256k1.sol` on `uint256`s, so that
//! [`Evidence::outcome`](crate::evidence::Evidence::outcome) decides with the contract's own
//! formulas (no modular inverse, the `ecrecover` trick for products) rather than with k256's group
//! law. The tests check both agree.

use alloy::primitives::{keccak256, Address, U256};

use crate::curve::ecrecover_address;

/// The field prime `p`.
pub(crate) const P: U256 = U256::from_be_bytes(alloy::primitives::hex!(
    "fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f"
));

/// The group order `n`.
pub(crate) const N: U256 = U256::from_be_bytes(alloy::primitives::hex!(
    "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
));

/// `n / 2` (rounded down): OpenZeppelin's `ECDSA.tryRecover` rejects an `s` above it.
pub(crate) const HALF_N: U256 = U256::from_be_bytes(alloy::primitives::hex!(
    "7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0"
));

/// `isOnCurve`: whether `(x, y)` is an affine point of `y^2 = x^3 + 7` (both below `p`).
pub(crate) fn is_on_curve(x: U256, y: U256) -> bool {
    if x >= P || y >= P {
        return false;
    }
    y.mul_mod(y, P) == x.mul_mod(x, P).mul_mod(x, P).add_mod(U256::from(7), P)
}

/// `isProduct`: whether `q == k * p`, through `ecrecover(0, 27 + (py & 1), px, px * k mod n)`
/// compared with the address of `q`. False when `px` is 0 or not below `n` (`ecrecover` refuses
/// such an `r`).
pub(crate) fn is_product(px: U256, py: U256, k: U256, qx: U256, qy: U256) -> bool {
    if px.is_zero() || px >= N {
        return false;
    }
    let s = px.mul_mod(k, N);
    if s.is_zero() {
        return false;
    }
    match ecrecover_address(
        &[0u8; 32],
        &px.to_be_bytes::<32>(),
        &s.to_be_bytes::<32>(),
        py.bit(0),
    ) {
        Some(recovered) => recovered != Address::ZERO && recovered == to_address(qx, qy),
        None => false,
    }
}

/// `isSum`: whether `c == a + b` for affine points (never the point at infinity).
///
/// The inputs are points whose coordinates the contract has already bound below `p` (curve checks,
/// or the product check, which only a keccak second preimage could pass with other values), so
/// `p - x` never underflows here; Solidity's checked `P - x` would revert if it did.
pub(crate) fn is_sum(ax: U256, ay: U256, bx: U256, by: U256, cx: U256, cy: U256) -> bool {
    let Some((d, l)) = slope(ax, ay, bx, by) else {
        return false; // a + b is the point at infinity, which `c` cannot be
    };
    sum_x_matches(ax, bx, cx, d, l) && sum_y_matches(ax, ay, cx, cy, d, l)
}

fn neg(a: U256) -> U256 {
    P.wrapping_sub(a)
}

/// The slope `l / d` of the line through `a` and `b` (the tangent when equal); `None` when
/// `b == -a`.
fn slope(ax: U256, ay: U256, bx: U256, by: U256) -> Option<(U256, U256)> {
    if ax != bx {
        return Some((bx.add_mod(neg(ax), P), by.add_mod(neg(ay), P)));
    }
    if ay == by && !ay.is_zero() {
        return Some((
            U256::from(2).mul_mod(ay, P),
            U256::from(3).mul_mod(ax.mul_mod(ax, P), P),
        ));
    }
    None
}

/// `cx * d^2 == l^2 - (ax + bx) * d^2`.
fn sum_x_matches(ax: U256, bx: U256, cx: U256, d: U256, l: U256) -> bool {
    let d2 = d.mul_mod(d, P);
    cx.mul_mod(d2, P)
        == l.mul_mod(l, P)
            .add_mod(neg(ax.add_mod(bx, P).mul_mod(d2, P)), P)
}

/// `cy * d == l * (ax - cx) - ay * d`.
fn sum_y_matches(ax: U256, ay: U256, cx: U256, cy: U256, d: U256, l: U256) -> bool {
    cy.mul_mod(d, P)
        == l.mul_mod(ax.add_mod(neg(cx), P), P)
            .add_mod(neg(ay.mul_mod(d, P)), P)
}

/// `toAddress`: the last 20 bytes of `keccak256(x || y)`.
pub(crate) fn to_address(x: U256, y: U256) -> Address {
    let mut xy = [0u8; 64];
    xy[..32].copy_from_slice(&x.to_be_bytes::<32>());
    xy[32..].copy_from_slice(&y.to_be_bytes::<32>());
    Address::from_slice(&keccak256(xy)[12..])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::curve::coordinates_u256;
    use k256::{NonZeroScalar, ProjectivePoint, Scalar};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn random_point(rng: &mut ChaCha20Rng) -> ProjectivePoint {
        ProjectivePoint::GENERATOR * *NonZeroScalar::random(rng)
    }

    fn u256(s: &Scalar) -> U256 {
        U256::from_be_slice(&s.to_bytes())
    }

    #[test]
    fn constants() {
        assert_eq!(HALF_N, N >> 1);
        let (gx, gy) = coordinates_u256(&ProjectivePoint::GENERATOR);
        assert!(is_on_curve(gx, gy));
        assert!(!is_on_curve(gx, gy + U256::from(1)));
        assert!(!is_on_curve(gx + P, gy));
        // -1 mod n is n - 1.
        assert_eq!(u256(&-Scalar::ONE), N - U256::from(1));
    }

    #[test]
    fn products_and_sums_follow_the_group_law() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        for _ in 0..16 {
            let (a, b) = (random_point(&mut rng), random_point(&mut rng));
            let k = *NonZeroScalar::random(&mut rng);
            let (ax, ay) = coordinates_u256(&a);
            let (bx, by) = coordinates_u256(&b);
            let (kx, ky) = coordinates_u256(&(a * k));
            let (sx, sy) = coordinates_u256(&(a + b));
            let (dx, dy) = coordinates_u256(&a.double());
            if ax < N {
                assert!(is_product(ax, ay, u256(&k), kx, ky));
                assert!(!is_product(ax, ay, u256(&k), kx, ky + U256::from(1)));
                assert!(!is_product(ax, ay, u256(&(k + Scalar::ONE)), kx, ky));
            }
            assert!(is_sum(ax, ay, bx, by, sx, sy));
            assert!(!is_sum(ax, ay, bx, by, sx, P - sy));
            assert!(!is_sum(ax, ay, bx, by, dx, dy));
            assert!(is_sum(ax, ay, ax, ay, dx, dy));
            // a + (-a) is the point at infinity.
            assert!(!is_sum(ax, ay, ax, P - ay, U256::ZERO, U256::ZERO));
        }
    }
}
