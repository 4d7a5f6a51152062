// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Base} from "../utils/Base.sol";

/// @notice Steady-state gas of the hot paths, against the bars of the contracts issue, recorded in
/// `snapshots/Gas.json` by `vm.snapshotGasLastCall` (gas is deterministic: a change is a regression
/// or an improvement, never noise). Each measured call runs in a steady state: warm-ish protocol
/// state as on a live network, the caller's own slots already initialized.
contract GasTest is Base {
    uint256 internal constant STAKE = 1_000_000e18;

    address internal alice = makeAddr("alice");
    address internal nodeA;
    address internal nodeB;
    address internal nodeC;
    bytes16 internal warmUp;

    function setUp() public override {
        super.setUp();
        nodeA = newNode("node-a", STAKE, 365);
        nodeB = newNode("node-b", STAKE, 365);
        nodeC = newNode("node-c", STAKE, 365);
        // Every node has committed before and holds a policy: the steady state.
        commit(nodeA);
        commit(nodeB);
        commit(nodeC);
        warmUp = createPolicy(bytes16("warm-up"), alice, list(nodeA, nodeB, nodeC), 100, 1 gwei);
        advancePeriods(1);
        commit(nodeA);
        commit(nodeB);
        commit(nodeC);
        advancePeriods(1);
    }

    function test_Gas_CommitToNextPeriod() public {
        // nodeA is not the first to commit to the next period (issuance already allocated).
        commit(nodeB);
        address worker = workerOf(nodeA);
        vm.prank(worker);
        escrow.commitToNextPeriod();
        uint256 gasUsed = vm.snapshotGasLastCall("commitToNextPeriod (mint + fee accrual)");
        assertLe(gasUsed, 100_000, "commitToNextPeriod over its bar");
        assertGt(escrow.getStakerInfo(nodeA).rewardsMinted, 0);
    }

    function test_Gas_CommitToNextPeriod_FirstOfPeriod() public {
        vm.prank(workerOf(nodeA));
        escrow.commitToNextPeriod();
        vm.snapshotGasLastCall("commitToNextPeriod (first of the period: allocates issuance)");
    }

    function test_Gas_Deposit() public {
        fund(nodeA, STAKE);
        vm.startPrank(nodeA);
        token.approve(address(escrow), STAKE);
        escrow.deposit(MIN_STAKE, 60);
        vm.stopPrank();
        uint256 gasUsed = vm.snapshotGasLastCall("deposit (new sub-stake)");
        assertLe(gasUsed, 150_000, "deposit over its bar");
    }

    function test_Gas_Mint() public {
        advancePeriods(1);
        vm.prank(workerOf(nodeA));
        uint256 minted = escrow.mint();
        uint256 gasUsed = vm.snapshotGasLastCall("mint");
        assertLe(gasUsed, 60_000, "mint over its bar");
        assertGt(minted, 0);
    }

    function test_Gas_CreatePolicy_ThreeNodes() public {
        address[] memory nodes = list(nodeA, nodeB, nodeC);
        uint256 value = 1 gwei * 3 * 30;
        vm.deal(alice, value);
        vm.prank(alice);
        policyManager.createPolicy{value: value}(bytes16("policy"), alice, alice, endAfter(30), nodes);
        uint256 gasUsed = vm.snapshotGasLastCall("createPolicy (3 nodes)");
        assertLe(gasUsed, 250_000, "createPolicy over its bar");
    }

    function test_Gas_WithdrawFees() public {
        assertGt(policyManager.fees(nodeA), 0);
        vm.prank(nodeA);
        policyManager.withdrawFees(nodeA);
        uint256 gasUsed = vm.snapshotGasLastCall("withdrawFees");
        assertLe(gasUsed, 40_000, "withdrawFees over its bar");
    }

    function test_Gas_Prolong() public {
        vm.prank(nodeA);
        escrow.prolong(0, 10);
        vm.snapshotGasLastCall("prolong");
    }

    function test_Gas_Divide() public {
        vm.prank(nodeA);
        escrow.divide(0, STAKE / 2, 10);
        vm.snapshotGasLastCall("divide");
    }

    function test_Gas_Withdraw() public {
        advancePeriods(2);
        vm.prank(nodeA);
        escrow.mint();
        uint256 unlocked = escrow.stakeOf(nodeA) - escrow.lockedAt(nodeA, currentPeriod());
        vm.prank(nodeA);
        escrow.withdraw(unlocked);
        vm.snapshotGasLastCall("withdraw (rewards)");
    }

    function test_Gas_RevokePolicy() public {
        vm.prank(alice);
        policyManager.revokePolicy(warmUp, list(nodeA, nodeB, nodeC));
        vm.snapshotGasLastCall("revokePolicy (3 nodes)");
    }

    function test_Gas_Refund() public {
        advancePeriods(3); // two periods without commitments
        vm.prank(alice);
        policyManager.refund(warmUp, list(nodeA, nodeB, nodeC));
        vm.snapshotGasLastCall("refund (3 nodes)");
    }

    function test_Gas_Slash() public {
        vm.prank(adjudicator);
        escrow.slash(nodeA, 10_000e18, alice, 1_000e18);
        vm.snapshotGasLastCall("slash");
    }
}
