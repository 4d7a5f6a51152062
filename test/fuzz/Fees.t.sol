// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Base} from "../utils/Base.sol";

/// @notice Fee accounting under random commitment patterns, creation times and revocations: at the
/// end, every wei Alice paid is either a node's fee for a period it committed to, or refunded.
contract FeesFuzzTest is Base {
    uint256 internal constant STAKE = 100_000e18;
    bytes16 internal constant SALT = bytes16("fuzzed");

    address internal alice = makeAddr("alice");
    address[3] internal nodes;

    function setUp() public override {
        super.setUp();
        nodes[0] = newNode("a", STAKE, 200);
        nodes[1] = newNode("b", STAKE, 200);
        nodes[2] = newNode("c", STAKE, 200);
    }

    function nodeList() internal view returns (address[] memory) {
        return list(nodes[0], nodes[1], nodes[2]);
    }

    /// @param pattern bit (3 * period + node): whether the node commits in that period
    function testFuzz_EveryWeiIsEarnedOrRefunded(
        uint256 pattern,
        uint256 warmUp,
        uint256 periods,
        uint256 rate,
        uint256 revokeAt
    ) public {
        warmUp = bound(warmUp, 0, 3);
        periods = bound(periods, 1, 40);
        rate = bound(rate, DEFAULT_FEE_RATE, 1e15);
        revokeAt = bound(revokeAt, 0, periods + 5); // > periods - 1: never revoked

        // Random commitments before the policy (they may cover its first periods).
        for (uint256 p; p < warmUp; ++p) {
            commitSome(pattern, p);
            advancePeriods(1);
        }
        uint256 paid = rate * 3 * periods;
        vm.deal(alice, paid);
        vm.prank(alice);
        bytes16 id =
            policyManager.createPolicy{value: paid}(SALT, alice, alice, endAfter(periods), nodeList());

        bool revoked;
        uint256 expectedFees;
        uint256 start = currentPeriod();
        for (uint256 p; p < periods + 2; ++p) {
            if (p == revokeAt && p < periods) {
                vm.prank(alice);
                policyManager.revokePolicy(id, nodeList());
                revoked = true;
            }
            commitSome(pattern, warmUp + p);
            advancePeriods(1);
        }
        // Expected fees: commitments to periods of the policy made before the revocation.
        for (uint256 n; n < 3; ++n) {
            for (uint256 period = start; period < start + periods; ++period) {
                if (!policyManager.isCommitted(nodes[n], period)) continue;
                // A commitment to `period` is made during `period - 1`, i.e. at loop step
                // `period - start - 1` (or before creation for `start`).
                bool madeBeforeRevocation = !revoked || period <= start + revokeAt;
                if (madeBeforeRevocation) expectedFees += rate;
            }
        }
        if (!revoked) {
            vm.prank(alice);
            try policyManager.refund(id, nodeList()) {} catch {}
        }
        uint256 fees =
            policyManager.fees(nodes[0]) + policyManager.fees(nodes[1]) + policyManager.fees(nodes[2]);
        assertEq(fees, expectedFees, "fees != committed periods of the live policy");
        assertEq(fees + alice.balance, paid, "paid != earned + refunded");
        assertEq(address(policyManager).balance, fees);
    }

    function commitSome(uint256 pattern, uint256 step) internal {
        for (uint256 n; n < 3; ++n) {
            if ((pattern >> ((3 * step + n) % 256)) & 1 == 1) commit(nodes[n]);
        }
    }
}
