// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Base} from "../utils/Base.sol";

/// @notice Fee accounting under random commitment patterns, creation times, revocations and
/// withdrawals: at the end, every wei Alice paid is either a node's fee for a period it committed
/// to, or refunded; a withdrawal pays all of a node's fees and never frees its fee slot.
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

    /// Nodes that withdraw at random points (from the worker or the staker, as often as every
    /// period): each withdrawal pays everything accrued, leaves nothing, and never frees the fee
    /// slot; the fees earned add up as when nobody withdraws.
    /// @param pattern bit (3 * period + node): whether the node commits in that period
    /// @param withdrawals bit (3 * period + node): whether the node withdraws after it; the bit
    /// after: whether from the staker rather than the worker
    function testFuzz_WithdrawalsPayEverythingAndKeepTheSlotLive(
        uint256 pattern,
        uint256 withdrawals,
        uint256 periods,
        uint256 rate
    ) public {
        periods = bound(periods, 1, 40);
        rate = bound(rate, DEFAULT_FEE_RATE, 1e15);
        uint256 paid = rate * 3 * periods;
        vm.deal(alice, paid);
        vm.prank(alice);
        policyManager.createPolicy{value: paid}(SALT, alice, alice, endAfter(periods), nodeList());
        uint256 start = currentPeriod();

        uint256 withdrawn;
        for (uint256 p; p < periods + 1; ++p) {
            commitSome(pattern, p);
            for (uint256 n; n < 3; ++n) {
                uint256 bit = (3 * p + n) % 255;
                if ((withdrawals >> bit) & 1 == 0) continue;
                withdrawn += withdrawAll(nodes[n], (withdrawals >> (bit + 1)) & 1 == 1);
            }
            advancePeriods(1);
        }
        uint256 earned;
        for (uint256 n; n < 3; ++n) {
            earned += rate * policyManager.committedCount(nodes[n], start, start + periods - 1);
        }
        uint256 left =
            policyManager.fees(nodes[0]) + policyManager.fees(nodes[1]) + policyManager.fees(nodes[2]);
        assertEq(withdrawn + left, earned, "withdrawn + left != earned");
        assertEq(nodes[0].balance + nodes[1].balance + nodes[2].balance, withdrawn, "paid elsewhere");
        assertEq(address(policyManager).balance + withdrawn, paid, "ETH lost");
    }

    /// @dev `node` withdraws all its fees (nothing when it has none); returns what it was paid.
    function withdrawAll(address node, bool byStaker) internal returns (uint256 amount) {
        uint256 accrued = policyManager.fees(node);
        if (accrued == 0) return 0;
        uint256 balance = node.balance;
        vm.prank(byStaker ? node : workerOf(node));
        amount = policyManager.withdrawFees(node);
        assertEq(amount, accrued, "a withdrawal paid less than the fees");
        assertEq(node.balance - balance, amount, "the fees went elsewhere");
        assertEq(policyManager.fees(node), 0, "a withdrawal left fees behind");
        // `feeAccounts[node]`, slot 5 of the PolicyManager (see test/unit/PolicyManager.t.sol).
        bytes32 slot = keccak256(abi.encode(node, uint256(5)));
        assertTrue(vm.load(address(policyManager), slot) != 0, "a withdrawal freed the fee slot");
    }

    function commitSome(uint256 pattern, uint256 step) internal {
        for (uint256 n; n < 3; ++n) {
            if ((pattern >> ((3 * step + n) % 256)) & 1 == 1) commit(nodes[n]);
        }
    }
}
