// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

/// @title IPolicyManager
/// @notice What the staking escrow calls on the policy manager.
interface IPolicyManager {
    /// @notice Records that `node` committed to `period`, accruing the node's fees for that period.
    /// Requirements: called by the escrow, at most once per node and period, with `period` increasing.
    /// @param node The staker's address.
    /// @param period The period committed to (always the escrow's current period + 1).
    function recordCommitment(address node, uint256 period) external;

    /// @notice Records `node`'s worker after a bond (zero: unbonded), so that `withdrawFees` can
    /// check its caller without calling back the escrow.
    /// Requirements: called by the escrow, at every bond.
    /// @param node The staker's address.
    /// @param worker Its worker from now on.
    function recordWorker(address node, address worker) external;

    /// @notice The address of the key that signs the policy's kfrags, or zero for an unknown policy.
    function kfragSignerOf(bytes16 policyId) external view returns (address);
}
