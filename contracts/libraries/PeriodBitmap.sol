// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

/// @title PeriodBitmap
/// @notice A set of periods packed 256 to a storage word: marking a period costs one SSTORE, and
/// counting the marked periods of a range costs one SLOAD and a popcount per 256 periods.
library PeriodBitmap {
    /// @notice Marks `period`.
    function set(mapping(uint256 => uint256) storage bitmap, uint256 period) internal {
        bitmap[period >> 8] |= uint256(1) << (period & 0xff);
    }

    /// @notice Whether `period` is marked.
    function get(mapping(uint256 => uint256) storage bitmap, uint256 period) internal view returns (bool) {
        return bitmap[period >> 8] & (uint256(1) << (period & 0xff)) != 0;
    }

    /// @notice The number of marked periods in `[from, to]` (zero when `from > to`).
    function countInRange(mapping(uint256 => uint256) storage bitmap, uint256 from, uint256 to)
        internal
        view
        returns (uint256 count)
    {
        if (from > to) return 0;
        uint256 firstWord = from >> 8;
        uint256 lastWord = to >> 8;
        for (uint256 word = firstWord; word <= lastWord; ++word) {
            uint256 bits = bitmap[word];
            if (bits == 0) continue;
            uint256 low = word == firstWord ? from & 0xff : 0;
            uint256 high = word == lastWord ? to & 0xff : 0xff;
            // Keep bits low..high: shift the range to the top, then back down to the bottom.
            bits = (bits << (0xff - high)) >> (0xff - high + low);
            count += popCount(bits);
        }
    }

    /// @notice The number of set bits of `x` (SWAR: constant gas).
    function popCount(uint256 x) internal pure returns (uint256) {
        if (x == type(uint256).max) return 256; // the byte sum below would wrap at 256
        unchecked {
            x = x - ((x >> 1) & 0x5555555555555555555555555555555555555555555555555555555555555555);
            x = (x & 0x3333333333333333333333333333333333333333333333333333333333333333)
                + ((x >> 2) & 0x3333333333333333333333333333333333333333333333333333333333333333);
            x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f;
            return (x * 0x0101010101010101010101010101010101010101010101010101010101010101) >> 248;
        }
    }
}
