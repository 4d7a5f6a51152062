// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Base} from "../utils/Base.sol";
import {KMSHandler} from "./handlers/KMSHandler.sol";

/// @notice System invariants of the escrow and the policy manager under random sequences of
/// every user action (see README.md beside this file for the list in words).
contract InvariantsTest is Base {
    KMSHandler internal handler;

    function setUp() public override {
        super.setUp();
        handler = new KMSHandler(token, escrow, policyManager, adjudicator);
        targetContract(address(handler));
        bytes4[] memory selectors = new bytes4[](16);
        selectors[0] = KMSHandler.advance.selector;
        selectors[1] = KMSHandler.deposit.selector;
        selectors[2] = KMSHandler.prolong.selector;
        selectors[3] = KMSHandler.divide.selector;
        selectors[4] = KMSHandler.merge.selector;
        selectors[5] = KMSHandler.withdraw.selector;
        selectors[6] = KMSHandler.commit.selector;
        selectors[7] = KMSHandler.mint.selector;
        selectors[8] = KMSHandler.slash.selector;
        selectors[9] = KMSHandler.createPolicy.selector;
        selectors[10] = KMSHandler.revokePolicy.selector;
        selectors[11] = KMSHandler.revokeArrangement.selector;
        selectors[12] = KMSHandler.refund.selector;
        selectors[13] = KMSHandler.withdrawFees.selector;
        selectors[14] = KMSHandler.processRateEndings.selector;
        selectors[15] = KMSHandler.commit.selector; // commitments are the heartbeat: twice the weight
        targetSelector(FuzzSelector(address(handler), selectors));
    }

    /// Token conservation: supply = initial + rewards - burnt, within the cap; the escrow holds
    /// exactly its stakers' stakes.
    function invariant_TokenConservation() public view {
        assertEq(token.totalSupply(), INITIAL_SUPPLY + handler.ghostRewardsTotal() - handler.ghostBurnt());
        assertLe(token.totalSupply(), token.cap());
        uint256 stakes;
        for (uint256 i; i < handler.stakerCount(); ++i) {
            stakes += escrow.stakeOf(handler.stakers(i));
        }
        assertEq(token.balanceOf(address(escrow)), stakes, "escrow balance != sum of stakes");
    }

    /// The reserve is never exceeded: rewards minted <= issuance allocated = reserve + burnt - unallocated.
    function invariant_RewardsWithinAllocatedIssuance() public view {
        uint256 allocated = RESERVE + handler.ghostBurnt() - escrow.unallocatedReserve();
        assertLe(handler.ghostRewardsTotal(), allocated);
    }

    /// Each stake is exactly deposits - withdrawals + rewards - penalties (never negative), and
    /// never less than what is locked now: locked tokens cannot be withdrawn.
    function invariant_StakeAccounting() public view {
        uint256 current = escrow.currentPeriod();
        for (uint256 i; i < handler.stakerCount(); ++i) {
            address staker = handler.stakers(i);
            uint256 expected = handler.ghostDeposited(staker) + handler.ghostRewards(staker)
                - handler.ghostWithdrawn(staker) - handler.ghostPenalties(staker);
            assertEq(escrow.stakeOf(staker), expected, "stake != ghost accounting");
            assertGe(escrow.stakeOf(staker), escrow.lockedAt(staker, current), "stake below locked");
            assertEq(escrow.getStakerInfo(staker).rewardsMinted, handler.ghostRewards(staker));
        }
    }

    /// ETH conservation in the policy manager: paid = refunded + withdrawn + held, and what is
    /// held covers every node's accrued fees.
    function invariant_EthConservation() public view {
        assertEq(
            handler.ghostPaid(),
            handler.ghostRefunded() + handler.ghostFeesWithdrawn() + address(policyManager).balance,
            "ETH in != ETH out + held"
        );
        uint256 accrued;
        for (uint256 i; i < handler.stakerCount(); ++i) {
            accrued += policyManager.fees(handler.stakers(i));
        }
        assertGe(address(policyManager).balance, accrued, "held ETH does not cover accrued fees");
    }

    /// Commitments never count more than the committed stakers have locked in their period.
    function invariant_CommitmentsWithinLocked() public view {
        for (uint256 i; i < handler.stakerCount(); ++i) {
            address staker = handler.stakers(i);
            uint256[2] memory periods = escrow.getStakerInfo(staker).commitPeriods;
            uint256[2] memory locked = escrow.getStakerInfo(staker).commitLocked;
            for (uint256 j; j < 2; ++j) {
                if (periods[j] >= escrow.currentPeriod()) {
                    assertLe(locked[j], escrow.lockedAt(staker, periods[j]), "commitment above locked");
                    assertLe(locked[j], escrow.getPeriodTotals(periods[j]).lockedTotal);
                }
            }
        }
    }
}
