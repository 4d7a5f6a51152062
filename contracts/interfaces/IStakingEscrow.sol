// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

/// @title IStakingEscrow
/// @notice What the policy manager and the adjudicator read from, or ask of, the staking escrow.
interface IStakingEscrow {
    /// @notice The length of a period, in seconds.
    function secondsPerPeriod() external view returns (uint256);

    /// @notice The current period: `block.timestamp / secondsPerPeriod`.
    function currentPeriod() external view returns (uint256);

    /// @notice The staker a worker is bonded to now, or zero.
    function stakerOf(address worker) external view returns (address);

    /// @notice The latest bond of a worker key: to `staker` from `firstPeriod` through `lastPeriod`
    /// (both included; `type(uint32).max` while the bond is in force; all zero if never bonded).
    /// @dev A key is not bonded again until `evidenceWindow` periods after its bond ended, so this one
    /// record answers which staker a worker's answer of any still-judgeable period belongs to.
    function workerBond(address worker)
        external
        view
        returns (address staker, uint256 firstPeriod, uint256 lastPeriod);

    /// @notice How many periods a worker's signed answer stays slashable after the period it was
    /// given in, and locked tokens stay in the escrow after their lock ends.
    function evidenceWindow() external view returns (uint256);

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

    /// @notice The staker's tokens that cannot be withdrawn now: sub-stakes locked in the current
    /// period or whose lock ended within the last `evidenceWindow` periods. The penalty cap counts
    /// these, so withdrawing free tokens cannot lower it.
    function heldStakeOf(address staker) external view returns (uint256);

    /// @notice Takes `penalty` from the staker, pays `reward` of it to `investigator`, burns the rest.
    /// Requirements: called by the adjudicator; `reward <= penalty`.
    function slash(address staker, uint256 penalty, address investigator, uint256 reward) external;
}
