// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {PeriodBitmap} from "../../contracts/libraries/PeriodBitmap.sol";
import {Test} from "../utils/Test.sol";

contract PeriodBitmapTest is Test {
    using PeriodBitmap for mapping(uint256 => uint256);

    mapping(uint256 => uint256) internal bitmap;
    mapping(uint256 => bool) internal naive;

    function test_PopCount() public pure {
        assertEq(PeriodBitmap.popCount(0), 0);
        assertEq(PeriodBitmap.popCount(1), 1);
        assertEq(PeriodBitmap.popCount(type(uint256).max), 256);
        assertEq(PeriodBitmap.popCount(type(uint256).max - 1), 255);
        assertEq(PeriodBitmap.popCount(uint256(1) << 255 | 1), 2);
    }

    function testFuzz_PopCount(uint256 x) public pure {
        uint256 expected;
        for (uint256 i; i < 256; ++i) {
            if (x & (uint256(1) << i) != 0) ++expected;
        }
        assertEq(PeriodBitmap.popCount(x), expected);
    }

    function test_CountInRange_AcrossWords() public {
        bitmap.set(255);
        bitmap.set(256);
        bitmap.set(511);
        bitmap.set(512);
        assertEq(bitmap.countInRange(0, 1000), 4);
        assertEq(bitmap.countInRange(255, 256), 2);
        assertEq(bitmap.countInRange(256, 511), 2);
        assertEq(bitmap.countInRange(257, 510), 0);
        assertEq(bitmap.countInRange(512, 512), 1);
        assertEq(bitmap.countInRange(600, 500), 0);
        assertTrue(bitmap.get(511));
        assertFalse(bitmap.get(510));
    }

    /// @dev Against a naive per-period count, over a window spanning three words.
    function testFuzz_CountInRange_MatchesNaive(uint256 seed, uint256 from, uint256 to) public {
        uint256 base = 19_000;
        for (uint256 i; i < 40; ++i) {
            uint256 period = base + uint256(keccak256(abi.encode(seed, i))) % 700;
            bitmap.set(period);
            naive[period] = true;
        }
        from = base + bound(from, 0, 700);
        to = base + bound(to, 0, 700);
        uint256 expected;
        for (uint256 p = from; p <= to; ++p) {
            if (naive[p]) ++expected;
        }
        assertEq(bitmap.countInRange(from, to), expected);
    }
}
