// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Base} from "../utils/Base.sol";

/// @notice No state-changing function walks the stakers or the policies: the gas of a node's
/// commitment, of its mint and of a policy creation or extension naming it stays the same (within
/// 2%) whether the network has 10 or 1,000 stakers and whether the node holds 1 or 500 policies.
/// Run isolated (`forge test --isolate`), so every measured call is its own transaction.
contract ScaleTest is Base {
    uint256 internal constant STAKE = 100_000e18;

    struct Costs {
        uint256 commit;
        uint256 mint;
        uint256 createPolicy;
        uint256 extendPolicy;
    }

    function test_Scale_StakerCountDoesNotChangeGas() public {
        Costs memory small = measure(10, 1);
        Costs memory large = measure(1_000, 1);
        assertClose(small, large);
        vm.snapshotValue("scale: commit, 10 stakers", small.commit);
        vm.snapshotValue("scale: commit, 1000 stakers", large.commit);
    }

    function test_Scale_PolicyCountDoesNotChangeGas() public {
        Costs memory small = measure(10, 1);
        Costs memory large = measure(10, 500);
        assertClose(small, large);
        vm.snapshotValue("scale: createPolicy, 1 policy on the node", small.createPolicy);
        vm.snapshotValue("scale: createPolicy, 500 policies on the node", large.createPolicy);
        vm.snapshotValue("scale: extendPolicy, 1 policy on the node", small.extendPolicy);
        vm.snapshotValue("scale: extendPolicy, 500 policies on the node", large.extendPolicy);
    }

    function assertClose(Costs memory a, Costs memory b) internal pure {
        vm.assertApproxEqRel(a.commit, b.commit, 0.02e18, "commit gas depends on scale");
        vm.assertApproxEqRel(a.mint, b.mint, 0.02e18, "mint gas depends on scale");
        vm.assertApproxEqRel(a.createPolicy, b.createPolicy, 0.02e18, "createPolicy gas depends on scale");
        vm.assertApproxEqRel(a.extendPolicy, b.extendPolicy, 0.02e18, "extendPolicy gas depends on scale");
    }

    /// @dev A fresh network of `stakerCount` committed stakers; the first three are the measured
    /// nodes, the first holds `policyCount` policies ending at distinct periods.
    function measure(uint256 stakerCount, uint256 policyCount) internal returns (Costs memory costs) {
        setUp();
        address[] memory stakers = new address[](stakerCount);
        for (uint256 i; i < stakerCount; ++i) {
            stakers[i] = newNode(string.concat("staker-", vm.toString(i)), STAKE, 600);
            commit(stakers[i]);
        }
        address target = stakers[0];
        address alice = makeAddr("alice");
        for (uint256 i; i < policyCount; ++i) {
            createPolicy(bytes16(keccak256(abi.encode("p", i))), alice, list(target), 10 + i, 1 gwei);
        }
        advancePeriods(1);
        // Steady state: another staker committed first, so the period's issuance is allocated.
        commit(stakers[1]);
        commit(stakers[2]);
        vm.prank(workerOf(target));
        escrow.commitToNextPeriod();
        costs.commit = vm.snapshotGasLastCall("scale: last commit");

        advancePeriods(2);
        vm.prank(workerOf(target));
        escrow.mint();
        costs.mint = vm.snapshotGasLastCall("scale: last mint");

        // Ends after every other policy: the same fresh storage in both scenarios.
        address[] memory nodes = list(stakers[0], stakers[1], stakers[2]);
        vm.deal(alice, 3 * 590 gwei);
        uint256 end = endAfter(590);
        vm.prank(alice);
        bytes16 measured =
            policyManager.createPolicy{value: 3 * 590 gwei}(bytes16("measured"), alice, alice, end, nodes);
        costs.createPolicy = vm.snapshotGasLastCall("scale: last createPolicy");

        // Five periods more, still within the nodes' stakes.
        vm.deal(alice, 3 * 5 gwei);
        vm.prank(alice);
        policyManager.extendPolicy{value: 3 * 5 gwei}(measured, end + 5 * PERIOD, nodes);
        costs.extendPolicy = vm.snapshotGasLastCall("scale: last extendPolicy");
    }
}
