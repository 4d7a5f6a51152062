// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {KMSToken} from "../../../contracts/KMSToken.sol";
import {StakingEscrow} from "../../../contracts/StakingEscrow.sol";
import {Vm} from "../../utils/Vm.sol";
import {IReStakeExpectations, KMSHandler} from "./KMSHandler.sol";

/// @notice The compounding actions of `KMSHandler`'s stakers: lock unlocked tokens as a new
/// sub-stake, top a sub-stake up from the wallet or from the unlocked balance, and turn restaking
/// on or off. Beside `KMSHandler` (one contract would exceed the EIP-170 code size), with ghost
/// totals of its own for the invariants. It also predicts and checks, for `KMSHandler`'s `commit`
/// and `mint`, what restaking a reward must do (`IReStakeExpectations`).
contract CompoundingHandler is IReStakeExpectations {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    KMSToken public immutable token;
    StakingEscrow public immutable escrow;
    KMSHandler public immutable kms;

    /// @notice Tokens each staker added to its sub-stakes from its wallet (`increase`).
    mapping(address => uint256) public ghostIncreased;
    /// @notice Each staker's restake switch, as the handler last set it.
    mapping(address => bool) public ghostReStake;
    // Counters, to see that the run did something
    mapping(bytes32 => uint256) public calls;

    constructor(KMSToken token_, StakingEscrow escrow_, KMSHandler kms_) {
        token = token_;
        escrow = escrow_;
        kms = kms_;
    }

    /*//////////////////////////////////////////////////////////////
                                ACTIONS
    //////////////////////////////////////////////////////////////*/

    /// @notice Locks unlocked tokens as a new sub-stake: half the time an amount up to the minimum
    /// stake, refused below it exactly when the staker's other sub-stakes do not make up the minimum
    /// through its last period; a full sub-stake table refuses too.
    function lock(uint256 actorSeed, uint256 amount, uint256 periods) external {
        address staker = _staker(actorSeed);
        uint256 unlocked = escrow.stakeOf(staker) - escrow.heldStakeOf(staker);
        if (unlocked == 0) return;
        uint256 minStake = escrow.minStake();
        bool small = (actorSeed / 8) % 2 == 0 && unlocked > minStake;
        amount = _bound(amount, 1, small ? minStake : unlocked);
        periods = _bound(periods, escrow.minLockPeriods(), 120);
        uint256 current = escrow.currentPeriod();
        if (escrow.lockedAt(staker, current) + amount > escrow.maxStake()) return;
        bool belowMin = amount < minStake && escrow.lockedAt(staker, current + periods) + amount < minStake;
        bool full = !_hasFreeSlot(staker, current);
        uint256 stake = escrow.stakeOf(staker);
        vm.prank(staker);
        try escrow.lock(amount, periods) returns (uint256 index) {
            require(!belowMin && !full, "lock took what it must refuse");
            StakingEscrow.SubStake memory subStake = escrow.getSubStakes(staker)[index];
            require(
                subStake.amount == amount && subStake.firstPeriod == current
                    && subStake.lastPeriod == current + periods,
                "lock made another sub-stake"
            );
            require(escrow.stakeOf(staker) == stake, "lock moved tokens");
            calls["lock"]++;
        } catch {
            require(belowMin || full, "lock refused a valid lock");
        }
    }

    /// @notice Tops up a locked sub-stake from the wallet (any positive amount).
    function increase(uint256 actorSeed, uint256 index, uint256 amount) external {
        address staker = _staker(actorSeed);
        index = _pickActiveSubStake(staker, index);
        if (index == type(uint256).max) return;
        amount = _bound(amount, 1, 200_000e18);
        if (escrow.lockedAt(staker, escrow.currentPeriod()) + amount > escrow.maxStake()) return;
        uint256 before = escrow.getSubStakes(staker)[index].amount;
        vm.prank(kms.treasury());
        require(token.transfer(staker, amount), "token transfer refused");
        vm.startPrank(staker);
        token.approve(address(escrow), amount);
        escrow.increase(index, amount);
        vm.stopPrank();
        require(escrow.getSubStakes(staker)[index].amount == before + amount, "increase added other");
        ghostIncreased[staker] += amount;
        calls["increase"]++;
    }

    /// @notice Tops up a locked sub-stake from the unlocked balance.
    function increaseFromUnlocked(uint256 actorSeed, uint256 index, uint256 amount) external {
        address staker = _staker(actorSeed);
        uint256 unlocked = escrow.stakeOf(staker) - escrow.heldStakeOf(staker);
        index = _pickActiveSubStake(staker, index);
        if (unlocked == 0 || index == type(uint256).max) return;
        amount = _bound(amount, 1, unlocked);
        if (escrow.lockedAt(staker, escrow.currentPeriod()) + amount > escrow.maxStake()) return;
        uint256 before = escrow.getSubStakes(staker)[index].amount;
        uint256 stake = escrow.stakeOf(staker);
        vm.prank(staker);
        escrow.increaseFromUnlocked(index, amount);
        require(escrow.getSubStakes(staker)[index].amount == before + amount, "increase added other");
        require(escrow.stakeOf(staker) == stake, "increaseFromUnlocked moved tokens");
        calls["increaseFromUnlocked"]++;
    }

    /// @notice Turns a staker's restaking on or off: refused to an address that never deposited.
    function setReStake(uint256 actorSeed, bool on) external {
        address staker = _staker(actorSeed);
        bool listed = escrow.getSubStakes(staker).length != 0; // a deposit makes the first slot
        vm.prank(staker);
        try escrow.setReStake(on) {
            require(listed, "a non-staker set restaking");
            ghostReStake[staker] = on;
            calls["setReStake"]++;
        } catch {
            require(!listed, "a staker could not set restaking");
        }
        require(escrow.reStakeEnabled(staker) == ghostReStake[staker], "the restake switch is lost");
    }

    /*//////////////////////////////////////////////////////////////
                          RESTAKE EXPECTATIONS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IReStakeExpectations
    /// @dev Into the sub-stake that ends last among those locked in the next period (the lowest
    /// index on a tie), up to `maxStake` of what is locked now; nothing when restaking is off or no
    /// sub-stake qualifies.
    function expectReStake(address staker, uint256 reward) external view returns (ReStake memory expected) {
        expected.target = type(uint256).max;
        if (!ghostReStake[staker] || reward == 0) return expected;
        uint256 current = escrow.currentPeriod();
        StakingEscrow.SubStake[] memory subStakes = escrow.getSubStakes(staker);
        uint256 targetLast = current;
        for (uint256 j; j < subStakes.length; ++j) {
            if (subStakes[j].amount != 0 && subStakes[j].lastPeriod > targetLast) {
                (expected.target, targetLast) = (j, subStakes[j].lastPeriod);
            }
        }
        uint256 lockedNow = escrow.lockedAt(staker, current);
        uint256 maxStake = escrow.maxStake();
        if (expected.target == type(uint256).max || lockedNow >= maxStake) return expected;
        expected.amount = reward < maxStake - lockedNow ? reward : maxStake - lockedNow;
        expected.targetBefore = subStakes[expected.target].amount;
        expected.lockedNextBefore = escrow.lockedAt(staker, current + 1);
    }

    /// @inheritdoc IReStakeExpectations
    /// @dev The restaked part sits in the target sub-stake and in the next period's locked amount.
    function checkReStaked(address staker, ReStake calldata expected) external view returns (uint256) {
        if (expected.amount == 0) return 0;
        require(
            escrow.getSubStakes(staker)[expected.target].amount == expected.targetBefore + expected.amount,
            "the reward was not restaked into the sub-stake that ends last"
        );
        require(
            escrow.lockedAt(staker, escrow.currentPeriod() + 1)
                == expected.lockedNextBefore + expected.amount,
            "the restaked reward is not locked in the next period"
        );
        return expected.amount;
    }

    /*//////////////////////////////////////////////////////////////
                                HELPERS
    //////////////////////////////////////////////////////////////*/

    function _staker(uint256 actorSeed) internal view returns (address) {
        return kms.stakers(actorSeed % kms.stakerCount());
    }

    /// @dev A sub-stake still locked in the current period, or `type(uint256).max`.
    function _pickActiveSubStake(address staker, uint256 seed) internal view returns (uint256) {
        StakingEscrow.SubStake[] memory subStakes = escrow.getSubStakes(staker);
        uint256 current = escrow.currentPeriod();
        for (uint256 k; k < subStakes.length; ++k) {
            uint256 j = (seed % subStakes.length + k) % subStakes.length;
            if (subStakes[j].amount != 0 && subStakes[j].lastPeriod >= current) return j;
        }
        return type(uint256).max;
    }

    /// @dev Whether `lock` finds a slot: a free or released one, or room to append.
    function _hasFreeSlot(address staker, uint256 current) internal view returns (bool) {
        StakingEscrow.SubStake[] memory subStakes = escrow.getSubStakes(staker);
        if (subStakes.length < escrow.MAX_SUB_STAKES()) return true;
        for (uint256 j; j < subStakes.length; ++j) {
            if (subStakes[j].amount == 0 || subStakes[j].lastPeriod + escrow.evidenceWindow() < current) {
                return true;
            }
        }
        return false;
    }

    function _bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        if (x >= min && x <= max) return x;
        return min + x % (max - min + 1);
    }
}
