// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {PolicyManager} from "../../contracts/PolicyManager.sol";
import {Base} from "../utils/Base.sol";
import {CompoundingHandler} from "./handlers/CompoundingHandler.sol";
import {KMSHandler} from "./handlers/KMSHandler.sol";

/// @notice System invariants of the escrow and the policy manager under random sequences of
/// every user action (see README.md beside this file for the list in words). A handler call that
/// reverts fails the run: the handler guards every expected refusal, so a revert is one of its own
/// checks failing.
/// forge-config: default.invariant.fail-on-revert = true
contract InvariantsTest is Base {
    KMSHandler internal handler;
    CompoundingHandler internal compounding;

    function setUp() public override {
        super.setUp();
        handler = new KMSHandler(token, escrow, policyManager, adjudicator);
        compounding = new CompoundingHandler(token, escrow, handler);
        handler.setReStakeExpectations(compounding);
        targetContract(address(handler));
        targetContract(address(compounding));
        bytes4[] memory selectors = new bytes4[](19);
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
        selectors[15] = KMSHandler.rotateWorker.selector;
        selectors[16] = KMSHandler.commit.selector; // commitments are the heartbeat: twice the weight
        selectors[17] = KMSHandler.extendPolicy.selector;
        selectors[18] = KMSHandler.revokeBySignature.selector;
        targetSelector(FuzzSelector(address(handler), selectors));
        bytes4[] memory compounds = new bytes4[](4);
        compounds[0] = CompoundingHandler.lock.selector;
        compounds[1] = CompoundingHandler.increase.selector;
        compounds[2] = CompoundingHandler.increaseFromUnlocked.selector;
        compounds[3] = CompoundingHandler.setReStake.selector;
        targetSelector(FuzzSelector(address(compounding), compounds));
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

    /// Each stake is exactly deposits (new sub-stakes and top-ups from the wallet) - withdrawals +
    /// rewards - penalties (never negative): locking, topping up from the unlocked balance and
    /// restaking move no token.
    function invariant_StakeAccounting() public view {
        for (uint256 i; i < handler.stakerCount(); ++i) {
            address staker = handler.stakers(i);
            uint256 expected = handler.ghostDeposited(staker) + compounding.ghostIncreased(staker)
                + handler.ghostRewards(staker) - handler.ghostWithdrawn(staker)
                - handler.ghostPenalties(staker);
            assertEq(escrow.stakeOf(staker), expected, "stake != ghost accounting");
            assertEq(escrow.getStakerInfo(staker).rewardsMinted, handler.ghostRewards(staker));
        }
    }

    /// A stake never falls below what the escrow holds for the evidence window, which is never
    /// below what is locked now: neither withdrawals nor slashes leave a held token unbacked.
    function invariant_StakeCoversHeld() public view {
        uint256 current = escrow.currentPeriod();
        for (uint256 i; i < handler.stakerCount(); ++i) {
            address staker = handler.stakers(i);
            uint256 held = escrow.heldStakeOf(staker);
            assertGe(escrow.stakeOf(staker), held, "stake below held");
            assertGe(held, escrow.lockedAt(staker, current), "held below locked");
        }
    }

    /// Each staker's current worker is bonded to it (an open bond since the staker's bonded
    /// period), and every worker rotated out keeps its closed bond record to the same staker.
    function invariant_WorkerBonds() public view {
        for (uint256 i; i < handler.stakerCount(); ++i) {
            address staker = handler.stakers(i);
            address worker = handler.workers(i);
            if (escrow.workerOf(staker) == address(0)) {
                assertEq(escrow.stakerOf(worker), address(0), "a worker bonded to a staker without one");
                continue;
            }
            assertEq(escrow.workerOf(staker), worker, "the handler lost track of the worker");
            assertEq(escrow.stakerOf(worker), staker, "the current worker answers for another stake");
            (address bondStaker, uint256 first, uint256 last) = escrow.workerBond(worker);
            assertEq(bondStaker, staker);
            assertEq(first, escrow.getStakerInfo(staker).workerBondedPeriod);
            assertEq(last, escrow.OPEN_BOND());
        }
        for (uint256 i; i < handler.retiredWorkerCount(); ++i) {
            (address worker, address staker) = handler.retiredWorkers(i);
            assertEq(escrow.stakerOf(worker), address(0), "a rotated-out worker is still bonded");
            (address bondStaker, uint256 first, uint256 last) = escrow.workerBond(worker);
            assertEq(bondStaker, staker, "a rotated-out worker's record lost its staker");
            assertLe(first, last);
            assertLe(last, escrow.currentPeriod());
        }
    }

    /// The policy manager's copy of each staker's worker (what a fee withdrawal is checked
    /// against) is the escrow's, and a staker with a worker never has its fee slot freed, however
    /// often it withdraws.
    function invariant_WorkerCopies() public view {
        for (uint256 i; i < handler.stakerCount(); ++i) {
            address staker = handler.stakers(i);
            address worker = escrow.workerOf(staker);
            assertEq(policyManager.recordedWorkerOf(staker), worker, "the worker copy is stale");
            if (worker == address(0)) continue;
            // `feeAccounts[staker]`, slot 5 of the PolicyManager (see test/unit/PolicyManager.t.sol).
            bytes32 slot = keccak256(abi.encode(staker, uint256(5)));
            assertTrue(vm.load(address(policyManager), slot) != 0, "a running node's fee slot is free");
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

    /// The policy manager holds exactly the nodes' unwithdrawn fees plus every policy's open
    /// obligation: for each arrangement of a live policy, the periods after `refundedThrough` that
    /// the node has not committed to, at the policy's rate (what a refund or revocation would pay).
    function invariant_EthExactAccounting() public view {
        uint256 owed;
        for (uint256 i; i < handler.stakerCount(); ++i) {
            owed += policyManager.fees(handler.stakers(i));
        }
        for (uint256 p; p < handler.policyCount(); ++p) {
            (bytes16 id, address[] memory nodes) = handler.policyAt(p);
            PolicyManager.PolicyView memory policy = policyManager.getPolicy(id);
            if (policy.revoked || policy.refundedThrough >= policy.lastPeriod) continue;
            for (uint256 j; j < nodes.length; ++j) {
                if (policyManager.arrangementRevoked(id, nodes[j])) continue;
                uint256 committed =
                    policyManager.committedCount(nodes[j], policy.refundedThrough + 1, policy.lastPeriod);
                owed += (policy.lastPeriod - policy.refundedThrough - committed) * policy.feeRate;
            }
        }
        assertEq(address(policyManager).balance, owed, "held ETH != fees + open obligations");
    }

    /// Restaked rewards are rewards (never more than minted), and no stake is locked beyond the
    /// maximum, restaked rewards included (the handler checks each restake: locked into the
    /// sub-stake that ends last and counted in the next period's locked amount and commitment).
    function invariant_ReStakedRewardsLocked() public view {
        uint256 current = escrow.currentPeriod();
        for (uint256 i; i < handler.stakerCount(); ++i) {
            address staker = handler.stakers(i);
            assertLe(handler.ghostReStaked(staker), handler.ghostRewards(staker), "restaked more than minted");
            assertLe(escrow.lockedAt(staker, current), MAX_STAKE, "locked above the maximum stake");
            assertEq(escrow.reStakeEnabled(staker), compounding.ghostReStake(staker));
        }
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
