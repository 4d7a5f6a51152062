// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Base} from "../utils/Base.sol";

/// @notice Steady-state gas of the hot paths, against the bars of the contracts issue, recorded in
/// `snapshots/GasTest.json` by `vm.snapshotGasLastCall` (gas is deterministic: a change is a
/// regression or an improvement, never noise). Each measured call runs in the state nodes running
/// with their shipped defaults produce: every node commits at the start of each period (from its
/// worker) and withdraws its fees right after (the default threshold is met by a node that earns
/// well: `kms-node`'s fees duty), so the period before the measured one ended with every node's
/// fees withdrawn. Protocol state is warm-ish as on a live network, the caller's own slots already
/// initialized. `crates/kms-node/tests/gas.rs` checks the same bars on the receipts of real nodes.
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
        // Every node has committed before and holds a policy; in the last period each committed
        // (accruing the policy's fee) and withdrew its fees, as nodes do: the steady state.
        commitAll();
        warmUp = createPolicy(bytes16("warm-up"), alice, list(nodeA, nodeB, nodeC), 100, 1 gwei);
        advancePeriods(1);
        commitAll();
        withdrawAll();
        advancePeriods(1);
    }

    function commitAll() internal {
        commit(nodeA);
        commit(nodeB);
        commit(nodeC);
    }

    /// @dev Each node's worker withdraws its fees, as the node's fees duty does.
    function withdrawAll() internal {
        withdrawFees(nodeA);
        withdrawFees(nodeB);
        withdrawFees(nodeC);
    }

    function withdrawFees(address node) internal {
        vm.prank(workerOf(node));
        policyManager.withdrawFees(node);
    }

    function test_Gas_CommitToNextPeriod() public {
        // The fees were withdrawn last period: this commitment's accrual refills them.
        assertEq(policyManager.fees(nodeA), 0);
        // nodeA is not the first to commit to the next period (issuance already allocated).
        commit(nodeB);
        address worker = workerOf(nodeA);
        vm.prank(worker);
        escrow.commitToNextPeriod();
        uint256 gasUsed = vm.snapshotGasLastCall("commitToNextPeriod (mint + fee accrual)");
        assertLe(gasUsed, 100_000, "commitToNextPeriod over its bar");
        assertGt(escrow.getStakerInfo(nodeA).rewardsMinted, 0);
        assertEq(policyManager.fees(nodeA), 1 gwei, "the accrual");
    }

    /// @dev The same steady state for a node that restakes: the minted reward is locked into its
    /// sub-stake and counted in the commitment. Held to the same bar.
    function test_Gas_CommitToNextPeriod_ReStake() public {
        vm.prank(nodeA);
        escrow.setReStake(true);
        assertEq(policyManager.fees(nodeA), 0);
        commit(nodeB);
        address worker = workerOf(nodeA);
        vm.prank(worker);
        escrow.commitToNextPeriod();
        uint256 gasUsed = vm.snapshotGasLastCall("commitToNextPeriod (mint restaked + fee accrual)");
        assertLe(gasUsed, 100_000, "commitToNextPeriod (restaked) over its bar");
        uint256 reward = escrow.getStakerInfo(nodeA).rewardsMinted;
        assertGt(reward, 0);
        assertEq(escrow.stakeOf(nodeA), escrow.heldStakeOf(nodeA), "the reward is locked");
        assertEq(escrow.getStakerInfo(nodeA).commitLocked[0], STAKE + reward, "and counted");
        assertEq(policyManager.fees(nodeA), 1 gwei, "the accrual");
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

    function test_Gas_Lock() public {
        vm.prank(workerOf(nodeA));
        uint256 reward = escrow.mint();
        vm.prank(nodeA);
        escrow.lock(reward, 60);
        uint256 gasUsed = vm.snapshotGasLastCall("lock (new sub-stake of rewards)");
        assertLe(gasUsed, 65_000, "lock over its bar");
    }

    function test_Gas_Increase() public {
        fund(nodeA, STAKE);
        vm.startPrank(nodeA);
        token.approve(address(escrow), STAKE);
        escrow.increase(0, MIN_STAKE);
        vm.stopPrank();
        uint256 gasUsed = vm.snapshotGasLastCall("increase (from the wallet)");
        assertLe(gasUsed, 65_000, "increase over its bar");
    }

    function test_Gas_IncreaseFromUnlocked() public {
        vm.prank(workerOf(nodeA));
        uint256 reward = escrow.mint();
        vm.prank(nodeA);
        escrow.increaseFromUnlocked(0, reward);
        uint256 gasUsed = vm.snapshotGasLastCall("increaseFromUnlocked (rewards)");
        assertLe(gasUsed, 40_000, "increaseFromUnlocked over its bar");
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
        // As during any period on a live network: every node has committed to the current and the
        // next period (both are credited to it now) and withdrawn its fees.
        commitAll();
        withdrawAll();
        address[] memory nodes = list(nodeA, nodeB, nodeC);
        uint256 value = 1 gwei * 3 * 30;
        vm.deal(alice, value);
        vm.prank(alice);
        policyManager.createPolicy{value: value}(bytes16("policy"), alice, alice, endAfter(30), nodes);
        uint256 gasUsed = vm.snapshotGasLastCall("createPolicy (3 nodes)");
        assertLe(gasUsed, 250_000, "createPolicy over its bar");
        assertEq(policyManager.fees(nodeA), 2 * 1 gwei, "the current and the next period credited");
    }

    function test_Gas_WithdrawFees() public {
        // Emptied by last period's withdrawal, refilled by this period's commitment.
        commit(nodeA);
        assertEq(policyManager.fees(nodeA), 1 gwei);
        // From the worker, as the node's duty sends it.
        withdrawFees(nodeA);
        uint256 gasUsed = vm.snapshotGasLastCall("withdrawFees (by the worker)");
        assertLe(gasUsed, 40_000, "withdrawFees over its bar");
        assertEq(policyManager.fees(nodeA), 0);
    }

    function test_Gas_WithdrawFees_ByStaker() public {
        commit(nodeA);
        vm.prank(nodeA);
        policyManager.withdrawFees(nodeA);
        uint256 gasUsed = vm.snapshotGasLastCall("withdrawFees (by the staker)");
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

    /// Alice extends her policy by 30 periods, in the state nodes run in (each committed to the
    /// current and the next period and withdrew its fees): per node, the rate's end moves from one
    /// `rateEnding` entry (emptied) to another, written from zero (the dearest case, as for
    /// `createPolicy`: no other policy of the node ends there).
    function test_Gas_ExtendPolicy_ThreeNodes() public {
        commitAll();
        withdrawAll();
        uint256 end = (policyManager.getPolicy(warmUp).lastPeriod + 31) * PERIOD;
        uint256 value = 1 gwei * 3 * 30;
        vm.deal(alice, value);
        vm.prank(alice);
        policyManager.extendPolicy{value: value}(warmUp, end, list(nodeA, nodeB, nodeC));
        uint256 gasUsed = vm.snapshotGasLastCall("extendPolicy (3 nodes)");
        assertLe(gasUsed, 150_000, "extendPolicy over its bar");
        assertEq(policyManager.getPolicy(warmUp).endTimestamp, end);
    }

    /// A relayer carries out Alice's signed order to revoke her policy: `revokePolicy` plus the
    /// signature's recovery and its calldata.
    function test_Gas_RevokeBySignature_ThreeNodes() public {
        uint64 deadline = uint64(vm.getBlockTimestamp() + 1 hours);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(
            uint256(keccak256("alice")), policyManager.revocationTypedDataHash(warmUp, address(0), deadline)
        );
        vm.prank(makeAddr("relayer"));
        policyManager.revokeBySignature(
            warmUp, address(0), deadline, list(nodeA, nodeB, nodeC), abi.encodePacked(r, s, v)
        );
        uint256 gasUsed = vm.snapshotGasLastCall("revokeBySignature (3 nodes)");
        assertLe(gasUsed, 100_000, "revokeBySignature over its bar");
        assertTrue(policyManager.getPolicy(warmUp).revoked);
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
