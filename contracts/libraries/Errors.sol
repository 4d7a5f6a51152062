// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

/// @title Errors
/// @notice Every custom error of the KMS contracts, in one place, named `Contract_Condition(args)`.
library Errors {
    /*//////////////////////////////////////////////////////////////
                                KMS TOKEN
    //////////////////////////////////////////////////////////////*/

    /// @notice Thrown when an account other than the minter tries to mint.
    error KMSToken_CallerNotMinter(address caller, address minter);

    /// @notice Thrown when the minter would be the zero address.
    error KMSToken_ZeroMinter();

    /// @notice Thrown when the cap does not fit the 96-bit amounts the escrow packs into storage.
    error KMSToken_CapTooLarge(uint256 cap);

    /*//////////////////////////////////////////////////////////////
                              STAKING ESCROW
    //////////////////////////////////////////////////////////////*/

    /// @notice Thrown when a constructor parameter is out of its range.
    error StakingEscrow_InvalidParameter(string name);

    /// @notice Thrown when the token's minter is not this escrow.
    error StakingEscrow_NotTheMinter(address minter);

    /// @notice Thrown when a one-time link to another contract is set again or set to zero.
    error StakingEscrow_LinkNotSettable(string name);

    /// @notice Thrown when a sub-stake is smaller than the minimum stake.
    error StakingEscrow_AmountBelowMinStake(uint256 amount, uint256 minStake);

    /// @notice Thrown when a sub-stake locked from unlocked tokens is below the minimum stake and the
    /// staker's locked total in its last period, `locked` with it, would be too.
    error StakingEscrow_LockedBelowMinStake(uint256 locked, uint256 minStake);

    /// @notice Thrown when the staker's locked total would exceed the maximum stake.
    error StakingEscrow_StakeAboveMax(uint256 lockedAfter, uint256 maxStake);

    /// @notice Thrown when a lock duration is outside `[minLockPeriods, maxLockPeriods]`.
    error StakingEscrow_LockOutOfRange(uint256 periods, uint256 minLockPeriods, uint256 maxLockPeriods);

    /// @notice Thrown when the staker already holds the maximum number of active sub-stakes.
    error StakingEscrow_TooManySubStakes(uint256 maxSubStakes);

    /// @notice Thrown when a sub-stake index does not exist.
    error StakingEscrow_SubStakeNotFound(address staker, uint256 index);

    /// @notice Thrown when a sub-stake has already unlocked and cannot be changed.
    error StakingEscrow_SubStakeInactive(uint256 index, uint256 lastPeriod, uint256 currentPeriod);

    /// @notice Thrown when two sub-stakes cannot be merged (same index or different last periods).
    error StakingEscrow_SubStakesNotMergeable(uint256 index1, uint256 index2);

    /// @notice Thrown when a zero amount or zero periods is given where a positive value is needed.
    error StakingEscrow_ZeroValue();

    /// @notice Thrown when a withdrawal asks for more than the unlocked balance.
    error StakingEscrow_InsufficientUnlocked(uint256 requested, uint256 unlocked);

    /// @notice Thrown when the caller has no stake in the escrow.
    error StakingEscrow_NotAStaker(address account);

    /// @notice Thrown when the caller is not a bonded worker.
    error StakingEscrow_NotAWorker(address account);

    /// @notice Thrown when the worker is already bonded to a staker.
    error StakingEscrow_WorkerAlreadyBonded(address worker, address staker);

    /// @notice Thrown when a worker key's last bond ended within the evidence window: it can be
    /// bonded again from `availablePeriod`.
    error StakingEscrow_WorkerCoolingDown(address worker, uint256 availablePeriod);

    /// @notice Thrown when the caller accepts a bond that `staker` did not propose to it.
    error StakingEscrow_NotProposedWorker(address staker, address caller);

    /// @notice Thrown when the worker is itself a staker (only a staker may be its own worker).
    error StakingEscrow_WorkerIsAStaker(address worker);

    /// @notice Thrown when a worker change comes before the minimum bonding duration has passed.
    error StakingEscrow_WorkerBondedTooRecently(uint256 bondedPeriod, uint256 earliestChangePeriod);

    /// @notice Thrown when the worker already committed to the next period.
    error StakingEscrow_AlreadyCommitted(uint256 period);

    /// @notice Thrown when the staker has nothing locked for the period it tries to commit to.
    error StakingEscrow_NothingLockedNextPeriod(address staker, uint256 period);

    /// @notice Thrown when a node record's URL or Umbral public key is malformed.
    error StakingEscrow_InvalidNodeRecord(string reason);

    /// @notice Thrown when `slash` is called by anyone but the Adjudicator.
    error StakingEscrow_CallerNotAdjudicator(address caller);

    /// @notice Thrown when the slash arguments are inconsistent.
    error StakingEscrow_InvalidSlash(uint256 penalty, uint256 reward);

    /// @notice Thrown when the caller may not act for the staker.
    error StakingEscrow_NotStakerOrWorker(address caller, address staker);

    /*//////////////////////////////////////////////////////////////
                              POLICY MANAGER
    //////////////////////////////////////////////////////////////*/

    /// @notice Thrown when `recordCommitment` or `recordWorker` is called by anyone but the escrow.
    error PolicyManager_CallerNotEscrow(address caller);

    /// @notice Thrown when a policy id is already taken.
    error PolicyManager_PolicyExists(bytes16 policyId);

    /// @notice Thrown when a policy id is unknown.
    error PolicyManager_PolicyNotFound(bytes16 policyId);

    /// @notice Thrown when an address argument is zero.
    error PolicyManager_ZeroAddress(string name);

    /// @notice Thrown when the end timestamp is not in the future (or beyond the supported range).
    error PolicyManager_InvalidEnd(uint256 endTimestamp, uint256 nowTimestamp);

    /// @notice Thrown when the node list is empty or longer than the maximum.
    error PolicyManager_InvalidNodeCount(uint256 count, uint256 maxNodes);

    /// @notice Thrown when the node list is not strictly ascending (which also rules out duplicates).
    error PolicyManager_NodesNotSorted(uint256 index);

    /// @notice Thrown when the payment is not a positive multiple of `nodes * periods`.
    error PolicyManager_InvalidPayment(uint256 value, uint256 nodes, uint256 periods);

    /// @notice Thrown when the resulting fee rate does not fit the stored 80 bits.
    error PolicyManager_FeeRateTooHigh(uint256 feeRate);

    /// @notice Thrown when the fee rate is below what a node asks.
    error PolicyManager_FeeRateBelowNodeMinimum(address node, uint256 feeRate, uint256 minFeeRate);

    /// @notice Thrown when a node is not staked through the policy's last period or has no worker.
    error PolicyManager_NodeNotEligible(address node, uint256 lastPeriod);

    /// @notice Thrown when the caller is not the policy's owner.
    error PolicyManager_CallerNotPolicyOwner(address caller, address owner);

    /// @notice Thrown when the policy or arrangement is already revoked.
    error PolicyManager_AlreadyRevoked(bytes16 policyId, address node);

    /// @notice Thrown when the policy has already ended.
    error PolicyManager_PolicyEnded(bytes16 policyId, uint256 endTimestamp);

    /// @notice Thrown when the node is not part of the policy.
    error PolicyManager_NodeNotInPolicy(bytes16 policyId, address node);

    /// @notice Thrown when the node list given does not hash to the policy's.
    error PolicyManager_NodesMismatch(bytes16 policyId);

    /// @notice Thrown when there is nothing to refund or withdraw.
    error PolicyManager_NothingToPay();

    /// @notice Thrown when sending ETH fails.
    error PolicyManager_TransferFailed(address recipient, uint256 amount);

    /// @notice Thrown when the global fee-rate bounds are inconsistent (`min <= default <= max`).
    error PolicyManager_InvalidFeeRateRange(uint256 min, uint256 defaultRate, uint256 max);

    /// @notice Thrown when a node's minimum fee rate is outside the global bounds.
    error PolicyManager_FeeRateOutOfRange(uint256 rate, uint256 min, uint256 max);

    /// @notice Thrown when the caller is neither the node (staker) nor its bonded worker.
    error PolicyManager_CallerNotNodeOrWorker(address caller, address node);

    /// @notice Thrown when the caller is not a staker with a stake in the escrow.
    error PolicyManager_NotANode(address caller);

    /// @notice Thrown when an extension's new end is not in a period after the policy's last period
    /// (or is beyond the supported range).
    error PolicyManager_InvalidExtension(uint256 endTimestamp, uint256 currentEndTimestamp);

    /// @notice Thrown when an extension's payment is not exactly `feeRate * live nodes * added periods`.
    error PolicyManager_InvalidExtensionPayment(uint256 value, uint256 expected);

    /// @notice Thrown when every arrangement of the policy is revoked: there is nothing to extend.
    error PolicyManager_NoLiveArrangement(bytes16 policyId);

    /// @notice Thrown when a signed revocation order is carried out after its deadline.
    error PolicyManager_SignatureExpired(uint256 deadline, uint256 nowTimestamp);

    /// @notice Thrown when a revocation order's signature is malformed or not the policy owner's
    /// (`signer` is what it recovers to, zero when it recovers to nothing).
    error PolicyManager_InvalidSignature(address signer, address owner);

    /*//////////////////////////////////////////////////////////////
                               ADJUDICATOR
    //////////////////////////////////////////////////////////////*/

    /// @notice Thrown when a constructor coefficient is zero.
    error Adjudicator_InvalidParameter();

    /// @notice Thrown when the evidence is malformed (lengths, points, products): never a slash.
    error Adjudicator_MalformedEvidence(string what);

    /// @notice Thrown when the same capsule and cfrag were already evaluated.
    error Adjudicator_AlreadyEvaluated(bytes32 evidenceHash);

    /// @notice Thrown when the evidence names an unknown policy.
    error Adjudicator_PolicyNotFound(bytes16 policyId);

    /// @notice Thrown when the cfrag's kfrag signature does not recover the policy's kfrag signer.
    error Adjudicator_KfragSignatureMismatch(address recovered, address expected);

    /// @notice Thrown when the worker signature cannot be parsed or recovered.
    error Adjudicator_InvalidWorkerSignature();

    /// @notice Thrown when the answer's signer was not bonded to the staker it names in the period it names.
    error Adjudicator_WorkerNotBondedInPeriod(address worker, address staker, uint256 period);

    /// @notice Thrown when the answer was given more than `window` periods before the current period.
    error Adjudicator_EvidenceExpired(uint256 period, uint256 currentPeriod, uint256 window);

    /// @notice Thrown when the answer names a period that has not started yet.
    error Adjudicator_PeriodInFuture(uint256 period, uint256 currentPeriod);

    /// @notice Thrown when the caller did not commit to this evidence in an earlier block.
    error Adjudicator_NotCommitted(bytes32 commitment);

    /// @notice Thrown when the evidence is revealed in the block it was committed in.
    error Adjudicator_RevealTooEarly(uint256 committedBlock);

    /// @notice Thrown when the investigator (the reveal's sender or the beneficiary it names) is the
    /// slashed staker or one of its workers.
    error Adjudicator_InvestigatorIsCulprit(address investigator);

    /// @notice Thrown when `evaluateCFragFor` names the zero address to be paid.
    error Adjudicator_ZeroBeneficiary();
}
