//! secp256k1 arithmetic on raw bytes, mirroring what the EVM (and the Adjudicator) can do.

use alloy::primitives::{keccak256, Address, U256};
use k256::elliptic_curve::ops::Reduce;
use k256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use k256::elliptic_curve::PrimeField;
use k256::{AffinePoint, EncodedPoint, FieldBytes, NonZeroScalar, ProjectivePoint, Scalar};

/// Length of a compressed point.
pub(crate) const POINT_LEN: usize = 33;

/// Decompresses a 33-byte SEC1 point (`0x02`/`0x03` prefix). `None` if the bytes are not a
/// compressed point on the curve (x not below the field modulus, no square root, ...).
pub(crate) fn decompress(bytes: &[u8]) -> Option<AffinePoint> {
    if bytes.len() != POINT_LEN || !(bytes[0] == 0x02 || bytes[0] == 0x03) {
        return None;
    }
    let encoded = EncodedPoint::from_bytes(bytes).ok()?;
    Option::from(AffinePoint::from_encoded_point(&encoded))
}

/// Compressed 33-byte encoding of a point (`None` for the identity).
pub(crate) fn compress(point: &ProjectivePoint) -> Option<[u8; POINT_LEN]> {
    let encoded = point.to_affine().to_encoded_point(true);
    encoded.as_bytes().try_into().ok()
}

/// Affine coordinates, big-endian (`None` for the identity).
pub(crate) fn coordinates(point: &ProjectivePoint) -> Option<([u8; 32], [u8; 32])> {
    let encoded = point.to_affine().to_encoded_point(false);
    match (encoded.x(), encoded.y()) {
        (Some(x), Some(y)) => Some(((*x).into(), (*y).into())),
        _ => None,
    }
}

/// Affine coordinates as `uint256`s; the identity is `(0, 0)` (it has no affine form, and `(0, 0)`
/// is not on the curve, so the contract cannot mistake it for a point).
pub(crate) fn coordinates_u256(point: &ProjectivePoint) -> (U256, U256) {
    match coordinates(point) {
        Some((x, y)) => (U256::from_be_bytes(x), U256::from_be_bytes(y)),
        None => (U256::ZERO, U256::ZERO),
    }
}

/// A scalar from 32 big-endian bytes; `None` unless the value is below the group order.
pub(crate) fn scalar_from_be(bytes: &[u8; 32]) -> Option<Scalar> {
    Option::from(Scalar::from_repr(FieldBytes::from(*bytes)))
}

/// umbral's `NonZeroCurveScalar::from_digest`: the 32-byte digest as a big-endian integer,
/// reduced modulo `n - 1`, plus 1.
pub(crate) fn nonzero_scalar_from_digest(digest: &[u8; 32]) -> Scalar {
    *<NonZeroScalar as Reduce<k256::U256>>::reduce_bytes(&FieldBytes::from(*digest))
}

/// Ethereum address of a public point: the last 20 bytes of `keccak256(x || y)`.
pub(crate) fn point_address(point: &ProjectivePoint) -> Option<Address> {
    let (x, y) = coordinates(point)?;
    let mut xy = [0u8; 64];
    xy[..32].copy_from_slice(&x);
    xy[32..].copy_from_slice(&y);
    Some(Address::from_slice(&keccak256(xy)[12..]))
}

/// The EVM's `ecrecover(prehash, 27 + y_odd, r, s)` as a point: `r^-1 (s R - e G)`, where `R` is
/// the point with x coordinate `r` and y parity `y_odd`, and `e` is the prehash reduced modulo the
/// order. Like the precompile, accepts any `s` in `[1, n)` (no low-s rule) and `r` in `[1, n)`.
pub(crate) fn ecrecover(
    prehash: &[u8; 32],
    r: &[u8; 32],
    s: &[u8; 32],
    y_odd: bool,
) -> Option<ProjectivePoint> {
    let r_scalar = scalar_from_be(r)?;
    let s_scalar = scalar_from_be(s)?;
    if bool::from(r_scalar.is_zero()) || bool::from(s_scalar.is_zero()) {
        return None;
    }
    let mut compressed = [0u8; POINT_LEN];
    compressed[0] = if y_odd { 0x03 } else { 0x02 };
    compressed[1..].copy_from_slice(r);
    let big_r = ProjectivePoint::from(decompress(&compressed)?);
    let e = <Scalar as Reduce<k256::U256>>::reduce_bytes(&FieldBytes::from(*prehash));
    let r_inv: Scalar = Option::from(r_scalar.invert())?;
    let q = (big_r * s_scalar - ProjectivePoint::GENERATOR * e) * r_inv;
    if q == ProjectivePoint::IDENTITY {
        None
    } else {
        Some(q)
    }
}

/// [`ecrecover`] as an address.
pub(crate) fn ecrecover_address(
    prehash: &[u8; 32],
    r: &[u8; 32],
    s: &[u8; 32],
    y_odd: bool,
) -> Option<Address> {
    point_address(&ecrecover(prehash, r, s, y_odd)?)
}
