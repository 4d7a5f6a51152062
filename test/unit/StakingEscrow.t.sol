// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";

import {KMSToken} from "../../contracts/KMSToken.sol";
import {StakingEscrow} from "../../contracts/StakingEscrow.sol";
import {IPolicyManager} from "../../contracts/interfaces/IPolicyManager.sol";
import {Errors} from "../../contracts/libraries/Errors.sol";
import {Base} from "../utils/Base.sol";
import {Vm} from "../utils/Vm.sol";

contract StakingEscrowTest is Base {
    uint256 internal constant STAKE = 100_000e18;

    address internal staker = makeAddr("staker");
    address internal worker = makeAddr("worker");
    address internal investigator = makeAddr("investigator");

    /*//////////////////////////////////////////////////////////////
                              CONSTRUCTION
    //////////////////////////////////////////////////////////////*/

    function test_Constructor_TakesTheWholeReserve() public view {
        assertEq(escrow.unallocatedReserve(), RESERVE);
        assertEq(address(escrow.token()), address(token));
        assertEq(escrow.currentPeriod(), START_TIME / PERIOD);
    }

    function test_RevertWhen_EscrowIsNotTheMinter() public {
        KMSToken other = new KMSToken(CAP, 0, address(this), address(0xdead));
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_NotTheMinter.selector, address(0xdead)));
        new StakingEscrow(other, escrowParameters());
    }

    function test_RevertWhen_ParametersInvalid() public {
        StakingEscrow.Parameters memory params = escrowParameters();
        params.minLockPeriods = params.maxLockPeriods + 1;
        address next = vm.computeCreateAddress(address(this), vm.getNonce(address(this)) + 1);
        KMSToken fresh = new KMSToken(CAP, 0, address(this), next);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.StakingEscrow_InvalidParameter.selector, "minLockPeriods/maxLockPeriods"
            )
        );
        new StakingEscrow(fresh, params);
    }

    function test_RevertWhen_LinkSetTwice() public {
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_LinkNotSettable.selector, "policyManager")
        );
        escrow.setPolicyManager(IPolicyManager(address(1)));
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_LinkNotSettable.selector, "adjudicator"));
        escrow.setAdjudicator(address(1));
    }

    /*//////////////////////////////////////////////////////////////
                                DEPOSIT
    //////////////////////////////////////////////////////////////*/

    function test_Deposit_LocksFromNowThroughThePeriods() public {
        uint256 current = currentPeriod();
        fund(staker, STAKE);
        vm.startPrank(staker);
        token.approve(address(escrow), STAKE);
        vm.expectEmit(address(escrow));
        emit StakingEscrow.Deposited(staker, 0, STAKE, current, current + 60);
        uint256 index = escrow.deposit(STAKE, 60);
        vm.stopPrank();

        assertEq(index, 0);
        assertEq(escrow.stakeOf(staker), STAKE);
        assertEq(escrow.lockedAt(staker, current), STAKE);
        assertEq(escrow.lockedAt(staker, current + 60), STAKE);
        assertEq(escrow.lockedAt(staker, current + 61), 0);
        assertEq(token.balanceOf(address(escrow)), STAKE);
        assertEq(escrow.stakersCount(), 1);
    }

    function test_RevertWhen_DepositBelowMinStake() public {
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.StakingEscrow_AmountBelowMinStake.selector, MIN_STAKE - 1, MIN_STAKE
            )
        );
        vm.prank(staker);
        escrow.deposit(MIN_STAKE - 1, 60);
    }

    function test_RevertWhen_DepositLockTooShortOrTooLong() public {
        vm.startPrank(staker);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.StakingEscrow_LockOutOfRange.selector, MIN_LOCK - 1, MIN_LOCK, MAX_LOCK
            )
        );
        escrow.deposit(STAKE, MIN_LOCK - 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.StakingEscrow_LockOutOfRange.selector, MAX_LOCK + 1, MIN_LOCK, MAX_LOCK
            )
        );
        escrow.deposit(STAKE, MAX_LOCK + 1);
        vm.stopPrank();
    }

    function test_RevertWhen_DepositAboveMaxStake() public {
        deposit(staker, MAX_STAKE, 60);
        fund(staker, MIN_STAKE);
        vm.startPrank(staker);
        token.approve(address(escrow), MIN_STAKE);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.StakingEscrow_StakeAboveMax.selector, MAX_STAKE + MIN_STAKE, MAX_STAKE
            )
        );
        escrow.deposit(MIN_STAKE, 60);
        vm.stopPrank();
    }

    function test_RevertWhen_DepositWithoutAllowance() public {
        fund(staker, STAKE);
        vm.expectRevert(
            abi.encodeWithSelector(
                IERC20Errors.ERC20InsufficientAllowance.selector, address(escrow), 0, STAKE
            )
        );
        vm.prank(staker);
        escrow.deposit(STAKE, 60);
    }

    function test_RevertWhen_TooManySubStakes() public {
        for (uint256 i; i < escrow.MAX_SUB_STAKES(); ++i) {
            deposit(staker, MIN_STAKE, 60);
        }
        fund(staker, MIN_STAKE);
        vm.startPrank(staker);
        token.approve(address(escrow), MIN_STAKE);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_TooManySubStakes.selector, 16));
        escrow.deposit(MIN_STAKE, 60);
        vm.stopPrank();
    }

    function test_Deposit_ReusesASlotReleasedAfterTheEvidenceWindow() public {
        deposit(staker, MIN_STAKE, 30);
        deposit(staker, MIN_STAKE, 90);
        advancePeriods(31);
        // Unlocked but still held for the evidence window: its slot is not free yet.
        uint256 index = deposit(staker, STAKE, 60);
        assertEq(index, 2, "a held slot is not reused");
        advancePeriods(EVIDENCE_WINDOW);
        index = deposit(staker, STAKE, 60);
        assertEq(index, 0, "the released slot 0 is reused");
        assertEq(escrow.getSubStakes(staker).length, 3);
    }

    function test_RevertWhen_WorkerDeposits() public {
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        fund(worker, STAKE);
        vm.startPrank(worker);
        token.approve(address(escrow), STAKE);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_WorkerIsAStaker.selector, worker));
        escrow.deposit(STAKE, 60);
        vm.stopPrank();
    }

    /*//////////////////////////////////////////////////////////////
                        PROLONG, DIVIDE, MERGE
    //////////////////////////////////////////////////////////////*/

    function test_Prolong() public {
        deposit(staker, STAKE, 60);
        uint256 last = currentPeriod() + 60;
        vm.expectEmit(address(escrow));
        emit StakingEscrow.Prolonged(staker, 0, last + 10);
        vm.prank(staker);
        escrow.prolong(0, 10);
        assertEq(escrow.lockedAt(staker, last + 10), STAKE);
    }

    function test_RevertWhen_ProlongBeyondMaxLock() public {
        deposit(staker, STAKE, MAX_LOCK);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.StakingEscrow_LockOutOfRange.selector, MAX_LOCK + 1, MIN_LOCK, MAX_LOCK
            )
        );
        vm.prank(staker);
        escrow.prolong(0, 1);
    }

    function test_RevertWhen_ProlongUnknownOrUnlockedSubStake() public {
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_SubStakeNotFound.selector, staker, 0));
        vm.prank(staker);
        escrow.prolong(0, 1);

        deposit(staker, STAKE, 30);
        uint256 last = currentPeriod() + 30;
        advancePeriods(31);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_SubStakeInactive.selector, 0, last, last + 1)
        );
        vm.prank(staker);
        escrow.prolong(0, 1);
    }

    function test_RevertWhen_ProlongByZero() public {
        deposit(staker, STAKE, 60);
        vm.expectRevert(Errors.StakingEscrow_ZeroValue.selector);
        vm.prank(staker);
        escrow.prolong(0, 0);
    }

    function test_Divide() public {
        deposit(staker, STAKE, 60);
        uint256 last = currentPeriod() + 60;
        vm.expectEmit(address(escrow));
        emit StakingEscrow.Divided(staker, 0, 1, 40_000e18, last + 5);
        vm.prank(staker);
        uint256 newIndex = escrow.divide(0, 40_000e18, 5);
        assertEq(newIndex, 1);
        StakingEscrow.SubStake[] memory subStakes = escrow.getSubStakes(staker);
        assertEq(subStakes[0].amount, 60_000e18);
        assertEq(subStakes[1].amount, 40_000e18);
        assertEq(subStakes[1].lastPeriod, last + 5);
        assertEq(escrow.lockedAt(staker, last), STAKE, "dividing keeps the total locked");
        assertEq(escrow.lockedAt(staker, last + 1), 40_000e18);
    }

    function test_RevertWhen_DivideLeavesAPartBelowMinStake() public {
        deposit(staker, STAKE, 60);
        vm.startPrank(staker);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.StakingEscrow_AmountBelowMinStake.selector, MIN_STAKE - 1, MIN_STAKE
            )
        );
        escrow.divide(0, MIN_STAKE - 1, 5);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.StakingEscrow_AmountBelowMinStake.selector, MIN_STAKE - 1, MIN_STAKE
            )
        );
        escrow.divide(0, STAKE - MIN_STAKE + 1, 5);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_AmountBelowMinStake.selector, 0, MIN_STAKE)
        );
        escrow.divide(0, STAKE, 5);
        vm.expectRevert(Errors.StakingEscrow_ZeroValue.selector);
        escrow.divide(0, MIN_STAKE, 0);
        vm.stopPrank();
    }

    function test_Merge() public {
        deposit(staker, STAKE, 60);
        advancePeriods(2);
        deposit(staker, MIN_STAKE, 58);
        vm.expectEmit(address(escrow));
        emit StakingEscrow.Merged(staker, 0, 1);
        vm.prank(staker);
        escrow.merge(0, 1);
        StakingEscrow.SubStake[] memory subStakes = escrow.getSubStakes(staker);
        assertEq(subStakes[0].amount, STAKE + MIN_STAKE);
        assertEq(subStakes[1].amount, 0, "the merged slot is freed");
        assertEq(escrow.lockedAt(staker, currentPeriod()), STAKE + MIN_STAKE);
        // The freed slot is reused by the next deposit.
        assertEq(deposit(staker, MIN_STAKE, 60), 1);
    }

    function test_RevertWhen_MergeDifferentEnds() public {
        deposit(staker, STAKE, 60);
        deposit(staker, STAKE, 61);
        vm.startPrank(staker);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_SubStakesNotMergeable.selector, 0, 1));
        escrow.merge(0, 1);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_SubStakesNotMergeable.selector, 0, 0));
        escrow.merge(0, 0);
        vm.stopPrank();
    }

    /*//////////////////////////////////////////////////////////////
                                WITHDRAW
    //////////////////////////////////////////////////////////////*/

    function test_RevertWhen_WithdrawLocked() public {
        deposit(staker, STAKE, 30);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_InsufficientUnlocked.selector, 1, 0));
        vm.prank(staker);
        escrow.withdraw(1);
        // Still locked in its last period.
        advancePeriods(30);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_InsufficientUnlocked.selector, 1, 0));
        vm.prank(staker);
        escrow.withdraw(1);
    }

    /// @dev Regression (review item 1): tokens locked when the node answered stay in the escrow for
    /// the answer's whole evidence window; before the fix they were withdrawable right after the lock.
    function test_RevertWhen_WithdrawWithinTheEvidenceWindow() public {
        deposit(staker, STAKE, 30);
        advancePeriods(31); // unlocked: no longer counts as locked
        assertEq(escrow.lockedAt(staker, currentPeriod()), 0);
        assertEq(escrow.heldStakeOf(staker), STAKE);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_InsufficientUnlocked.selector, STAKE, 0));
        vm.prank(staker);
        escrow.withdraw(STAKE);
        advancePeriods(EVIDENCE_WINDOW - 1); // the window's last period
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_InsufficientUnlocked.selector, STAKE, 0));
        vm.prank(staker);
        escrow.withdraw(STAKE);
        advancePeriods(1);
        assertEq(escrow.heldStakeOf(staker), 0);
        vm.prank(staker);
        escrow.withdraw(STAKE);
    }

    function test_Withdraw_AfterUnlock() public {
        deposit(staker, STAKE, 30);
        advancePeriods(31 + EVIDENCE_WINDOW);
        vm.expectEmit(address(escrow));
        emit StakingEscrow.Withdrawn(staker, STAKE);
        vm.prank(staker);
        escrow.withdraw(STAKE);
        assertEq(token.balanceOf(staker), STAKE);
        assertEq(escrow.stakeOf(staker), 0);
    }

    function test_RevertWhen_WithdrawZero() public {
        vm.expectRevert(Errors.StakingEscrow_ZeroValue.selector);
        vm.prank(staker);
        escrow.withdraw(0);
    }

    /*//////////////////////////////////////////////////////////////
                                WORKERS
    //////////////////////////////////////////////////////////////*/

    function test_BondWorker() public {
        deposit(staker, STAKE, 60);
        propose(staker, worker);
        vm.expectEmit(address(escrow));
        emit StakingEscrow.WorkerBonded(staker, worker, currentPeriod());
        vm.prank(worker);
        escrow.acceptWorker(staker);
        assertEq(escrow.workerOf(staker), worker);
        assertEq(escrow.stakerOf(worker), staker);
    }

    function test_RevertWhen_BondWorkerWithoutStake() public {
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_NotAStaker.selector, staker));
        propose(staker, worker);
    }

    /// @dev Regression (review item 3): bonding took no consent, so a staker could bond any address,
    /// which then could not deposit, or squat a worker another staker was about to bond.
    function test_BondWorker_TakesTheWorkersConsent() public {
        address squatter = makeAddr("squatter");
        deposit(staker, STAKE, 60);
        deposit(squatter, STAKE, 60);
        vm.expectEmit(address(escrow));
        emit StakingEscrow.WorkerProposed(squatter, worker);
        propose(squatter, worker);
        assertEq(escrow.stakerOf(worker), address(0), "a proposal bonds nobody");
        assertEq(escrow.pendingWorker(squatter), worker);
        // The proposed address can still deposit, and another staker can still bond it.
        propose(staker, worker);
        vm.expectEmit(address(escrow));
        emit StakingEscrow.WorkerBonded(staker, worker, currentPeriod());
        vm.prank(worker);
        escrow.acceptWorker(staker);
        assertEq(escrow.stakerOf(worker), staker);
        assertEq(escrow.pendingWorker(staker), address(0), "the proposal is used up");
        // The squatter's proposal can no longer be accepted (the worker is taken).
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_WorkerAlreadyBonded.selector, worker, staker)
        );
        vm.prank(worker);
        escrow.acceptWorker(squatter);
        // Nobody accepts a bond that was not proposed to them.
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_NotProposedWorker.selector, squatter, investigator)
        );
        vm.prank(investigator);
        escrow.acceptWorker(squatter);
        // An address proposed but never accepting stays free to stake.
        address bystander = makeAddr("bystander");
        propose(squatter, bystander);
        deposit(bystander, STAKE, 60);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_WorkerIsAStaker.selector, bystander));
        vm.prank(bystander);
        escrow.acceptWorker(squatter);
    }

    /// @dev Regression (review item 1): an unbonded worker key keeps its record, and is not bonded
    /// to another stake until its answers can no longer be judged.
    function test_UnbondedWorkerCoolsDownForTheEvidenceWindow() public {
        address other = makeAddr("other");
        deposit(staker, STAKE, 60);
        deposit(other, STAKE, 60);
        bond(staker, worker);
        uint256 bonded = currentPeriod();
        advancePeriods(MIN_WORKER_PERIODS);
        bond(staker, address(0));
        uint256 unbonded = currentPeriod();
        (address bondStaker, uint256 first, uint256 last) = escrow.workerBond(worker);
        assertEq(bondStaker, staker);
        assertEq(first, bonded);
        assertEq(last, unbonded, "the bond is closed, not forgotten");
        assertEq(escrow.stakerOf(worker), address(0));

        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.StakingEscrow_WorkerCoolingDown.selector, worker, unbonded + EVIDENCE_WINDOW + 1
            )
        );
        propose(other, worker);
        advancePeriods(EVIDENCE_WINDOW);
        vm.expectPartialRevert(Errors.StakingEscrow_WorkerCoolingDown.selector);
        propose(other, worker);
        advancePeriods(1);
        bond(other, worker);
        (bondStaker, first, last) = escrow.workerBond(worker);
        assertEq(bondStaker, other);
        assertEq(first, currentPeriod());
        assertEq(last, escrow.OPEN_BOND());
    }

    function test_RevertWhen_RebondTooSoon() public {
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        uint256 bonded = currentPeriod();
        advancePeriods(MIN_WORKER_PERIODS - 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.StakingEscrow_WorkerBondedTooRecently.selector, bonded, bonded + MIN_WORKER_PERIODS
            )
        );
        propose(staker, address(0));
        advancePeriods(1);
        bond(staker, address(0));
        assertEq(escrow.stakerOf(worker), address(0), "unbonding frees the worker");
        assertEq(escrow.workerOf(staker), address(0));
    }

    function test_RevertWhen_WorkerTakenOrAStaker() public {
        address other = makeAddr("other");
        deposit(staker, STAKE, 60);
        deposit(other, STAKE, 60);
        bond(staker, worker);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_WorkerAlreadyBonded.selector, worker, staker)
        );
        propose(other, worker);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_WorkerIsAStaker.selector, staker));
        propose(other, staker);
        // A staker may be its own worker.
        bond(other, other);
        assertEq(escrow.stakerOf(other), other);
    }

    function test_PublishNodeRecord_AndRebondClearsIt() public {
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        bytes memory key = abi.encodePacked(bytes1(0x02), keccak256("key"));
        vm.expectEmit(address(escrow));
        emit StakingEscrow.NodeRecordPublished(staker, worker, "http://127.0.0.1:9151", key);
        vm.prank(worker);
        escrow.publishNodeRecord("http://127.0.0.1:9151", key);
        StakingEscrow.NodeView memory record = escrow.nodeRecordOf(staker);
        assertEq(record.url, "http://127.0.0.1:9151");
        assertEq(record.umbralPublicKey, key);
        assertEq(escrow.getNodeRecords(0, 10).length, 1);

        advancePeriods(MIN_WORKER_PERIODS);
        bond(staker, makeAddr("new-worker"));
        assertEq(escrow.nodeRecordOf(staker).umbralPublicKey.length, 0);
        assertEq(escrow.getNodeRecords(0, 10).length, 0);
    }

    function test_RevertWhen_NodeRecordMalformed() public {
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        bytes memory key = abi.encodePacked(bytes1(0x02), keccak256("key"));
        vm.startPrank(worker);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_InvalidNodeRecord.selector, "url length"));
        escrow.publishNodeRecord("", key);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_InvalidNodeRecord.selector, "umbral public key")
        );
        escrow.publishNodeRecord("http://node", abi.encodePacked(bytes1(0x04), keccak256("key")));
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_InvalidNodeRecord.selector, "umbral public key")
        );
        escrow.publishNodeRecord("http://node", abi.encodePacked(keccak256("key")));
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_NotAWorker.selector, staker));
        vm.prank(staker);
        escrow.publishNodeRecord("http://node", key);
    }

    /*//////////////////////////////////////////////////////////////
                          COMMITMENTS AND REWARDS
    //////////////////////////////////////////////////////////////*/

    function test_Commit_AllocatesIssuanceOnceAndRecordsLocked() public {
        address other = newNode("other", 3 * STAKE, 60);
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        uint256 next = currentPeriod() + 1;
        uint256 issuance = RESERVE * ISSUANCE_RATE / 1e18;

        vm.expectEmit(address(escrow));
        emit StakingEscrow.IssuanceAllocated(next, issuance);
        vm.expectEmit(address(escrow));
        emit StakingEscrow.CommitmentMade(staker, next, STAKE);
        vm.prank(worker);
        escrow.commitToNextPeriod();
        commit(other);

        StakingEscrow.PeriodTotals memory totals = escrow.getPeriodTotals(next);
        assertEq(totals.issuance, issuance);
        assertEq(totals.lockedTotal, 4 * STAKE);
        assertEq(escrow.unallocatedReserve(), RESERVE - issuance);
        assertTrue(policyManager.isCommitted(staker, next));
    }

    function test_RevertWhen_CommitTwiceOrByNonWorker() public {
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        vm.prank(worker);
        escrow.commitToNextPeriod();
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_AlreadyCommitted.selector, currentPeriod() + 1)
        );
        vm.prank(worker);
        escrow.commitToNextPeriod();
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_NotAWorker.selector, staker));
        vm.prank(staker);
        escrow.commitToNextPeriod();
    }

    function test_RevertWhen_CommitWithNothingLockedNextPeriod() public {
        deposit(staker, STAKE, 30);
        bond(staker, worker);
        advancePeriods(30);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.StakingEscrow_NothingLockedNextPeriod.selector, staker, currentPeriod() + 1
            )
        );
        vm.prank(worker);
        escrow.commitToNextPeriod();
    }

    /// @dev The formula, end to end: two stakers 1:3, the reward of a period split 1:3.
    function test_Reward_FollowsTheFormula() public {
        address other = newNode("other", 3 * STAKE, 60);
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        uint256 period = currentPeriod() + 1;
        vm.prank(worker);
        escrow.commitToNextPeriod();
        commit(other);
        uint256 issuance = escrow.getPeriodTotals(period).issuance;

        advancePeriods(2); // `period` has ended
        assertEq(escrow.pendingReward(staker), issuance / 4);
        vm.expectEmit(address(escrow));
        emit StakingEscrow.RewardMinted(staker, period, period, issuance / 4);
        vm.prank(worker);
        uint256 reward = escrow.mint();
        assertEq(reward, STAKE * issuance / (4 * STAKE));
        vm.prank(other);
        uint256 otherReward = escrow.mint();
        assertEq(otherReward, 3 * STAKE * issuance / (4 * STAKE));
        assertLe(reward + otherReward, issuance);
        assertEq(escrow.stakeOf(staker), STAKE + reward, "rewards join the stake, unlocked");
        assertEq(escrow.getStakerInfo(staker).rewardsMinted, reward);
        assertEq(token.totalSupply(), INITIAL_SUPPLY + reward + otherReward);

        // Rewards are withdrawable at once.
        vm.prank(staker);
        escrow.withdraw(reward);
        assertEq(token.balanceOf(staker), reward);
    }

    function test_Commit_MintsTheEndedPeriods() public {
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        uint256 first = currentPeriod() + 1;
        vm.prank(worker);
        escrow.commitToNextPeriod();
        advancePeriods(1);
        vm.prank(worker);
        escrow.commitToNextPeriod();
        advancePeriods(1);
        // `first` ended; `first + 1` is the current period; the commitment goes to `first + 2`.
        uint256 expected = escrow.getPeriodTotals(first).issuance;
        vm.expectEmit(address(escrow));
        emit StakingEscrow.RewardMinted(staker, first, first, expected);
        vm.prank(worker);
        escrow.commitToNextPeriod();
        assertEq(escrow.getStakerInfo(staker).rewardsMinted, expected);
        // A lone staker gets the whole issuance (rounding down at most one wei).
        assertEq(expected, escrow.getPeriodTotals(first).issuance);
    }

    function test_Mint_IsANoOpWhenNothingIsDue() public {
        deposit(staker, STAKE, 60);
        vm.prank(staker);
        assertEq(escrow.mint(), 0);
    }

    /// @dev Regression (review item 5): settling a commitment that earned nothing emitted
    /// `RewardMinted` with amount 0; now a zero reward settles silently.
    function test_Mint_ZeroRewardEmitsNoRewardMinted() public {
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        vm.prank(worker);
        escrow.commitToNextPeriod();
        // The whole stake is slashed: the pending commitment shrinks to nothing locked.
        vm.prank(adjudicator);
        escrow.slash(staker, STAKE, investigator, 0);
        assertEq(escrow.getStakerInfo(staker).commitLocked[0], 0);
        advancePeriods(2); // the committed period has ended, and earned nothing
        assertEq(escrow.pendingReward(staker), 0);

        vm.recordLogs();
        vm.prank(worker);
        assertEq(escrow.mint(), 0);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            assertTrue(
                logs[i].topics.length == 0 || logs[i].topics[0] != StakingEscrow.RewardMinted.selector,
                "RewardMinted with a zero amount"
            );
        }
        assertEq(logs.length, 0, "settling nothing logs nothing");
        assertEq(escrow.getStakerInfo(staker).commitPeriods[0], 0, "the commitment is settled all the same");
    }

    function test_RevertWhen_MintByStranger() public {
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_NotStakerOrWorker.selector, staker, address(0))
        );
        vm.prank(staker);
        escrow.mint();
    }

    function test_Issuance_DecaysGeometrically() public {
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        uint256 reserve = RESERVE;
        for (uint256 i; i < 5; ++i) {
            uint256 next = currentPeriod() + 1;
            vm.prank(worker);
            escrow.commitToNextPeriod();
            uint256 expected = reserve * ISSUANCE_RATE / 1e18;
            assertEq(escrow.getPeriodTotals(next).issuance, expected);
            reserve -= expected;
            advancePeriods(1);
        }
        assertEq(escrow.unallocatedReserve(), reserve);
    }

    /*//////////////////////////////////////////////////////////////
                     LOCK, INCREASE AND RESTAKE
    //////////////////////////////////////////////////////////////*/

    /// @dev The worker commits, the committed period ends, and its reward is minted, unlocked.
    function earnReward() internal returns (uint256 reward) {
        vm.prank(worker);
        escrow.commitToNextPeriod();
        advancePeriods(2);
        vm.prank(worker);
        reward = escrow.mint();
        assertGt(reward, 0);
    }

    /// @dev The locked amount the staker's commitment to `period` recorded.
    function committedLocked(address who, uint256 period) internal view returns (uint256) {
        StakingEscrow.StakerView memory info = escrow.getStakerInfo(who);
        for (uint256 j; j < 2; ++j) {
            if (info.commitPeriods[j] == period) return info.commitLocked[j];
        }
        revert("no commitment to the period");
    }

    function unlockedOf(address who) internal view returns (uint256) {
        return escrow.stakeOf(who) - escrow.heldStakeOf(who);
    }

    function test_Lock_LocksUnlockedTokensAsANewSubStake() public {
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        uint256 reward = earnReward();
        uint256 current = currentPeriod();
        assertEq(unlockedOf(staker), reward);

        vm.expectEmit(address(escrow));
        emit StakingEscrow.Locked(staker, 1, reward, current, current + 30);
        vm.prank(staker);
        uint256 index = escrow.lock(reward, 30);

        assertEq(index, 1);
        StakingEscrow.SubStake memory subStake = escrow.getSubStakes(staker)[1];
        assertEq(subStake.amount, reward);
        assertEq(subStake.firstPeriod, current);
        assertEq(subStake.lastPeriod, current + 30);
        assertEq(escrow.stakeOf(staker), STAKE + reward, "no token moves");
        assertEq(token.balanceOf(address(escrow)), STAKE + reward);
        assertEq(escrow.lockedAt(staker, current), STAKE + reward);
        assertEq(escrow.heldStakeOf(staker), STAKE + reward);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_InsufficientUnlocked.selector, 1, 0));
        vm.prank(staker);
        escrow.withdraw(1);
    }

    function test_Lock_CountsFromTheNextCommitment() public {
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        uint256 reward = earnReward();
        uint256 next = currentPeriod() + 1;
        vm.prank(worker);
        escrow.commitToNextPeriod();

        vm.prank(staker);
        escrow.lock(reward, 30);
        assertEq(committedLocked(staker, next), STAKE, "a commitment made keeps what it recorded");
        assertEq(escrow.getPeriodTotals(next).lockedTotal, STAKE);

        advancePeriods(1);
        vm.prank(worker);
        escrow.commitToNextPeriod();
        assertEq(committedLocked(staker, next + 1), STAKE + reward);
        assertEq(escrow.getPeriodTotals(next + 1).lockedTotal, STAKE + reward);
    }

    /// @dev A sub-stake below `minStake` is allowed while the staker's other sub-stakes keep its
    /// locked total at `minStake` or more through the new one's last period.
    function test_Lock_BelowMinStakeWithinTheOtherSubStakes() public {
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        earnReward();
        uint256 depositLast = escrow.getSubStakes(staker)[0].lastPeriod;
        uint256 periods = depositLast - currentPeriod();

        vm.prank(staker);
        uint256 index = escrow.lock(1e18, periods);
        assertEq(escrow.getSubStakes(staker)[index].amount, 1e18);
        assertEq(escrow.lockedAt(staker, depositLast), STAKE + 1e18);

        // One period longer, nothing else is locked in its last period.
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_LockedBelowMinStake.selector, 1e18, MIN_STAKE)
        );
        vm.prank(staker);
        escrow.lock(1e18, periods + 1);
        // The minimum stake itself may be locked for any allowed duration.
        vm.prank(staker);
        escrow.lock(MIN_STAKE, periods + 1);
        // Small amounts then count with it: what the staker has locked in the last period.
        vm.prank(staker);
        escrow.lock(1e18, periods + 1);
        assertEq(escrow.lockedAt(staker, depositLast + 1), MIN_STAKE + 1e18);
    }

    function test_Lock_ReusesReleasedTokensAndTheirSlot() public {
        deposit(staker, STAKE, 30);
        advancePeriods(31 + EVIDENCE_WINDOW);
        assertEq(escrow.heldStakeOf(staker), 0);
        vm.prank(staker);
        uint256 index = escrow.lock(STAKE, 30);
        assertEq(index, 0, "the released slot is reused");
        assertEq(escrow.getSubStakes(staker).length, 1);
        assertEq(escrow.lockedAt(staker, currentPeriod()), STAKE);
        assertEq(escrow.stakeOf(staker), STAKE);
    }

    function test_RevertWhen_LockZeroOrOutOfRange() public {
        vm.startPrank(staker);
        vm.expectRevert(Errors.StakingEscrow_ZeroValue.selector);
        escrow.lock(0, 30);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.StakingEscrow_LockOutOfRange.selector, MIN_LOCK - 1, MIN_LOCK, MAX_LOCK
            )
        );
        escrow.lock(STAKE, MIN_LOCK - 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.StakingEscrow_LockOutOfRange.selector, MAX_LOCK + 1, MIN_LOCK, MAX_LOCK
            )
        );
        escrow.lock(STAKE, MAX_LOCK + 1);
        vm.stopPrank();
    }

    /// @dev Only withdrawable tokens can be locked: not locked ones, not those held for the evidence
    /// window after their lock (nor anyone's without a stake).
    function test_RevertWhen_LockMoreThanUnlocked() public {
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_InsufficientUnlocked.selector, 1, 0));
        vm.prank(staker);
        escrow.lock(1, 30);

        deposit(staker, STAKE, 30);
        bond(staker, worker);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_InsufficientUnlocked.selector, 1, 0));
        vm.prank(staker);
        escrow.lock(1, 30);

        uint256 reward = earnReward();
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_InsufficientUnlocked.selector, reward + 1, reward)
        );
        vm.prank(staker);
        escrow.lock(reward + 1, 30);

        advancePeriods(30); // unlocked, but held for the evidence window: still not free
        assertEq(escrow.lockedAt(staker, currentPeriod()), 0);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_InsufficientUnlocked.selector, reward + 1, reward)
        );
        vm.prank(staker);
        escrow.lock(reward + 1, 30);
    }

    function test_RevertWhen_LockAboveMaxStake() public {
        deposit(staker, MAX_STAKE, 60);
        bond(staker, worker);
        earnReward();
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.StakingEscrow_StakeAboveMax.selector, MAX_STAKE + MIN_STAKE, MAX_STAKE
            )
        );
        vm.prank(staker);
        escrow.lock(MIN_STAKE, 30);
    }

    function test_RevertWhen_LockWithoutAFreeSlot() public {
        for (uint256 i; i < escrow.MAX_SUB_STAKES(); ++i) {
            deposit(staker, MIN_STAKE, 60);
        }
        bond(staker, worker);
        earnReward();
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_TooManySubStakes.selector, 16));
        vm.prank(staker);
        escrow.lock(MIN_STAKE, 30);
    }

    function test_Increase_AddsWalletTokensToTheSubStake() public {
        deposit(staker, STAKE, 60);
        uint256 first = currentPeriod();
        uint256 last = first + 60;
        advancePeriods(5);
        fund(staker, 1e18);
        vm.startPrank(staker);
        token.approve(address(escrow), 1e18);
        vm.expectEmit(address(escrow));
        emit StakingEscrow.Increased(staker, 0, 1e18, false);
        escrow.increase(0, 1e18); // below the minimum stake: a top-up
        vm.stopPrank();

        StakingEscrow.SubStake memory subStake = escrow.getSubStakes(staker)[0];
        assertEq(subStake.amount, STAKE + 1e18);
        assertEq(subStake.firstPeriod, first);
        assertEq(subStake.lastPeriod, last);
        assertEq(escrow.stakeOf(staker), STAKE + 1e18);
        assertEq(token.balanceOf(address(escrow)), STAKE + 1e18);
        assertEq(token.balanceOf(staker), 0);
        assertEq(escrow.lockedAt(staker, last), STAKE + 1e18);
        assertEq(escrow.lockedAt(staker, last + 1), 0);
    }

    function test_IncreaseFromUnlocked_LocksRewardsIntoTheSubStake() public {
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        uint256 reward = earnReward();
        vm.expectEmit(address(escrow));
        emit StakingEscrow.Increased(staker, 0, reward, true);
        vm.prank(staker);
        escrow.increaseFromUnlocked(0, reward);

        assertEq(escrow.getSubStakes(staker)[0].amount, STAKE + reward);
        assertEq(escrow.stakeOf(staker), STAKE + reward, "no token moves");
        assertEq(token.balanceOf(address(escrow)), STAKE + reward);
        assertEq(escrow.heldStakeOf(staker), STAKE + reward);
        assertEq(escrow.lockedAt(staker, currentPeriod()), STAKE + reward);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_InsufficientUnlocked.selector, 1, 0));
        vm.prank(staker);
        escrow.withdraw(1);
    }

    /// @dev Like a deposit, an increase counts from the next commitment: the one already made to the
    /// next period keeps its locked amount, and the rewards follow the formula on what each recorded.
    function test_Increase_CountsFromTheNextCommitment() public {
        address other = newNode("other", 3 * STAKE, 60);
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        commit(other);
        uint256 reward = earnReward();
        uint256 next = currentPeriod() + 1;
        vm.prank(worker);
        escrow.commitToNextPeriod();
        commit(other);

        fund(staker, 5_000e18);
        vm.startPrank(staker);
        token.approve(address(escrow), 5_000e18);
        escrow.increase(0, 5_000e18);
        escrow.increaseFromUnlocked(0, reward);
        vm.stopPrank();
        uint256 increased = STAKE + 5_000e18 + reward;
        assertEq(escrow.lockedAt(staker, next), increased);
        assertEq(committedLocked(staker, next), STAKE, "a commitment made keeps what it recorded");
        assertEq(escrow.getPeriodTotals(next).lockedTotal, 4 * STAKE);

        advancePeriods(1);
        vm.prank(worker);
        escrow.commitToNextPeriod();
        commit(other);
        assertEq(committedLocked(staker, next + 1), increased);
        assertEq(escrow.getPeriodTotals(next + 1).lockedTotal, 3 * STAKE + increased);

        advancePeriods(2); // `next` and `next + 1` have ended
        uint256 expected = STAKE * escrow.getPeriodTotals(next).issuance / (4 * STAKE) + increased
            * escrow.getPeriodTotals(next + 1).issuance / (3 * STAKE + increased);
        assertEq(escrow.pendingReward(staker), expected);
        vm.prank(worker);
        assertEq(escrow.mint(), expected);
    }

    function test_RevertWhen_IncreaseZeroUnknownOrUnlockedSubStake() public {
        vm.startPrank(staker);
        vm.expectRevert(Errors.StakingEscrow_ZeroValue.selector);
        escrow.increase(0, 0);
        vm.expectRevert(Errors.StakingEscrow_ZeroValue.selector);
        escrow.increaseFromUnlocked(0, 0);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_SubStakeNotFound.selector, staker, 0));
        escrow.increase(0, 1);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_SubStakeNotFound.selector, staker, 0));
        escrow.increaseFromUnlocked(0, 1);
        vm.stopPrank();

        deposit(staker, STAKE, 30);
        uint256 last = currentPeriod() + 30;
        advancePeriods(31);
        vm.startPrank(staker);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_SubStakeInactive.selector, 0, last, last + 1)
        );
        escrow.increase(0, 1);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_SubStakeInactive.selector, 0, last, last + 1)
        );
        escrow.increaseFromUnlocked(0, 1);
        vm.stopPrank();
    }

    function test_RevertWhen_IncreaseAboveMaxStake() public {
        deposit(staker, MAX_STAKE - 1, 60);
        fund(staker, 2);
        vm.startPrank(staker);
        token.approve(address(escrow), 2);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_StakeAboveMax.selector, MAX_STAKE + 1, MAX_STAKE)
        );
        escrow.increase(0, 2);
        escrow.increase(0, 1);
        vm.stopPrank();
        assertEq(escrow.lockedAt(staker, currentPeriod()), MAX_STAKE);
    }

    function test_RevertWhen_IncreaseFromUnlockedAboveMaxStake() public {
        deposit(staker, MAX_STAKE, 60);
        bond(staker, worker);
        earnReward();
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_StakeAboveMax.selector, MAX_STAKE + 1, MAX_STAKE)
        );
        vm.prank(staker);
        escrow.increaseFromUnlocked(0, 1);
    }

    function test_RevertWhen_IncreaseWithoutAllowance() public {
        deposit(staker, STAKE, 60);
        fund(staker, 1e18);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(escrow), 0, 1e18)
        );
        vm.prank(staker);
        escrow.increase(0, 1e18);
    }

    function test_RevertWhen_IncreaseFromUnlockedMoreThanUnlocked() public {
        deposit(staker, STAKE, 30);
        deposit(staker, STAKE, 90);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_InsufficientUnlocked.selector, 1, 0));
        vm.prank(staker);
        escrow.increaseFromUnlocked(1, 1);
        // Sub-stake 0 has unlocked, but is held for the evidence window: nothing is free yet.
        advancePeriods(31);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_InsufficientUnlocked.selector, STAKE, 0));
        vm.prank(staker);
        escrow.increaseFromUnlocked(1, STAKE);
        // Released after the window, its tokens can be locked again.
        advancePeriods(EVIDENCE_WINDOW);
        vm.prank(staker);
        escrow.increaseFromUnlocked(1, STAKE);
        assertEq(escrow.lockedAt(staker, currentPeriod()), 2 * STAKE);
    }

    function test_SetReStake() public {
        deposit(staker, STAKE, 60);
        assertFalse(escrow.reStakeEnabled(staker), "off by default");
        vm.expectEmit(address(escrow));
        emit StakingEscrow.ReStakeSet(staker, true);
        vm.prank(staker);
        escrow.setReStake(true);
        assertTrue(escrow.reStakeEnabled(staker));

        vm.expectEmit(address(escrow));
        emit StakingEscrow.ReStakeSet(staker, false);
        vm.prank(staker);
        escrow.setReStake(false);
        assertFalse(escrow.reStakeEnabled(staker));
        // Off again: rewards stay unlocked.
        bond(staker, worker);
        uint256 reward = earnReward();
        assertEq(unlockedOf(staker), reward);
    }

    function test_RevertWhen_SetReStakeWithoutStake() public {
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_NotAStaker.selector, staker));
        vm.prank(staker);
        escrow.setReStake(true);
        // A worker is not a staker: restaking is the staker's choice.
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_NotAStaker.selector, worker));
        vm.prank(worker);
        escrow.setReStake(true);
    }

    /// @dev The commitment that mints the reward locks it into the sub-stake that ends last (the
    /// lowest index on a tie), and records it in the next period's locked amount and total.
    function test_ReStake_LocksTheRewardIntoTheSubStakeEndingLast() public {
        deposit(staker, STAKE, 30);
        deposit(staker, STAKE, 90);
        deposit(staker, STAKE, 90);
        bond(staker, worker);
        vm.prank(staker);
        escrow.setReStake(true);
        uint256 first = currentPeriod() + 1;
        vm.prank(worker);
        escrow.commitToNextPeriod();
        advancePeriods(2);
        uint256 reward = escrow.pendingReward(staker);
        assertEq(reward, escrow.getPeriodTotals(first).issuance, "a lone staker's reward");
        uint256 next = currentPeriod() + 1;

        vm.expectEmit(address(escrow));
        emit StakingEscrow.RewardMinted(staker, first, first, reward);
        vm.expectEmit(address(escrow));
        emit StakingEscrow.ReStaked(staker, 1, reward);
        vm.expectEmit(address(escrow));
        emit StakingEscrow.CommitmentMade(staker, next, 3 * STAKE + reward);
        vm.prank(worker);
        escrow.commitToNextPeriod();

        StakingEscrow.SubStake[] memory subStakes = escrow.getSubStakes(staker);
        assertEq(subStakes[0].amount, STAKE);
        assertEq(subStakes[1].amount, STAKE + reward);
        assertEq(subStakes[2].amount, STAKE);
        assertEq(escrow.stakeOf(staker), 3 * STAKE + reward);
        assertEq(escrow.heldStakeOf(staker), 3 * STAKE + reward);
        assertEq(committedLocked(staker, next), 3 * STAKE + reward);
        assertEq(escrow.getPeriodTotals(next).lockedTotal, 3 * STAKE + reward);
        assertEq(escrow.getStakerInfo(staker).rewardsMinted, reward);
        assertEq(token.totalSupply(), INITIAL_SUPPLY + reward);
        assertEq(token.balanceOf(address(escrow)), 3 * STAKE + reward);
    }

    function test_ReStake_ByMintCountsInTheNextCommitment() public {
        deposit(staker, STAKE, 60);
        bond(staker, worker);
        vm.prank(staker);
        escrow.setReStake(true);
        vm.prank(worker);
        escrow.commitToNextPeriod();
        advancePeriods(2);

        vm.prank(staker);
        uint256 reward = escrow.mint();
        assertEq(escrow.getSubStakes(staker)[0].amount, STAKE + reward);
        assertEq(unlockedOf(staker), 0);
        uint256 next = currentPeriod() + 1;
        vm.prank(worker);
        escrow.commitToNextPeriod();
        assertEq(committedLocked(staker, next), STAKE + reward);
        assertEq(escrow.getPeriodTotals(next).lockedTotal, STAKE + reward);
    }

    function test_ReStake_RewardStaysUnlockedWithoutASubStakeLockedNextPeriod() public {
        deposit(staker, STAKE, 30);
        uint256 last = currentPeriod() + 30;
        bond(staker, worker);
        vm.prank(staker);
        escrow.setReStake(true);
        advancePeriods(28);
        vm.prank(worker);
        escrow.commitToNextPeriod(); // to `last - 1`
        advancePeriods(2); // the sub-stake's last period: locked now, not in the next
        assertEq(currentPeriod(), last);

        vm.recordLogs();
        vm.prank(worker);
        uint256 reward = escrow.mint();
        assertGt(reward, 0);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            assertTrue(logs[i].topics[0] != StakingEscrow.ReStaked.selector, "restaked into an ending stake");
        }
        assertEq(escrow.getSubStakes(staker)[0].amount, STAKE);
        assertEq(unlockedOf(staker), reward, "withdrawable at once");
    }

    function test_ReStake_StopsAtMaxStake() public {
        deposit(staker, MAX_STAKE - 1_000e18, 60);
        bond(staker, worker);
        vm.prank(staker);
        escrow.setReStake(true);
        vm.prank(worker);
        escrow.commitToNextPeriod();
        advancePeriods(2);
        uint256 reward = escrow.pendingReward(staker);
        assertGt(reward, 1_000e18);

        vm.expectEmit(address(escrow));
        emit StakingEscrow.ReStaked(staker, 0, 1_000e18);
        vm.prank(worker);
        escrow.mint();
        assertEq(escrow.lockedAt(staker, currentPeriod()), MAX_STAKE);
        assertEq(unlockedOf(staker), reward - 1_000e18, "the rest stays unlocked");

        // At the maximum, the whole reward stays unlocked.
        vm.prank(worker);
        escrow.commitToNextPeriod();
        advancePeriods(2);
        vm.prank(worker);
        uint256 second = escrow.mint();
        assertEq(escrow.lockedAt(staker, currentPeriod()), MAX_STAKE);
        assertEq(unlockedOf(staker), reward - 1_000e18 + second);
    }

    /*//////////////////////////////////////////////////////////////
                                SLASHING
    //////////////////////////////////////////////////////////////*/

    function test_RevertWhen_SlashByOther() public {
        vm.expectRevert(
            abi.encodeWithSelector(Errors.StakingEscrow_CallerNotAdjudicator.selector, address(this))
        );
        escrow.slash(staker, 1, investigator, 0);
    }

    function test_RevertWhen_SlashRewardAbovePenalty() public {
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_InvalidSlash.selector, 1, 2));
        vm.prank(adjudicator);
        escrow.slash(staker, 1, investigator, 2);
        vm.expectRevert(abi.encodeWithSelector(Errors.StakingEscrow_InvalidSlash.selector, 2, 1));
        vm.prank(adjudicator);
        escrow.slash(staker, 2, address(0), 1);
    }

    function test_Slash_TakesUnlockedFirstThenSoonestSubStakes() public {
        deposit(staker, STAKE, 30); // index 0, unlocks first
        deposit(staker, STAKE, 90); // index 1
        bond(staker, worker);
        vm.prank(worker);
        escrow.commitToNextPeriod();
        uint256 next = currentPeriod() + 1;

        vm.expectEmit(address(escrow));
        emit StakingEscrow.Slashed(staker, 50_000e18, investigator, 5_000e18);
        vm.prank(adjudicator);
        escrow.slash(staker, 50_000e18, investigator, 5_000e18);

        StakingEscrow.SubStake[] memory subStakes = escrow.getSubStakes(staker);
        assertEq(subStakes[0].amount, 50_000e18, "the soonest-unlocking sub-stake pays");
        assertEq(subStakes[1].amount, STAKE);
        assertEq(escrow.stakeOf(staker), 150_000e18);
        assertEq(token.balanceOf(investigator), 5_000e18);
        assertEq(
            escrow.getStakerInfo(staker).commitLocked[0], 150_000e18, "the commitment shrinks with the stake"
        );
        assertEq(escrow.getPeriodTotals(next).lockedTotal, 150_000e18);
        // The burnt part is back in the reserve, for the token and for future issuance.
        assertEq(token.reserve(), RESERVE + 45_000e18);
    }

    function test_Slash_IsCappedAtTheStake() public {
        deposit(staker, STAKE, 30);
        vm.prank(adjudicator);
        escrow.slash(staker, 4 * STAKE, investigator, 2 * STAKE);
        assertEq(escrow.stakeOf(staker), 0);
        assertEq(escrow.lockedAt(staker, currentPeriod()), 0);
        assertEq(token.balanceOf(investigator), STAKE / 2, "the investigator's share stays proportional");
        assertEq(token.balanceOf(address(escrow)), 0);
    }

    /*//////////////////////////////////////////////////////////////
                                 VIEWS
    //////////////////////////////////////////////////////////////*/

    function test_GetActiveStakers_FiltersAndPages() public {
        address a = newNode("a", STAKE, 60);
        address b = newNode("b", 2 * STAKE, 30);
        deposit(makeAddr("idle"), STAKE, 60); // no worker
        address c = newNode("c", 3 * STAKE, 60); // never commits
        commit(a);
        commit(b);

        (address[] memory stakers, uint256[] memory locked, uint256 sum) = escrow.getActiveStakers(10, 0, 10);
        assertEq(stakers.length, 2);
        assertEq(stakers[0], a);
        assertEq(stakers[1], b);
        assertEq(locked[1], 2 * STAKE);
        assertEq(sum, 3 * STAKE);

        // b unlocks after period +30: not eligible for a 40-period policy.
        (stakers,, sum) = escrow.getActiveStakers(40, 0, 10);
        assertEq(stakers.length, 1);
        assertEq(sum, STAKE);

        // Paging.
        (stakers,,) = escrow.getActiveStakers(10, 1, 1);
        assertEq(stakers.length, 1);
        assertEq(stakers[0], b);
        (stakers,,) = escrow.getActiveStakers(10, 10, 5);
        assertEq(stakers.length, 0);
        c; // listed but inactive
    }
}

contract StakingEscrowViewsTest is Base {
    uint256 internal constant STAKE = 100_000e18;

    function test_GetNodeRecords_PagesOverTheStakerList() public {
        bytes memory key = abi.encodePacked(bytes1(0x03), keccak256("key"));
        address[] memory stakers = new address[](4);
        for (uint256 i; i < 4; ++i) {
            stakers[i] = newNode(string.concat("node-", vm.toString(i)), STAKE, 60);
            if (i != 1) {
                vm.prank(escrow.workerOf(stakers[i]));
                escrow.publishNodeRecord(string.concat("http://node-", vm.toString(i)), key);
            }
        }
        StakingEscrow.NodeView[] memory records = escrow.getNodeRecords(0, 10);
        assertEq(records.length, 3, "node-1 published nothing");
        assertEq(records[1].staker, stakers[2]);
        assertEq(records[1].worker, escrow.workerOf(stakers[2]));
        assertEq(records[1].url, "http://node-2");
        records = escrow.getNodeRecords(1, 2);
        assertEq(records.length, 1);
        assertEq(records[0].staker, stakers[2]);
        assertEq(escrow.getNodeRecords(4, 10).length, 0);
    }

    function test_StakerInfo_AndPolicyEligibility() public {
        address staker = newNode("staker", STAKE, 30);
        commit(staker);
        StakingEscrow.StakerView memory info = escrow.getStakerInfo(staker);
        assertEq(info.value, STAKE);
        assertEq(info.lockedNow, STAKE);
        assertEq(info.lockedNextPeriod, STAKE);
        assertEq(info.lastCommittedPeriod, currentPeriod() + 1);
        assertEq(info.worker, escrow.workerOf(staker));
        (uint256 locked, address worker) = escrow.policyEligibility(staker, currentPeriod() + 30);
        assertEq(locked, STAKE);
        assertEq(worker, info.worker);
        (locked,) = escrow.policyEligibility(staker, currentPeriod() + 31);
        assertEq(locked, 0, "unlocked after its last period");
    }
}
