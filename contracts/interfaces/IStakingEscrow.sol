// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

/// @title IStakingEscrow
/// @notice What the policy manager and the adjudicator read from, or ask of, the staking escrow.
interface IStakingEscrow {
    /// @notice The length of a period, in seconds.
    function secondsPerPeriod() external view returns (uint256);

    /// @notice The current period: `block.timestamp / secondsPerPeriod`.
    function currentPeriod() external view returns (uint256);

    /// @notice The staker a worker is bonded to, or zero.
    function stakerOf(address worker) external view returns (address);

    /// @notice The worker bonded to a staker, or zero.
    function workerOf(address staker) external view returns (address);

    /// @notice The staker's tokens locked in `period` (a current or future period) and its worker.
    /// @dev One call for what a policy needs of each node: staked through the end, and a worker.
    function policyEligibility(address staker, uint256 period)
        external
        view
        returns (uint256 locked, address worker);

    /// @notice The staker's tokens held by the escrow, locked or not.
    function stakeOf(address staker) external view returns (uint256);

    /// @notice Takes `penalty` from the staker, pays `reward` of it to `investigator`, burns the rest.
    /// Requirements: called by the adjudicator; `reward <= penalty`.
    function slash(address staker, uint256 penalty, address investigator, uint256 reward) external;
}
