// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Base} from "../utils/Base.sol";

/// @notice The mining formula against an independent computation, for random stakes.
contract RewardsFuzzTest is Base {
    function testFuzz_RewardIsLockedTimesIssuanceOverLockedTotal(uint96[4] memory amounts, uint256 committers)
        public
    {
        committers = bound(committers, 1, 4);
        address[4] memory stakers;
        uint256 lockedTotal;
        for (uint256 i; i < 4; ++i) {
            uint256 amount = bound(amounts[i], MIN_STAKE, MAX_STAKE);
            amounts[i] = uint96(amount);
            stakers[i] = newNode(string.concat("s", vm.toString(i)), amount, 60);
            if (i < committers) {
                commit(stakers[i]);
                lockedTotal += amount;
            }
        }
        uint256 period = currentPeriod() + 1;
        uint256 issuance = RESERVE * ISSUANCE_RATE / 1e18;
        assertEq(escrow.getPeriodTotals(period).lockedTotal, lockedTotal);
        advancePeriods(2);
        uint256 minted;
        for (uint256 i; i < 4; ++i) {
            vm.prank(stakers[i]);
            uint256 reward = escrow.mint();
            uint256 expected = i < committers ? uint256(amounts[i]) * issuance / lockedTotal : 0;
            assertEq(reward, expected, "reward != locked * issuance / lockedTotal");
            minted += reward;
        }
        assertLe(minted, issuance);
        assertGe(minted + committers, issuance, "at most one wei of rounding per staker");
    }
}
