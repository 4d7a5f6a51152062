// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Base} from "../utils/Base.sol";

/// @notice Fee accounting under random commitment patterns, creation times, extensions,
/// revocations and withdrawals: at the end, every wei Alice paid is either a node's fee for a period
/// it committed to, or refunded; a withdrawal pays all of a node's fees and never frees its fee slot.
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

    /// Extensions (one or two, each by 1 to 20 periods, before or after the nodes' commitments of
    /// their period: in the policy's last period a node may have committed past the old end) among
    /// random commitments, with a revocation of the policy or of one arrangement before, between or
    /// after them: every wei paid, at creation and for the extensions, is a node's fee for a period
    /// of the extended policy it committed to while its arrangement was live, or refunded.
    /// @param pattern bit (3 * step + node): whether the node commits in that step
    /// @param extendAt the steps (periods after the creation's) of the two extensions, 16 bits each
    /// @param extension the periods added by each, 16 bits each; bit 32: extend after the commitments
    /// @param revokeAt the step of the revocation (past the end: none)
    /// @param revokeWhat 0: the whole policy; 1 to 3: that node's arrangement
    function testFuzz_ExtensionsKeepEveryWeiEarnedOrRefunded(
        uint256 pattern,
        uint256 periods,
        uint256 rate,
        uint256 extendAt,
        uint256 extension,
        uint256 revokeAt,
        uint256 revokeWhat
    ) public {
        uint256 warmUp = bound(pattern >> 250, 0, 3);
        periods = bound(periods, 1, 20);
        rate = bound(rate, DEFAULT_FEE_RATE, 1e15);
        revokeAt = bound(revokeAt, 0, 60);
        revokeWhat = revokeWhat % 4;

        for (uint256 p; p < warmUp; ++p) {
            commitSome(pattern, p);
            advancePeriods(1);
        }
        uint256 paid = rate * 3 * periods;
        vm.deal(alice, paid);
        vm.prank(alice);
        bytes16 id =
            policyManager.createPolicy{value: paid}(SALT, alice, alice, endAfter(periods), nodeList());
        uint256 start = currentPeriod();
        uint256 lastPeriod = start + periods - 1;
        // The period from which each node's arrangement is revoked (none: beyond every period).
        uint256[3] memory revokedFrom = [type(uint256).max, type(uint256).max, type(uint256).max];
        bool lateExtensions = (extension >> 32) & 1 == 1;

        for (uint256 p; start + p <= lastPeriod + 2; ++p) {
            if (p == revokeAt && start + p <= lastPeriod) revokedFrom = revoke(id, revokeWhat, revokedFrom);
            if (!lateExtensions) {
                (lastPeriod, paid) = maybeExtend(id, p, extendAt, extension, lastPeriod, paid);
            }
            commitSome(pattern, warmUp + p);
            if (lateExtensions) {
                (lastPeriod, paid) = maybeExtend(id, p, extendAt, extension, lastPeriod, paid);
            }
            advancePeriods(1);
        }
        // Expected fees: commitments to periods of the (extended) policy, made while the node's
        // arrangement was live (a commitment to `period` is made during `period - 1`, before any
        // revocation in `period`).
        uint256 expectedFees;
        for (uint256 n; n < 3; ++n) {
            for (uint256 period = start; period <= lastPeriod; ++period) {
                if (policyManager.isCommitted(nodes[n], period) && period <= revokedFrom[n]) {
                    expectedFees += rate;
                }
            }
        }
        if (!policyManager.getPolicy(id).revoked) {
            try policyManager.refund(id, nodeList()) {} catch {}
        }
        uint256 fees =
            policyManager.fees(nodes[0]) + policyManager.fees(nodes[1]) + policyManager.fees(nodes[2]);
        assertEq(policyManager.getPolicy(id).lastPeriod, lastPeriod);
        assertEq(fees, expectedFees, "fees != committed periods of the live arrangements");
        assertEq(fees + alice.balance, paid, "paid != earned + refunded");
        assertEq(address(policyManager).balance, fees);
    }

    /// @dev Extends `id` at step `p` if one of the two extensions of `extendAt` falls there and the
    /// policy can be extended (live, with a live arrangement); returns the new last period and the
    /// total paid.
    function maybeExtend(
        bytes16 id,
        uint256 p,
        uint256 extendAt,
        uint256 extension,
        uint256 lastPeriod,
        uint256 paid
    ) internal returns (uint256, uint256) {
        for (uint256 k; k < 2; ++k) {
            if (p != bound((extendAt >> (16 * k)) & 0xffff, 0, 25)) continue;
            if (
                policyManager.getPolicy(id).revoked || currentPeriod() > lastPeriod
                    || liveArrangements(id) == 0
            ) {
                continue;
            }
            uint256 added = bound((extension >> (16 * k)) & 0xffff, 1, 20);
            paid += extend(id, lastPeriod, added);
            lastPeriod += added;
        }
        return (lastPeriod, paid);
    }

    /// @dev Alice extends `id` from `lastPeriod` by `added` periods, paying its live arrangements at
    /// its rate; returns what she paid.
    function extend(bytes16 id, uint256 lastPeriod, uint256 added) internal returns (uint256 value) {
        value = policyManager.getPolicy(id).feeRate * liveArrangements(id) * added;
        vm.deal(alice, alice.balance + value);
        vm.prank(alice);
        uint256 extended =
            policyManager.extendPolicy{value: value}(id, (lastPeriod + added + 1) * PERIOD, nodeList());
        assertEq(extended, lastPeriod + added, "another last period");
    }

    function liveArrangements(bytes16 id) internal view returns (uint256 live) {
        for (uint256 n; n < 3; ++n) {
            if (!policyManager.arrangementRevoked(id, nodes[n])) ++live;
        }
    }

    /// @dev Alice revokes the whole policy (`what` 0) or node `what - 1`'s arrangement now.
    function revoke(bytes16 id, uint256 what, uint256[3] memory revokedFrom)
        internal
        returns (uint256[3] memory)
    {
        vm.startPrank(alice);
        if (what == 0) {
            policyManager.revokePolicy(id, nodeList());
            for (uint256 n; n < 3; ++n) {
                if (revokedFrom[n] == type(uint256).max) revokedFrom[n] = currentPeriod();
            }
        } else {
            policyManager.revokeArrangement(id, nodes[what - 1], nodeList());
            revokedFrom[what - 1] = currentPeriod();
        }
        vm.stopPrank();
        return revokedFrom;
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
