// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

import {PolicyManager} from "../../contracts/PolicyManager.sol";
import {Errors} from "../../contracts/libraries/Errors.sol";
import {Base} from "../utils/Base.sol";
import {PolicyFixture} from "../utils/PolicyFixture.sol";
import {Vm} from "../utils/Vm.sol";

contract PolicyManagerTest is PolicyFixture {
    /*//////////////////////////////////////////////////////////////
                                 CREATE
    //////////////////////////////////////////////////////////////*/

    function test_CreatePolicy() public {
        uint256 current = currentPeriod();
        uint256 end = endAfter(10);
        vm.deal(alice, pay(10));
        vm.expectEmit(address(policyManager));
        emit PolicyManager.PolicyCreated(ID, alice, alice, signer, end, current, current + 9, RATE, nodes);
        vm.prank(alice);
        policyManager.createPolicy{value: pay(10)}(SALT, alice, signer, end, nodes);

        PolicyManager.PolicyView memory policy = policyManager.getPolicy(ID);
        assertEq(policy.owner, alice);
        assertEq(policy.kfragSigner, signer);
        assertEq(policy.endTimestamp, end);
        assertEq(policy.startPeriod, current);
        assertEq(policy.lastPeriod, current + 9);
        assertEq(policy.feeRate, RATE);
        assertEq(policy.nodeCount, 3);
        assertEq(policy.nodesHash, keccak256(abi.encodePacked(nodes)));
        assertTrue(policyManager.isArrangementActive(ID, nodeB, nodes));
        assertFalse(policyManager.isArrangementActive(ID, alice, nodes));
        assertEq(address(policyManager).balance, pay(10));
    }

    function test_CreatePolicy_EndMidPeriodPaysForThatPeriod() public {
        uint256 current = currentPeriod();
        uint256 end = (current + 2) * PERIOD + 1; // one second into period current + 2
        vm.deal(alice, RATE * 3 * 3);
        vm.prank(alice);
        policyManager.createPolicy{value: RATE * 3 * 3}(SALT, alice, signer, end, nodes);
        assertEq(policyManager.getPolicy(ID).lastPeriod, current + 2);
        vm.warp(end);
        assertFalse(policyManager.isArrangementActive(ID, nodeA, nodes), "inactive from the end timestamp");
    }

    function test_RevertWhen_PolicyIdTaken() public {
        create(10);
        vm.deal(alice, pay(10));
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_PolicyExists.selector, ID));
        vm.prank(alice);
        policyManager.createPolicy{value: pay(10)}(SALT, alice, signer, endAfter(10), nodes);
    }

    /// @dev Regression (review item 4): the caller chose the policy id, so a front-runner copying
    /// Alice's pending createPolicy took her id first (with its own kfrag signer) and hers reverted.
    function test_CreatePolicy_FrontRunnerWithTheSameSaltGetsAnotherId() public {
        address mallory = makeAddr("mallory");
        vm.deal(mallory, pay(10));
        vm.prank(mallory);
        bytes16 mallorys =
            policyManager.createPolicy{value: pay(10)}(SALT, mallory, mallory, endAfter(10), nodes);
        assertEq(bytes32(mallorys), bytes32(policyManager.policyIdOf(mallory, SALT)));
        assertTrue(mallorys != ID, "the front-runner took Alice's id");

        vm.deal(alice, pay(10));
        vm.prank(alice);
        bytes16 id = policyManager.createPolicy{value: pay(10)}(SALT, alice, signer, endAfter(10), nodes);
        assertEq(bytes32(id), bytes32(ID));
        assertEq(bytes32(ID), bytes32(bytes16(keccak256(abi.encodePacked(alice, SALT)))));
        assertEq(policyManager.getPolicy(ID).owner, alice);
        assertEq(policyManager.kfragSignerOf(ID), signer);
        assertEq(policyManager.kfragSignerOf(mallorys), mallory);

        // The same creator cannot use a salt twice.
        vm.deal(alice, pay(10));
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_PolicyExists.selector, ID));
        vm.prank(alice);
        policyManager.createPolicy{value: pay(10)}(SALT, alice, signer, endAfter(10), nodes);
    }

    function test_RevertWhen_CreateArgumentsInvalid() public {
        uint256 end = endAfter(10);
        vm.deal(alice, 1 ether);
        vm.startPrank(alice);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_ZeroAddress.selector, "owner"));
        policyManager.createPolicy{value: pay(10)}(SALT, address(0), signer, end, nodes);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_ZeroAddress.selector, "kfragSigner"));
        policyManager.createPolicy{value: pay(10)}(SALT, alice, address(0), end, nodes);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_InvalidEnd.selector, block.timestamp, block.timestamp)
        );
        policyManager.createPolicy{value: pay(10)}(SALT, alice, signer, block.timestamp, nodes);
        uint256 tooFar = uint256(type(uint32).max) + 1;
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_InvalidEnd.selector, tooFar, block.timestamp)
        );
        policyManager.createPolicy{value: pay(10)}(SALT, alice, signer, tooFar, nodes);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_InvalidNodeCount.selector, 0, 32));
        policyManager.createPolicy{value: pay(10)}(SALT, alice, signer, end, new address[](0));
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_InvalidNodeCount.selector, 33, 32));
        policyManager.createPolicy{value: pay(10)}(SALT, alice, signer, end, new address[](33));
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_InvalidPayment.selector, pay(10) + 1, 3, 10)
        );
        policyManager.createPolicy{value: pay(10) + 1}(SALT, alice, signer, end, nodes);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_InvalidPayment.selector, 0, 3, 10));
        policyManager.createPolicy(SALT, alice, signer, end, nodes);
        vm.stopPrank();
    }

    function test_RevertWhen_NodesUnsortedOrDuplicated() public {
        address[] memory unsorted = list(nodeA, nodeB, nodeC);
        (unsorted[0], unsorted[1]) = (unsorted[1], unsorted[0]);
        uint256 end = endAfter(10);
        vm.deal(alice, 1 ether);
        vm.startPrank(alice);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_NodesNotSorted.selector, 1));
        policyManager.createPolicy{value: pay(10)}(SALT, alice, signer, end, unsorted);
        address[] memory duplicated = list(nodeA, nodeB, nodeC);
        duplicated[1] = duplicated[0];
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_NodesNotSorted.selector, 1));
        policyManager.createPolicy{value: pay(10)}(SALT, alice, signer, end, duplicated);
        vm.stopPrank();
    }

    function test_RevertWhen_NodeNotStakedThroughTheEnd() public {
        address shortNode = newNode("short", STAKE, 30);
        uint256 end = endAfter(40);
        vm.deal(alice, RATE * 40);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.PolicyManager_NodeNotEligible.selector, shortNode, currentPeriod() + 39
            )
        );
        vm.prank(alice);
        policyManager.createPolicy{value: RATE * 40}(SALT, alice, signer, end, list(shortNode));
    }

    function test_RevertWhen_NodeHasNoWorker() public {
        address lonely = makeAddr("lonely");
        deposit(lonely, STAKE, 60);
        vm.deal(alice, RATE * 10);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_NodeNotEligible.selector, lonely, currentPeriod() + 9)
        );
        vm.prank(alice);
        policyManager.createPolicy{value: RATE * 10}(SALT, alice, signer, endAfter(10), list(lonely));
    }

    function test_RevertWhen_FeeRateBelowNodeMinimum() public {
        vm.prank(nodeB);
        policyManager.setMinFeeRate(2 * RATE);
        vm.deal(alice, pay(10));
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.PolicyManager_FeeRateBelowNodeMinimum.selector, nodeB, RATE, 2 * RATE
            )
        );
        vm.prank(alice);
        policyManager.createPolicy{value: pay(10)}(SALT, alice, signer, endAfter(10), nodes);
    }

    /*//////////////////////////////////////////////////////////////
                                  FEES
    //////////////////////////////////////////////////////////////*/

    function test_Fees_AccrueForEachCommittedPeriod() public {
        create(5);
        uint256 start = currentPeriod();
        for (uint256 i; i < 6; ++i) {
            if (i < 4) {
                vm.expectEmit(address(policyManager));
                emit PolicyManager.FeesAccrued(nodeA, start + i + 1, RATE);
            }
            commitAll();
            advancePeriods(1);
        }
        // Commitments went to start+1 .. start+6; the policy covers start .. start+4: 4 periods earned.
        assertEq(policyManager.fees(nodeA), 4 * RATE);
        assertEq(policyManager.getNodeInfo(nodeA).runningRate, 0, "the rate left when the policy ended");
        // The owner gets back `start` for every node (nobody could commit to it any more).
        vm.expectEmit(address(policyManager));
        emit PolicyManager.RefundPaid(ID, alice, 3 * RATE, start + 4);
        vm.prank(alice);
        assertEq(policyManager.refund(ID, nodes), 3 * RATE);
        _assertConserved(pay(5));
    }

    function test_Fees_CreditCommitmentsMadeBeforeThePolicy() public {
        commitAll(); // to current + 1
        advancePeriods(1);
        commitAll(); // to current + 1 again; the new current period was committed to before
        create(5);
        // Current and next periods were committed to before creation: credited at once.
        assertEq(policyManager.fees(nodeA), 2 * RATE);
        advancePeriods(1);
        commitAll();
        assertEq(policyManager.fees(nodeA), 3 * RATE);
    }

    /// @dev Regression (review item 5): a node that had committed to the current and the next
    /// period got one `FeesAccrued` for both, dated the current period; now one event per period.
    function test_CreatePolicy_EmitsFeesAccruedForEachPrecommittedPeriod() public {
        commitAll();
        advancePeriods(1);
        commitAll(); // committed to the current period and the next
        uint256 current = currentPeriod();
        vm.deal(alice, pay(5));
        for (uint256 i; i < nodes.length; ++i) {
            vm.expectEmit(address(policyManager));
            emit PolicyManager.FeesAccrued(nodes[i], current, RATE);
            vm.expectEmit(address(policyManager));
            emit PolicyManager.FeesAccrued(nodes[i], current + 1, RATE);
        }
        vm.recordLogs();
        vm.prank(alice);
        policyManager.createPolicy{value: pay(5)}(SALT, alice, signer, endAfter(5), nodes);

        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 accrued;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics.length != 0 && logs[i].topics[0] == PolicyManager.FeesAccrued.selector) {
                ++accrued;
            }
        }
        assertEq(accrued, 2 * nodes.length, "one FeesAccrued per node and pre-committed period");
        assertEq(policyManager.fees(nodeA), 2 * RATE);
    }

    function test_Fees_PolicyEndingBeforeTheLastCommittedPeriod() public {
        commitAll();
        advancePeriods(1);
        commitAll(); // committed to current and current + 1
        create(1); // only the current period
        assertEq(policyManager.fees(nodeA), RATE);
        assertEq(policyManager.getNodeInfo(nodeA).runningRate, 0, "nothing left to accrue");
        advancePeriods(1);
        commitAll();
        assertEq(policyManager.fees(nodeA), RATE);
    }

    function test_Refund_MissedPeriods() public {
        create(10);
        uint256 start = currentPeriod();
        for (uint256 i; i < 5; ++i) {
            commit(nodeA);
            commit(nodeB);
            if (i % 2 == 0) commit(nodeC); // C commits to start+1, start+3, start+5
            advancePeriods(1);
        }
        // Settled through the current period start+5; nobody committed to `start`.
        // A and B: 1 missed each (start). C: start, start+2, start+4 missed.
        uint256 expected = (1 + 1 + 3) * RATE;
        vm.prank(alice);
        assertEq(policyManager.refund(ID, nodes), expected);
        assertEq(policyManager.getPolicy(ID).refundedThrough, start + 5);
        vm.expectRevert(Errors.PolicyManager_NothingToPay.selector);
        policyManager.refund(ID, nodes);
        _assertConserved(pay(10));
    }

    function test_RevertWhen_RefundWithWrongNodes() public {
        create(10);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_NodesMismatch.selector, ID));
        policyManager.refund(ID, list(nodeA));
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_PolicyNotFound.selector, bytes16("nope")));
        policyManager.refund(bytes16("nope"), nodes);
    }

    /*//////////////////////////////////////////////////////////////
                               REVOCATION
    //////////////////////////////////////////////////////////////*/

    function test_RevokePolicy_RefundsTheUnearned() public {
        create(10);
        commitAll(); // to start + 1
        advancePeriods(1);
        commitAll(); // to start + 2
        // Earned: start+1 and start+2 for each node; the other 8 periods of 10 are refunded.
        uint256 expected = 3 * 8 * RATE;
        vm.expectEmit(address(policyManager));
        emit PolicyManager.PolicyRevoked(ID, alice, expected);
        vm.prank(alice);
        assertEq(policyManager.revokePolicy(ID, nodes), expected);
        assertEq(alice.balance, expected);
        assertFalse(policyManager.isArrangementActive(ID, nodeA, nodes));

        // Later commitments earn nothing from the revoked policy.
        advancePeriods(1);
        commitAll();
        assertEq(policyManager.fees(nodeA), 2 * RATE);
        _assertConserved(pay(10));
    }

    function test_RevokeArrangement_RefundsThatNodeOnly() public {
        create(10);
        commitAll();
        vm.expectEmit(address(policyManager));
        emit PolicyManager.ArrangementRevoked(ID, nodeB, 9 * RATE);
        vm.prank(alice);
        assertEq(policyManager.revokeArrangement(ID, nodeB, nodes), 9 * RATE);
        assertFalse(policyManager.isArrangementActive(ID, nodeB, nodes));
        assertTrue(policyManager.isArrangementActive(ID, nodeA, nodes));

        advancePeriods(1);
        commitAll();
        assertEq(policyManager.fees(nodeB), RATE, "B keeps the period it committed to before");
        assertEq(policyManager.fees(nodeA), 2 * RATE);

        // Revoking the whole policy afterwards leaves B out.
        vm.prank(alice);
        assertEq(policyManager.revokePolicy(ID, nodes), 2 * 8 * RATE);
        _assertConserved(pay(10));
    }

    function test_RevertWhen_RevokeByOtherOrTwiceOrAfterEnd() public {
        create(10);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_CallerNotPolicyOwner.selector, nodeA, alice)
        );
        vm.prank(nodeA);
        policyManager.revokePolicy(ID, nodes);

        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_NodeNotInPolicy.selector, ID, alice));
        vm.prank(alice);
        policyManager.revokeArrangement(ID, alice, nodes);

        vm.prank(alice);
        policyManager.revokeArrangement(ID, nodeA, nodes);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_AlreadyRevoked.selector, ID, nodeA));
        vm.prank(alice);
        policyManager.revokeArrangement(ID, nodeA, nodes);

        vm.prank(alice);
        policyManager.revokePolicy(ID, nodes);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_AlreadyRevoked.selector, ID, address(0)));
        vm.prank(alice);
        policyManager.revokePolicy(ID, nodes);

        bytes16 other = bytes16("policy-2");
        vm.deal(alice, pay(2));
        uint256 end = endAfter(2);
        vm.prank(alice);
        other = policyManager.createPolicy{value: pay(2)}(other, alice, signer, end, nodes);
        vm.warp(end);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_PolicyEnded.selector, other, end));
        vm.prank(alice);
        policyManager.revokePolicy(other, nodes);
    }

    /*//////////////////////////////////////////////////////////////
                                WITHDRAW
    //////////////////////////////////////////////////////////////*/

    function test_WithdrawFees_ByNodeOrWorker() public {
        create(10);
        commitAll();
        advancePeriods(1);
        commitAll();
        // Committed to start+1 and start+2: two periods earned.
        vm.expectEmit(address(policyManager));
        emit PolicyManager.FeesWithdrawn(nodeA, 2 * RATE);
        vm.prank(workerOf(nodeA));
        assertEq(policyManager.withdrawFees(nodeA), 2 * RATE);
        assertEq(nodeA.balance, 2 * RATE, "fees always go to the staker");
        assertEq(policyManager.fees(nodeA), 0);
        vm.prank(nodeB);
        policyManager.withdrawFees(nodeB);
        assertEq(nodeB.balance, 2 * RATE);
    }

    function test_RevertWhen_WithdrawFeesByStrangerOrEmpty() public {
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_CallerNotNodeOrWorker.selector, alice, nodeA)
        );
        vm.prank(alice);
        policyManager.withdrawFees(nodeA);
        vm.expectRevert(Errors.PolicyManager_NothingToPay.selector);
        vm.prank(nodeA);
        policyManager.withdrawFees(nodeA);
    }

    function test_RevertWhen_RecordCommitmentNotByEscrow() public {
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_CallerNotEscrow.selector, alice));
        vm.prank(alice);
        policyManager.recordCommitment(nodeA, currentPeriod() + 1);
    }

    /// Nodes withdraw every period: the withdrawal empties the fees, never the slot, so the next
    /// accrual rewrites a live slot (and pays for no fresh one).
    function test_WithdrawFees_KeepsTheFeeSlotLive() public {
        create(10);
        commitAll();
        vm.prank(workerOf(nodeA));
        policyManager.withdrawFees(nodeA);
        assertEq(policyManager.fees(nodeA), 0);
        assertEq(policyManager.recordedWorkerOf(nodeA), workerOf(nodeA), "the worker copy stays");
        assertTrue(vm.load(address(policyManager), feeSlot(nodeA)) != 0, "the slot was freed");

        advancePeriods(1);
        commit(nodeA);
        assertEq(policyManager.fees(nodeA), RATE, "the next accrual");
        vm.prank(nodeA);
        assertEq(policyManager.withdrawFees(nodeA), RATE, "everything withdrawable is paid");
        assertEq(nodeA.balance, 2 * RATE);
        assertTrue(vm.load(address(policyManager), feeSlot(nodeA)) != 0, "the slot was freed");
    }

    /// The policy manager's copy of the worker follows every bond the escrow makes, so a worker
    /// rotated out can no longer withdraw and the new one can at once.
    function test_RecordWorker_FollowsEveryBond() public {
        address first = workerOf(nodeA);
        assertEq(policyManager.recordedWorkerOf(nodeA), first);
        create(10);
        commitAll();

        advancePeriods(MIN_WORKER_PERIODS);
        address second = makeAddr("node-a-second-worker");
        propose(nodeA, second);
        assertEq(policyManager.recordedWorkerOf(nodeA), first, "a proposal alone changes nothing");
        vm.prank(second);
        escrow.acceptWorker(nodeA);
        assertEq(policyManager.recordedWorkerOf(nodeA), second);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_CallerNotNodeOrWorker.selector, first, nodeA)
        );
        vm.prank(first);
        policyManager.withdrawFees(nodeA);
        vm.prank(second);
        assertEq(policyManager.withdrawFees(nodeA), RATE);

        advancePeriods(MIN_WORKER_PERIODS);
        bond(nodeA, nodeA); // the staker runs its own node
        assertEq(policyManager.recordedWorkerOf(nodeA), nodeA);
        advancePeriods(MIN_WORKER_PERIODS);
        bond(nodeA, address(0));
        assertEq(policyManager.recordedWorkerOf(nodeA), address(0), "unbonded");
        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_CallerNotNodeOrWorker.selector, second, nodeA)
        );
        vm.prank(second);
        policyManager.withdrawFees(nodeA);
    }

    function test_RevertWhen_RecordWorkerNotByEscrow() public {
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_CallerNotEscrow.selector, alice));
        vm.prank(alice);
        policyManager.recordWorker(nodeA, alice);
    }

    /// @dev The storage slot of `feeAccounts[node]`: slot 5 holds the mapping (slots 0 and 1 hold
    /// `Ownable2Step`'s owner and pending owner, 2 and 3 `EIP712`'s unused fallback name and
    /// version, 4 the three fee-rate bounds).
    function feeSlot(address node) internal pure returns (bytes32) {
        return keccak256(abi.encode(node, uint256(5)));
    }

    /*//////////////////////////////////////////////////////////////
                               FEE RATES
    //////////////////////////////////////////////////////////////*/

    function test_SetMinFeeRate() public {
        vm.expectEmit(address(policyManager));
        emit PolicyManager.MinFeeRateSet(nodeA, 5 gwei);
        vm.prank(nodeA);
        policyManager.setMinFeeRate(5 gwei);
        assertEq(policyManager.effectiveMinFeeRate(nodeA), 5 gwei);
        assertEq(policyManager.effectiveMinFeeRate(nodeB), DEFAULT_FEE_RATE);
    }

    function test_RevertWhen_SetMinFeeRateInvalid() public {
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_NotANode.selector, alice));
        vm.prank(alice);
        policyManager.setMinFeeRate(1);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.PolicyManager_FeeRateOutOfRange.selector, MAX_FEE_RATE + 1, MIN_FEE_RATE, MAX_FEE_RATE
            )
        );
        vm.prank(nodeA);
        policyManager.setMinFeeRate(MAX_FEE_RATE + 1);
    }

    function test_SetFeeRateRange_OwnerOnlyAndConsistent() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        vm.prank(alice);
        policyManager.setFeeRateRange(1, 2, 3);
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_InvalidFeeRateRange.selector, 2, 1, 3));
        vm.prank(governor);
        policyManager.setFeeRateRange(2, 1, 3);
        vm.prank(governor);
        policyManager.setFeeRateRange(10 gwei, 20 gwei, 30 gwei);
        assertEq(policyManager.effectiveMinFeeRate(nodeA), 20 gwei);
        vm.prank(nodeA);
        policyManager.setMinFeeRate(30 gwei);
        vm.prank(governor);
        policyManager.setFeeRateRange(1 gwei, 2 gwei, 3 gwei);
        assertEq(policyManager.effectiveMinFeeRate(nodeA), 3 gwei, "clamped to the new bounds");
    }

    /*//////////////////////////////////////////////////////////////
                              LONG ABSENCE
    //////////////////////////////////////////////////////////////*/

    function test_ProcessRateEndings_InChunksAfterALongAbsence() public {
        // Two policies ending at different periods, then nodeA stays away for 300 periods.
        create(100);
        vm.deal(alice, RATE * 200);
        vm.prank(alice);
        policyManager.createPolicy{value: RATE * 200}(
            bytes16("long"), alice, signer, endAfter(200), list(nodeA)
        );
        commit(nodeA);
        assertEq(policyManager.getNodeInfo(nodeA).runningRate, 2 * RATE);
        advancePeriods(300);

        policyManager.processRateEndings(nodeA, 150);
        assertEq(policyManager.getNodeInfo(nodeA).runningRate, RATE, "the first policy ended");
        policyManager.processRateEndings(nodeA, 150);
        assertEq(policyManager.getNodeInfo(nodeA).runningRate, 0, "both ended");
        assertEq(policyManager.getNodeInfo(nodeA).lastProcessedPeriod, currentPeriod());
        vm.expectRevert(Errors.PolicyManager_NothingToPay.selector);
        policyManager.processRateEndings(nodeA, 150);

        commit(nodeA);
        assertEq(policyManager.fees(nodeA), 2 * RATE, "one period of each policy, nothing after");
    }
}

contract PolicyManagerViewsTest is Base {
    uint256 internal constant STAKE = 100_000e18;
    bytes16 internal constant SALT = bytes16("views");
    bytes16 internal ID;

    address internal alice = makeAddr("alice");
    address internal nodeA;
    address internal nodeB;

    function setUp() public override {
        super.setUp();
        nodeA = newNode("node-a", STAKE, 365);
        nodeB = newNode("node-b", STAKE, 365);
    }

    function test_IsArrangementActive_NeedsTheRightNodeList() public {
        address[] memory nodes = list(nodeA, nodeB);
        ID = createPolicy(SALT, alice, nodes, 10, 1 gwei);
        assertTrue(policyManager.isArrangementActive(ID, nodeA, nodes));
        assertFalse(
            policyManager.isArrangementActive(ID, nodeA, list(nodeA)), "a list that is not the policy's"
        );
        assertFalse(policyManager.isArrangementActive(bytes16("unknown"), nodeA, nodes));
        assertEq(policyManager.kfragSignerOf(ID), makeAddr("kfrag-signer"));
        assertEq(policyManager.kfragSignerOf(bytes16("unknown")), address(0));
    }

    function test_CommittedCount_AndIsCommitted() public {
        uint256 first = currentPeriod() + 1;
        for (uint256 i; i < 3; ++i) {
            commit(nodeA);
            advancePeriods(1);
        }
        assertTrue(policyManager.isCommitted(nodeA, first));
        assertFalse(policyManager.isCommitted(nodeB, first));
        assertEq(policyManager.committedCount(nodeA, first - 1, first + 5), 3);
        assertEq(policyManager.committedCount(nodeA, first + 1, first + 1), 1);
    }

    function test_RevertWhen_ProcessRateEndingsHasNothingToDo() public {
        vm.expectRevert(Errors.PolicyManager_NothingToPay.selector);
        policyManager.processRateEndings(nodeA, 0);
        commit(nodeA); // processed through the next period
        vm.expectRevert(Errors.PolicyManager_NothingToPay.selector);
        policyManager.processRateEndings(nodeA, 10);
    }

    function test_RevertWhen_GetPolicyUnknown() public {
        vm.expectRevert(abi.encodeWithSelector(Errors.PolicyManager_PolicyNotFound.selector, ID));
        policyManager.getPolicy(ID);
    }
}

/// A node whose worker was bonded before the escrow was linked to the policy manager has no copy
/// of it there: its worker's withdrawal is checked against the escrow instead.
contract PolicyManagerLateLinkTest is Base {
    address internal alice = makeAddr("alice");

    /// @dev Base's deployment, without the links.
    function setUp() public override {
        deployUnlinked();
    }

    function test_WithdrawFees_WorkerBondedBeforeLinking() public {
        address node = newNode("early", 100_000e18, 365);
        escrow.setPolicyManager(policyManager);
        escrow.setAdjudicator(adjudicator);
        assertEq(policyManager.recordedWorkerOf(node), address(0), "no copy of an earlier bond");
        commit(node);
        createPolicy(bytes16("late"), alice, list(node), 10, 1 gwei); // credits the next period

        vm.expectRevert(
            abi.encodeWithSelector(Errors.PolicyManager_CallerNotNodeOrWorker.selector, alice, node)
        );
        vm.prank(alice);
        policyManager.withdrawFees(node);
        vm.prank(workerOf(node));
        assertEq(policyManager.withdrawFees(node), 1 gwei);
        assertEq(node.balance, 1 gwei);
    }
}
