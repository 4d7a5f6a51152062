// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {PolicyManager} from "../../contracts/PolicyManager.sol";
import {Errors} from "../../contracts/libraries/Errors.sol";
import {PolicyFixture} from "../utils/PolicyFixture.sol";

/// @notice `extendPolicy`: the owner pays the added periods of every live arrangement at the
/// policy's rate, and from then on fees, refunds and revocations run through the new end exactly as
/// for a policy created with it.
contract PolicyExtensionTest is PolicyFixture {
    /// @dev Alice extends `ID` by `periods` whole periods past its last, paying `live` nodes.
    function extendBy(uint256 periods, uint256 live) internal returns (uint256 lastPeriod) {
        uint256 end = (policyManager.getPolicy(ID).lastPeriod + 1 + periods) * PERIOD;
        uint256 value = RATE * live * periods;
        vm.deal(alice, alice.balance + value);
        vm.prank(alice);
        lastPeriod = policyManager.extendPolicy{value: value}(ID, end, nodes);
    }

    function lastPeriodOf(bytes16 id) internal view returns (uint256) {
        return policyManager.getPolicy(id).lastPeriod;
    }

    /*//////////////////////////////////////////////////////////////
                                 EXTEND
    //////////////////////////////////////////////////////////////*/

    function test_ExtendPolicy() public {
        create(10);
        uint256 current = currentPeriod();
        uint256 oldEnd = endAfter(10);
        uint256 newEnd = endAfter(15);
        vm.deal(alice, pay(5));
        vm.expectEmit(address(policyManager));
        emit PolicyManager.PolicyExtended(ID, alice, oldEnd, newEnd, current + 14, pay(5));
        vm.prank(alice);
        assertEq(policyManager.extendPolicy{value: pay(5)}(ID, newEnd, nodes), current + 14);

        PolicyManager.PolicyView memory policy = policyManager.getPolicy(ID);
        assertEq(policy.endTimestamp, newEnd);
        assertEq(policy.lastPeriod, current + 14);
        assertEq(policy.startPeriod, current, "the start stays");
        assertEq(policy.feeRate, RATE, "the rate stays");
        assertEq(address(policyManager).balance, pay(15));
        vm.warp(oldEnd);
        assertTrue(policyManager.isArrangementActive(ID, nodeA, nodes), "active past the old end");
        vm.warp(newEnd);
        assertFalse(policyManager.isArrangementActive(ID, nodeA, nodes), "inactive from the new end");
    }

    /// The extended periods are earned like the first ones, and what nobody worked is refunded.
    function test_ExtendPolicy_NodesEarnEveryExtendedPeriod() public {
        create(3);
        extendBy(3, 3);
        for (uint256 i; i < 8; ++i) {
            commitAll();
            advancePeriods(1);
        }
        // Commitments to start+1 .. start+8; the policy covers start .. start+5: 5 periods earned.
        assertEq(policyManager.fees(nodeA), 5 * RATE);
        assertEq(policyManager.getNodeInfo(nodeA).runningRate, 0, "the rate left at the new end");
        vm.prank(alice);
        assertEq(policyManager.refund(ID, nodes), 3 * RATE, "the start period of each node");
        _assertConserved(pay(6));
    }

    function test_ExtendPolicy_ThenRevokePolicyRefundsTheExtendedRange() public {
        create(4);
        commitAll(); // to start + 1
        extendBy(6, 3); // through start + 9
        advancePeriods(1);
        commitAll(); // to start + 2
        // Earned: start+1 and start+2; the other 8 periods of 10 are refunded, for each node.
        uint256 expected = 3 * 8 * RATE;
        vm.expectEmit(address(policyManager));
        emit PolicyManager.PolicyRevoked(ID, alice, expected);
        vm.prank(alice);
        assertEq(policyManager.revokePolicy(ID, nodes), expected);

        advancePeriods(1);
        commitAll();
        assertEq(policyManager.fees(nodeA), 2 * RATE, "nothing earned after the revocation");
        assertEq(policyManager.getNodeInfo(nodeA).runningRate, 0);
        _assertConserved(pay(10));
    }

    function test_ExtendPolicy_ThenRevokeArrangementRefundsTheExtendedRange() public {
        create(2);
        commitAll(); // to start + 1
        extendBy(8, 3); // through start + 9
        vm.prank(alice);
        assertEq(policyManager.revokeArrangement(ID, nodeB, nodes), 9 * RATE, "all but start + 1");

        for (uint256 i; i < 10; ++i) {
            advancePeriods(1);
            commitAll();
        }
        assertEq(policyManager.fees(nodeB), RATE, "B keeps only the period it committed to before");
        assertEq(policyManager.fees(nodeA), 9 * RATE, "A earns every committed period through the end");
        vm.prank(alice);
        assertEq(policyManager.refund(ID, nodes), 2 * RATE, "the start period of A and C");
        _assertConserved(pay(10));
    }

    function test_ExtendPolicy_ThenRefundMissedExtendedPeriods() public {
        create(2);
        extendBy(3, 3); // start .. start + 4
        for (uint256 i; i < 6; ++i) {
            commit(nodeA);
            commit(nodeB); // C never commits
            advancePeriods(1);
        }
        vm.prank(alice);
        assertEq(policyManager.refund(ID, nodes), (1 + 1 + 5) * RATE);
        assertEq(policyManager.fees(nodeA), 4 * RATE);
        assertEq(policyManager.fees(nodeC), 0);
        _assertConserved(pay(5));
    }

    /// In its last period a policy's nodes have already committed to the period after it, which took
    /// the policy's rate out of their running rate: the extension puts it back and credits that
    /// commitment at once, one `FeesAccrued` per node.
    function test_ExtendPolicy_InTheLastPeriodAfterTheNodesCommittedPastIt() public {
        create(2); // start .. start + 1
        uint256 start = currentPeriod();
        commitAll(); // to start + 1
        advancePeriods(1);
        commitAll(); // to start + 2, past the end
        assertEq(policyManager.getNodeInfo(nodeA).runningRate, 0, "the rate left");
        assertEq(policyManager.fees(nodeA), RATE);

        for (uint256 i; i < nodes.length; ++i) {
            vm.expectEmit(address(policyManager));
            emit PolicyManager.FeesAccrued(nodes[i], start + 2, RATE);
        }
        assertEq(extendBy(3, 3), start + 4);
        assertEq(policyManager.fees(nodeA), 2 * RATE, "start + 2 credited now");
        assertEq(policyManager.getNodeInfo(nodeA).runningRate, RATE, "the rate is back");

        for (uint256 i; i < 4; ++i) {
            advancePeriods(1);
            commitAll(); // to start + 3 .. start + 6
        }
        assertEq(policyManager.fees(nodeA), 4 * RATE, "start + 1 .. start + 4");
        assertEq(policyManager.getNodeInfo(nodeA).runningRate, 0);
        vm.prank(alice);
        assertEq(policyManager.refund(ID, nodes), 3 * RATE, "the start period");
        _assertConserved(pay(5));
    }

    /// A one-period policy created after its nodes had committed to the next period never held a
    /// running rate: an extension starts one, and credits the commitment to the next period.
    function test_ExtendPolicy_OnePeriodPolicyCreatedAfterTheCommitments() public {
        commitAll();
        advancePeriods(1);
        commitAll(); // to the current period and the next
        create(1);
        uint256 start = currentPeriod();
        assertEq(policyManager.fees(nodeA), RATE, "the current period credited");
        assertEq(policyManager.getNodeInfo(nodeA).runningRate, 0);

        assertEq(extendBy(2, 3), start + 2);
        assertEq(policyManager.fees(nodeA), 2 * RATE, "the next period credited now");
        advancePeriods(1);
        commitAll(); // to start + 2
        advancePeriods(1);
        commitAll(); // past the end
        assertEq(policyManager.fees(nodeA), 3 * RATE);
        vm.expectRevert(Errors.PolicyManager_NothingToPay.selector);
        policyManager.refund(ID, nodes);
        _assertConserved(pay(3));
    }

    /// Revoked arrangements are not extended, nor paid for: the owner pays the live ones.
    function test_ExtendPolicy_SkipsRevokedArrangements() public {
        create(10);
        vm.prank(alice);
        policyManager.revokeArrangement(ID, nodeB, nodes);
        uint256 newEnd = endAfter(15);
        vm.deal(alice, alice.balance + pay(5));
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.PolicyManager_InvalidExtensionPayment.selector, pay(5), 2 * 5 * RATE
            )
        );
        vm.prank(alice);
        policyManager.extendPolicy{value: pay(5)}(ID, newEnd, nodes);

        vm.expectEmit(address(policyManager));
        emit PolicyManager.PolicyExtended(ID, alice, endAfter(10), newEnd, currentPeriod() + 14, 2 * 5 * RATE);
        vm.prank(alice);
        policyManager.extendPolicy{value: 2 * 5 * RATE}(ID, newEnd, nodes);
        assertFalse(policyManager.isArrangementActive(ID, nodeB, nodes), "still revoked");
        assertTrue(policyManager.arrangementRevoked(ID, nodeB));
        vm.warp(endAfter(12));
        assertTrue(policyManager.isArrangementActive(ID, nodeA, nodes));
    }

    function test_ExtendPolicy_Twice() public {
        create(3);
        commitAll();
        extendBy(2, 3);
        advancePeriods(1);
        commitAll();
        extendBy(4, 3); // start .. start + 8
        assertEq(lastPeriodOf(ID), currentPeriod() - 1 + 8);
        advancePeriods(1);
        commitAll(); // to start + 3
        // Earned start+1 .. start+3 of 9 periods: 6 refunded per node.
        vm.prank(alice);
        assertEq(policyManager.revokePolicy(ID, nodes), 3 * 6 * RATE);
        assertEq(policyManager.fees(nodeA), 3 * RATE);
        _assertConserved(pay(9));
    }

    /// An end inside a period pays for that whole period, as at creation.
    function test_ExtendPolicy_ToAnEndInsideAPeriod() public {
        create(2);
        uint256 current = currentPeriod();
        uint256 newEnd = (current + 4) * PERIOD + 1; // one second into current + 4
        vm.deal(alice, pay(3));
        vm.prank(alice);
        assertEq(policyManager.extendPolicy{value: pay(3)}(ID, newEnd, nodes), current + 4);
        vm.warp(newEnd - 1);
        assertTrue(policyManager.isArrangementActive(ID, nodeA, nodes));
        vm.warp(newEnd);
        assertFalse(policyManager.isArrangementActive(ID, nodeA, nodes));
    }

    /// As with revocation, the owner extends, not whoever created (paid for) the policy.
    function test_ExtendPolicy_ByTheOwnerNotTheCreator() public {
        address sponsor = makeAddr("sponsor");
        vm.deal(sponsor, pay(5));
        vm.prank(sponsor);
        bytes16 id = policyManager.createPolicy{value: pay(5)}(SALT, alice, signer, endAfter(5), nodes);
        vm.deal(sponsor, pay(5));
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_CallerNotPolicyOwner.selector, sponsor, alice)
        );
        vm.prank(sponsor);
        policyManager.extendPolicy{value: pay(5)}(id, endAfter(10), nodes);

        vm.deal(alice, pay(5));
        vm.prank(alice);
        policyManager.extendPolicy{value: pay(5)}(id, endAfter(10), nodes);
        assertEq(policyManager.getPolicy(id).endTimestamp, endAfter(10));
    }

    /*//////////////////////////////////////////////////////////////
                                REVERTS
    //////////////////////////////////////////////////////////////*/

    function test_RevertWhen_ExtendByNonOwner() public {
        create(10);
        vm.deal(nodeA, pay(5));
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_CallerNotPolicyOwner.selector, nodeA, alice)
        );
        vm.prank(nodeA);
        policyManager.extendPolicy{value: pay(5)}(ID, endAfter(15), nodes);
    }

    function test_RevertWhen_ExtensionPaymentWrong() public {
        create(10);
        uint256 end = endAfter(15);
        vm.deal(alice, 1 ether);
        vm.startPrank(alice);
        uint256[3] memory wrong = [pay(5) + 1, pay(5) - 1, 0];
        for (uint256 i; i < wrong.length; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    Errors.PolicyManager_InvalidExtensionPayment.selector, wrong[i], pay(5)
                )
            );
            policyManager.extendPolicy{value: wrong[i]}(ID, end, nodes);
        }
        vm.stopPrank();
    }

    function test_RevertWhen_ExtensionEndInvalid() public {
        uint256 current = currentPeriod();
        uint256 end = (current + 9) * PERIOD + 1; // last period current + 9
        vm.deal(alice, 1 ether);
        vm.startPrank(alice);
        policyManager.createPolicy{value: pay(10)}(SALT, alice, signer, end, nodes);
        uint256[3] memory invalid = [end, end - 1, (current + 10) * PERIOD];
        for (uint256 i; i < invalid.length; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(Errors.PolicyManager_InvalidExtension.selector, invalid[i], end)
            );
            policyManager.extendPolicy(ID, invalid[i], nodes);
        }
        uint256 tooFar = uint256(type(uint32).max) + 1;
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_InvalidExtension.selector, tooFar, end));
        policyManager.extendPolicy(ID, tooFar, nodes);
        vm.stopPrank();
    }

    function test_RevertWhen_ExtendedNodeNotStakedThroughTheNewEnd() public {
        address shortNode = newNode("short", STAKE, 30);
        address[] memory both = list(nodeA, shortNode);
        vm.deal(alice, RATE * 2 * 40);
        vm.prank(alice);
        policyManager.createPolicy{value: RATE * 2 * 20}(SALT, alice, signer, endAfter(20), both);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.PolicyManager_NodeNotEligible.selector, shortNode, currentPeriod() + 39
            )
        );
        vm.prank(alice);
        policyManager.extendPolicy{value: RATE * 2 * 20}(ID, endAfter(40), both);
    }

    function test_RevertWhen_ExtendedNodeLostItsWorker() public {
        create(10);
        advancePeriods(MIN_WORKER_PERIODS);
        bond(nodeB, address(0));
        uint256 lastPeriod = lastPeriodOf(ID) + 5;
        vm.deal(alice, pay(5));
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_NodeNotEligible.selector, nodeB, lastPeriod)
        );
        vm.prank(alice);
        policyManager.extendPolicy{value: pay(5)}(ID, (lastPeriod + 1) * PERIOD, nodes);
    }

    function test_RevertWhen_ExtendedNodeRaisedItsMinimumFeeRate() public {
        create(10);
        vm.prank(nodeC);
        policyManager.setMinFeeRate(2 * RATE);
        vm.deal(alice, pay(5));
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.PolicyManager_FeeRateBelowNodeMinimum.selector, nodeC, RATE, 2 * RATE
            )
        );
        vm.prank(alice);
        policyManager.extendPolicy{value: pay(5)}(ID, endAfter(15), nodes);
    }

    function test_RevertWhen_ExtendAfterTheEnd() public {
        create(2);
        uint256 end = endAfter(2);
        vm.warp(end);
        vm.deal(alice, pay(5));
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_PolicyEnded.selector, ID, end));
        vm.prank(alice);
        policyManager.extendPolicy{value: pay(5)}(ID, endAfter(5), nodes);
    }

    function test_RevertWhen_ExtendAfterRevocation() public {
        create(10);
        vm.prank(alice);
        policyManager.revokePolicy(ID, nodes);
        vm.deal(alice, pay(5));
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_AlreadyRevoked.selector, ID, address(0)));
        vm.prank(alice);
        policyManager.extendPolicy{value: pay(5)}(ID, endAfter(15), nodes);
    }

    function test_RevertWhen_ExtendWithEveryArrangementRevoked() public {
        create(10);
        vm.startPrank(alice);
        policyManager.revokeArrangement(ID, nodeA, nodes);
        policyManager.revokeArrangement(ID, nodeB, nodes);
        policyManager.revokeArrangement(ID, nodeC, nodes);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_NoLiveArrangement.selector, ID));
        policyManager.extendPolicy(ID, endAfter(15), nodes);
        vm.stopPrank();
    }

    function test_RevertWhen_ExtendWithWrongNodesOrUnknownPolicy() public {
        create(10);
        vm.deal(alice, pay(5));
        vm.startPrank(alice);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_NodesMismatch.selector, ID));
        policyManager.extendPolicy{value: pay(5)}(ID, endAfter(15), list(nodeA));
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_PolicyNotFound.selector, bytes16("nope")));
        policyManager.extendPolicy{value: pay(5)}(bytes16("nope"), endAfter(15), nodes);
        vm.stopPrank();
    }
}
