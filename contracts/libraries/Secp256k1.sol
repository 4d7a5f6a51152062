// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

/// @title Secp256k1
/// @notice The few secp256k1 checks the Adjudicator needs, all without modular inversion:
/// points on the curve, a point against its compressed form, a scalar product against a claimed
/// result (with the `ecrecover` precompile), and an affine sum against a claimed result.
library Secp256k1 {
    /// @notice The field prime.
    uint256 internal constant P = 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f;

    /// @notice The group order.
    uint256 internal constant N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141;

    /// @notice Whether `(x, y)` is an affine point of the curve `y^2 = x^3 + 7`.
    function isOnCurve(uint256 x, uint256 y) internal pure returns (bool) {
        if (x >= P || y >= P) return false;
        return mulmod(y, y, P) == addmod(mulmod(mulmod(x, x, P), x, P), 7, P);
    }

    /// @notice Whether `q == k * p`, for a point `p` and a claimed result `q`, both affine on the
    /// curve. `ecrecover(0, v, r, s)` returns the address of `r^-1 * s * R`, where `R` is the point
    /// with `x = r` and the y parity of `v`; with `r = p.x` and `s = k * p.x` that is `k * p`.
    /// @dev Costs one `ecrecover` (3,000 gas) and a keccak, instead of a scalar multiplication.
    function isProduct(uint256 px, uint256 py, uint256 k, uint256 qx, uint256 qy)
        internal
        pure
        returns (bool)
    {
        // ecrecover needs 0 < r < N and 0 < s < N. A point with x >= N exists, but finding one
        // that is also a node's honest output is as hard as breaking the curve.
        if (px == 0 || px >= N) return false;
        uint256 s = mulmod(px, k, N);
        if (s == 0) return false;
        uint8 v = py & 1 == 0 ? 27 : 28;
        address recovered = ecrecover(bytes32(0), v, bytes32(px), bytes32(s));
        return recovered != address(0) && recovered == toAddress(qx, qy);
    }

    /// @notice Whether `c == a + b` for affine points on the curve (never the point at infinity).
    /// @dev With the slope as a fraction `l / d`, multiplying the affine addition formulas through
    /// by `d^2` and `d` removes the division.
    function isSum(uint256 ax, uint256 ay, uint256 bx, uint256 by, uint256 cx, uint256 cy)
        internal
        pure
        returns (bool)
    {
        (uint256 d, uint256 l, bool finite) = _slope(ax, ay, bx, by);
        if (!finite) return false; // a + b is the point at infinity, which `c` cannot be
        return _sumXMatches(ax, bx, cx, d, l) && _sumYMatches(ax, ay, cx, cy, d, l);
    }

    /// @dev The slope of the line through `a` and `b` as a fraction `l / d` (the tangent when they
    /// are equal); `finite` is false when `b == -a`.
    function _slope(uint256 ax, uint256 ay, uint256 bx, uint256 by)
        private
        pure
        returns (uint256 d, uint256 l, bool finite)
    {
        if (ax != bx) return (addmod(bx, P - ax, P), addmod(by, P - ay, P), true);
        if (ay == by && ay != 0) return (mulmod(2, ay, P), mulmod(3, mulmod(ax, ax, P), P), true);
        return (0, 0, false);
    }

    /// @dev `cx * d^2 == l^2 - (ax + bx) * d^2`.
    function _sumXMatches(uint256 ax, uint256 bx, uint256 cx, uint256 d, uint256 l)
        private
        pure
        returns (bool)
    {
        uint256 d2 = mulmod(d, d, P);
        return mulmod(cx, d2, P) == addmod(mulmod(l, l, P), P - mulmod(addmod(ax, bx, P), d2, P), P);
    }

    /// @dev `cy * d == l * (ax - cx) - ay * d`.
    function _sumYMatches(uint256 ax, uint256 ay, uint256 cx, uint256 cy, uint256 d, uint256 l)
        private
        pure
        returns (bool)
    {
        return mulmod(cy, d, P) == addmod(mulmod(l, addmod(ax, P - cx, P), P), P - mulmod(ay, d, P), P);
    }

    /// @notice The Ethereum address of a public key point.
    function toAddress(uint256 x, uint256 y) internal pure returns (address) {
        return address(uint160(uint256(keccak256(abi.encodePacked(x, y)))));
    }
}
