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

    /// @dev Restaking, end to end: the reward of a period is locked into the stake and counted in
    /// the next commitment (whether the worker's commitment or a `mint` before it minted it), so the
    /// next period's reward is `(locked + restaked) * issuance / lockedTotal` exactly, with the
    /// restaked part capped at `maxStake`.
    function testFuzz_ReStakedRewardCountsInTheNextPeriod(
        uint96[4] memory amounts,
        uint8 reStakeMask,
        uint8 mintFirstMask
    ) public {
        address[4] memory stakers;
        uint256[4] memory locked;
        uint256 lockedTotal;
        for (uint256 i; i < 4; ++i) {
            locked[i] = bound(amounts[i], MIN_STAKE, MAX_STAKE);
            stakers[i] = newNode(string.concat("s", vm.toString(i)), locked[i], 60);
            if ((reStakeMask >> i) & 1 == 1) {
                vm.prank(stakers[i]);
                escrow.setReStake(true);
            }
            commit(stakers[i]);
            lockedTotal += locked[i];
        }
        uint256 first = currentPeriod() + 1;
        uint256 issuance = RESERVE * ISSUANCE_RATE / 1e18;
        assertEq(escrow.getPeriodTotals(first).lockedTotal, lockedTotal);
        advancePeriods(2); // `first` has ended

        uint256 next = currentPeriod() + 1;
        uint256 nextTotal;
        uint256[4] memory nextLocked;
        for (uint256 i; i < 4; ++i) {
            uint256 reward = locked[i] * issuance / lockedTotal;
            uint256 reStaked = (reStakeMask >> i) & 1 == 1 ? _min(reward, MAX_STAKE - locked[i]) : 0;
            if ((mintFirstMask >> i) & 1 == 1) {
                vm.prank(stakers[i]);
                assertEq(escrow.mint(), reward, "reward != locked * issuance / lockedTotal");
            }
            commit(stakers[i]);
            nextLocked[i] = locked[i] + reStaked;
            nextTotal += nextLocked[i];
            assertEq(escrow.stakeOf(stakers[i]), locked[i] + reward);
            assertEq(
                escrow.stakeOf(stakers[i]) - escrow.heldStakeOf(stakers[i]), reward - reStaked, "unlocked"
            );
            assertEq(escrow.lockedAt(stakers[i], next), nextLocked[i]);
            assertEq(
                escrow.getStakerInfo(stakers[i]).commitLocked[0], nextLocked[i], "restaked not committed"
            );
            assertEq(escrow.getStakerInfo(stakers[i]).commitPeriods[0], next);
        }
        assertEq(escrow.getPeriodTotals(next).lockedTotal, nextTotal, "restaked not in lockedTotal");
        uint256 nextIssuance = (RESERVE - issuance) * ISSUANCE_RATE / 1e18;
        assertEq(escrow.getPeriodTotals(next).issuance, nextIssuance);

        advancePeriods(2); // `next` has ended
        uint256 minted;
        for (uint256 i; i < 4; ++i) {
            vm.prank(stakers[i]);
            uint256 reward = escrow.mint();
            assertEq(
                reward,
                nextLocked[i] * nextIssuance / nextTotal,
                "reward != (locked + restaked) * rate / total"
            );
            minted += reward;
        }
        assertLe(minted, nextIssuance);
        assertGe(minted + 4, nextIssuance, "at most one wei of rounding per staker");
    }

    function _min(uint256 a, uint256 b) internal pure returns (uint256) {
        return a < b ? a : b;
    }
}
