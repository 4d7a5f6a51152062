// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Adjudicator} from "../../contracts/Adjudicator.sol";
import {StakingEscrow} from "../../contracts/StakingEscrow.sol";
import {IAdjudicator} from "../../contracts/interfaces/IAdjudicator.sol";
import {Errors} from "../../contracts/libraries/Errors.sol";
import {Secp256k1} from "../../contracts/libraries/Secp256k1.sol";
import {AdjudicatorFixtures} from "../utils/AdjudicatorFixtures.sol";
import {Vm} from "../utils/Vm.sol";

/// @notice The Adjudicator against the umbral-pre test vectors, every verdict and every rejection.
contract AdjudicatorTest is AdjudicatorFixtures {
    /// @dev A node's worker key reporting for its staker (`evaluateCFragFor`): any account the
    /// fixtures do not use.
    address internal submitter = makeAddr("reporting-worker");

    /// @dev Evaluates a case and checks its outcome against the fixture's expectation.
    function check(Case memory c) internal {
        checkThrough(c, false);
    }

    /// @dev Evaluates a case with `evaluateCFrag` from the investigator, or with `evaluateCFragFor`
    /// from `submitter` naming the investigator (`named`), and checks its outcome against the
    /// fixture's expectation: the investigator is paid either way, the submitter never.
    function checkThrough(Case memory c, bool named) internal {
        address staker = prepare(c);
        uint256 stakeBefore = escrow.stakeOf(staker);
        uint256 supplyBefore = token.totalSupply();
        uint256 investigatorBefore = token.balanceOf(investigator);
        (uint256 penalty, uint256 reward) = adjudicatorContract.penaltyFor(staker);

        address sender = named ? submitter : investigator;
        if (named) commitFor(submitter, investigator, c.evidence);
        else commitTo(investigator, c.evidence);
        vm.roll(vm.getBlockNumber() + 1);
        if (equal(c.expect, "kfrag-signature")) {
            vm.expectPartialRevert(Errors.Adjudicator_KfragSignatureMismatch.selector);
        } else if (equal(c.expect, "not-bonded")) {
            vm.expectPartialRevert(Errors.Adjudicator_WorkerNotBondedInPeriod.selector);
        }
        vm.prank(sender);
        if (named) adjudicatorContract.evaluateCFragFor(c.evidence, investigator);
        else adjudicatorContract.evaluateCFrag(c.evidence);

        bytes32 evidenceHash = hashOf(c.evidence);
        if (equal(c.expect, "correct")) {
            assertEq(
                escrow.stakeOf(staker), stakeBefore, string.concat(c.name, ": an honest node lost stake")
            );
            assertTrue(adjudicatorContract.evaluated(evidenceHash));
        } else if (equal(c.expect, "slash")) {
            assertEq(escrow.stakeOf(staker), stakeBefore - penalty, string.concat(c.name, ": not slashed"));
            assertEq(token.balanceOf(investigator), investigatorBefore + reward);
            assertEq(token.totalSupply(), supplyBefore - (penalty - reward), "the rest is burnt");
            assertTrue(adjudicatorContract.evaluated(evidenceHash));
        } else {
            assertEq(
                escrow.stakeOf(staker), stakeBefore, string.concat(c.name, ": rejected evidence slashed")
            );
            assertFalse(adjudicatorContract.evaluated(evidenceHash));
        }
        assertEq(token.balanceOf(submitter), 0, "the submitter was paid");
    }

    /*//////////////////////////////////////////////////////////////
                            EVERY TEST VECTOR
    //////////////////////////////////////////////////////////////*/

    /// @dev Each case from the same fresh state: some share their capsule and cfrag (a valid answer
    /// and the same answer with a bad signature), which is evaluated only once.
    function test_EveryFixture() public {
        assertGt(count, 0);
        for (uint256 i; i < count; ++i) {
            uint256 snapshot = vm.snapshotState();
            check(load(i));
            vm.revertToState(snapshot);
        }
    }

    /// @dev The same verdicts through `evaluateCFragFor`: one path behind both functions.
    function test_EveryFixture_ThroughEvaluateCFragFor() public {
        for (uint256 i; i < count; ++i) {
            uint256 snapshot = vm.snapshotState();
            checkThrough(load(i), true);
            vm.revertToState(snapshot);
        }
    }

    function testFuzz_ValidCFragIsNeverSlashed(uint256 seed) public {
        check(load(indexOf("correct", seed)));
    }

    function testFuzz_TamperedProofFieldIsAlwaysSlashed(uint256 seed) public {
        check(load(indexOf("slash", seed)));
    }

    function testFuzz_BadSignatureIsRejected(uint256 seed) public {
        uint256 i = seed % 2 == 0 ? indexOf("kfrag-signature", seed) : indexOf("not-bonded", seed);
        check(load(i));
    }

    /*//////////////////////////////////////////////////////////////
                             VERDICTS
    //////////////////////////////////////////////////////////////*/

    function test_Correct_EmitsTheVerdict() public {
        Case memory c = load(indexOf("correct", 0));
        address staker = prepare(c);
        bytes32 evidenceHash = keccak256(abi.encodePacked(c.evidence.capsule, c.evidence.cfrag));
        commitTo(investigator, c.evidence);
        vm.roll(vm.getBlockNumber() + 1);
        vm.expectEmit(address(adjudicatorContract));
        emit Adjudicator.CFragEvaluated(
            evidenceHash, staker, investigator, c.policyId, c.worker, Adjudicator.Verdict.Correct, 0, 0
        );
        vm.prank(investigator);
        adjudicatorContract.evaluateCFrag(c.evidence);
    }

    /*//////////////////////////////////////////////////////////////
              THE ANSWER BINDS ITS STAKER AND ITS PERIOD (REVIEW 1)
    //////////////////////////////////////////////////////////////*/

    /// @dev Regression: the staker found its worker through the current bond, so unbonding or
    /// rotating the worker after a wrong answer made the evidence revert for good.
    function test_RotatingTheWorkerDoesNotEscapeTheSlash() public {
        Case memory c = load(indexOf("slash", 0));
        address staker = prepare(c);
        (uint256 penalty,) = adjudicatorContract.penaltyFor(staker);
        advancePeriods(MIN_WORKER_PERIODS);
        bond(staker, makeAddr("fresh-worker")); // routine rotation, or a front-run of the report
        assertEq(escrow.stakerOf(c.worker), address(0));
        uint256 before = escrow.stakeOf(staker);
        report(investigator, c.evidence);
        assertEq(escrow.stakeOf(staker), before - penalty, "the staker the answer names pays");
    }

    function test_UnbondingDoesNotEscapeTheSlash() public {
        Case memory c = load(indexOf("slash", 0));
        address staker = prepare(c);
        advancePeriods(MIN_WORKER_PERIODS);
        bond(staker, address(0));
        uint256 before = escrow.stakeOf(staker);
        report(investigator, c.evidence);
        assertLt(escrow.stakeOf(staker), before);
    }

    /// @dev Regression: the old worker key bonded to another stake made that stake pay. Now the key
    /// cannot be rebonded within the window, and after it the answer is too old to judge.
    function test_AnOldAnswerNeverSlashesTheWorkersNextStake() public {
        Case memory c = load(indexOf("slash", 0));
        address staker = prepare(c);
        advancePeriods(MIN_WORKER_PERIODS);
        bond(staker, address(0));
        address next = makeAddr("next-staker");
        deposit(next, STAKE, 60);
        vm.expectPartialRevert(Errors.StakingEscrow_WorkerCoolingDown.selector);
        propose(next, c.worker);
        advancePeriods(EVIDENCE_WINDOW + 1);
        bond(next, c.worker);
        uint256 nextStake = escrow.stakeOf(next);
        expectReport(
            abi.encodeWithSelector(
                Errors.Adjudicator_EvidenceExpired.selector,
                c.evidence.period,
                currentPeriod(),
                EVIDENCE_WINDOW
            ),
            c.evidence
        );
        assertEq(escrow.stakeOf(next), nextStake);
    }

    function test_RevertWhen_WorkerWasNotBondedToTheStakerInThatPeriod() public {
        Case memory c = load(indexOf("slash", 0));
        advancePeriods(1); // bonded only after the answer's period
        address staker = prepare(c);
        expectReport(
            abi.encodeWithSelector(
                Errors.Adjudicator_WorkerNotBondedInPeriod.selector, c.worker, staker, c.evidence.period
            ),
            c.evidence
        );
    }

    function test_RevertWhen_EvidenceExpired() public {
        Case memory c = load(indexOf("slash", 0));
        address staker = prepare(c);
        uint256 snapshot = vm.snapshotState();
        advancePeriods(EVIDENCE_WINDOW); // the window's last period: still judged
        uint256 before = escrow.stakeOf(staker);
        report(investigator, c.evidence);
        assertLt(escrow.stakeOf(staker), before);
        vm.revertToState(snapshot);
        advancePeriods(EVIDENCE_WINDOW + 1);
        expectReport(
            abi.encodeWithSelector(
                Errors.Adjudicator_EvidenceExpired.selector,
                c.evidence.period,
                currentPeriod(),
                EVIDENCE_WINDOW
            ),
            c.evidence
        );
    }

    function test_RevertWhen_PeriodInFuture() public {
        Case memory c = load(indexOf("slash", 0));
        prepare(c);
        c.evidence.period = currentPeriod() + 1;
        expectReport(
            abi.encodeWithSelector(
                Errors.Adjudicator_PeriodInFuture.selector, currentPeriod() + 1, currentPeriod()
            ),
            c.evidence
        );
    }

    /// @dev Regression (review item 5): the cap counted free tokens, so withdrawing them first
    /// lowered it. Now it counts held tokens only: the same before and after a withdrawal.
    function test_PenaltyCap_CountsHeldTokensOnly() public {
        Case memory c = load(indexOf("slash", 0));
        address staker = prepare(c); // STAKE locked for 60 periods
        uint256 cut = STAKE - 5_000e18;
        vm.prank(adjudicator);
        escrow.slash(staker, cut, investigator, 0);
        deposit(staker, 100_000e18, 30);
        advancePeriods(31 + EVIDENCE_WINDOW); // the second sub-stake is free now
        assertEq(escrow.heldStakeOf(staker), 5_000e18);
        (uint256 penalty,) = adjudicatorContract.penaltyFor(staker);
        assertEq(penalty, 500e18, "a tenth of what is held, not of the free tokens");
        vm.prank(staker);
        escrow.withdraw(100_000e18);
        (uint256 after_,) = adjudicatorContract.penaltyFor(staker);
        assertEq(after_, penalty, "withdrawing free tokens does not lower the cap");
    }

    /*//////////////////////////////////////////////////////////////
                 ONLY THE INVESTIGATOR IS PAID (REVIEW 2)
    //////////////////////////////////////////////////////////////*/

    /// @dev Regression: the reward went to whoever sent the evidence, so a bot copying a report
    /// from the mempool was paid instead of the investigator.
    function test_RevertWhen_ACopierRevealsWithoutCommitment() public {
        Case memory c = load(indexOf("slash", 0));
        address staker = prepare(c);
        commitTo(investigator, c.evidence);
        vm.roll(vm.getBlockNumber() + 1);
        address copier = makeAddr("copier");
        bytes32 evidenceHash = keccak256(abi.encodePacked(c.evidence.capsule, c.evidence.cfrag));
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.Adjudicator_NotCommitted.selector,
                adjudicatorContract.evidenceCommitment(evidenceHash, copier)
            )
        );
        vm.prank(copier);
        adjudicatorContract.evaluateCFrag(c.evidence);
        // A copier committing on sight is a block late: the investigator's reveal lands first.
        commitTo(copier, c.evidence);
        (, uint256 reward) = adjudicatorContract.penaltyFor(staker);
        vm.prank(investigator);
        adjudicatorContract.evaluateCFrag(c.evidence);
        assertEq(token.balanceOf(investigator), reward);
        vm.roll(vm.getBlockNumber() + 1);
        vm.expectRevert(abi.encodeWithSelector(Errors.Adjudicator_AlreadyEvaluated.selector, evidenceHash));
        vm.prank(copier);
        adjudicatorContract.evaluateCFrag(c.evidence);
        assertEq(token.balanceOf(copier), 0);
    }

    function test_RevertWhen_RevealedInTheCommitBlock() public {
        Case memory c = load(indexOf("slash", 0));
        prepare(c);
        commitTo(investigator, c.evidence);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.Adjudicator_RevealTooEarly.selector, vm.getBlockNumber())
        );
        vm.prank(investigator);
        adjudicatorContract.evaluateCFrag(c.evidence);
    }

    /// @dev Someone committing an investigator's commitment first only makes it older.
    function test_CommitEvidence_KeepsTheEarliestBlock() public {
        Case memory c = load(indexOf("slash", 0));
        bytes32 evidenceHash = keccak256(abi.encodePacked(c.evidence.capsule, c.evidence.cfrag));
        bytes32 commitment = adjudicatorContract.evidenceCommitment(evidenceHash, investigator);
        vm.expectEmit(address(adjudicatorContract));
        emit Adjudicator.EvidenceCommitted(commitment, address(this));
        adjudicatorContract.commitEvidence(commitment);
        uint256 first = vm.getBlockNumber();
        vm.roll(first + 5);
        commitTo(investigator, c.evidence);
        assertEq(adjudicatorContract.commitments(commitment), first);
    }

    /// @dev Regression: a staker could report its own wrong answer and get half its penalty back.
    function test_RevertWhen_TheCulpritReportsItself() public {
        Case memory c = load(indexOf("slash", 0));
        address staker = prepare(c);
        address[2] memory culprits = [staker, c.worker];
        for (uint256 i; i < culprits.length; ++i) {
            commitTo(culprits[i], c.evidence);
            vm.roll(vm.getBlockNumber() + 1);
            vm.expectRevert(
                abi.encodeWithSelector(Errors.Adjudicator_InvestigatorIsCulprit.selector, culprits[i])
            );
            vm.prank(culprits[i]);
            adjudicatorContract.evaluateCFrag(c.evidence);
        }
        // The staker's current worker, after a rotation, is refused too.
        advancePeriods(MIN_WORKER_PERIODS);
        address current = makeAddr("current-worker");
        bond(staker, current);
        commitTo(current, c.evidence);
        vm.roll(vm.getBlockNumber() + 1);
        vm.expectRevert(abi.encodeWithSelector(Errors.Adjudicator_InvestigatorIsCulprit.selector, current));
        vm.prank(current);
        adjudicatorContract.evaluateCFrag(c.evidence);
        // The evidence is still there for an honest investigator.
        uint256 before = escrow.stakeOf(staker);
        report(investigator, c.evidence);
        assertLt(escrow.stakeOf(staker), before);
    }

    function test_RevertWhen_EvaluatedTwice() public {
        Case memory c = load(indexOf("slash", 0));
        prepare(c);
        report(investigator, c.evidence);
        bytes32 evidenceHash = keccak256(abi.encodePacked(c.evidence.capsule, c.evidence.cfrag));
        vm.expectRevert(abi.encodeWithSelector(Errors.Adjudicator_AlreadyEvaluated.selector, evidenceHash));
        vm.prank(investigator);
        adjudicatorContract.evaluateCFrag(c.evidence);
    }

    function test_Penalty_GrowsWithHistoryAndIsCapped() public {
        uint256 first = indexOf("slash", 0);
        Case memory c = load(first);
        address staker = prepare(c);
        (uint256 penalty,) = adjudicatorContract.penaltyFor(staker);
        assertEq(penalty, BASE_PENALTY);
        report(investigator, c.evidence);
        assertEq(adjudicatorContract.violations(staker), 1);
        (penalty,) = adjudicatorContract.penaltyFor(staker);
        assertEq(penalty, BASE_PENALTY + PENALTY_HISTORY_COEFFICIENT);

        // A small stake caps the penalty at a tenth of it.
        uint256 cut = escrow.stakeOf(staker) - 5_000e18;
        vm.prank(adjudicator);
        escrow.slash(staker, cut, investigator, 0);
        (penalty,) = adjudicatorContract.penaltyFor(staker);
        assertEq(penalty, 500e18);
    }

    /*//////////////////////////////////////////////////////////////
            EVALUATECFRAGFOR: THE REPORTER NAMES WHO IS PAID
    //////////////////////////////////////////////////////////////*/

    /// @dev A node's worker key reports and its staker is paid: exactly `penalty / rewardCoefficient`,
    /// to the beneficiary only, and the event names the beneficiary.
    function test_EvaluateCFragFor_PaysTheBeneficiary() public {
        Case memory c = load(indexOf("slash", 0));
        address staker = prepare(c);
        address reportingStaker = newNode("reporting-node", STAKE, 60);
        address reportingWorker = workerOf(reportingStaker);
        bytes32 evidenceHash = hashOf(c.evidence);
        uint256 stakeBefore = escrow.stakeOf(staker);
        uint256 supplyBefore = token.totalSupply();
        (uint256 penalty, uint256 reward) = adjudicatorContract.penaltyFor(staker);
        assertEq(reward, penalty / REWARD_COEFFICIENT);
        assertGt(reward, 0);

        bytes32 commitment = commitmentFor(reportingWorker, reportingStaker, c.evidence);
        assertEq(commitment, keccak256(abi.encode(evidenceHash, reportingWorker, reportingStaker)));
        vm.expectEmit(address(adjudicatorContract));
        emit Adjudicator.EvidenceCommitted(commitment, reportingWorker);
        commitFor(reportingWorker, reportingStaker, c.evidence);
        vm.roll(vm.getBlockNumber() + 1);
        vm.expectEmit(address(escrow));
        emit StakingEscrow.Slashed(staker, penalty, reportingStaker, reward);
        vm.recordLogs();
        vm.prank(reportingWorker);
        adjudicatorContract.evaluateCFragFor(c.evidence, reportingStaker);
        expectEvaluated(evidenceHash, staker, reportingStaker, c, penalty, reward);

        assertEq(token.balanceOf(reportingStaker), penalty / REWARD_COEFFICIENT, "the beneficiary is paid");
        assertEq(token.balanceOf(reportingWorker), 0, "the submitter is not paid");
        assertEq(escrow.stakeOf(staker), stakeBefore - penalty);
        assertEq(token.totalSupply(), supplyBefore - (penalty - reward), "the rest is burnt");
        assertEq(adjudicatorContract.violations(staker), 1);
        assertTrue(adjudicatorContract.evaluated(evidenceHash));
        assertEq(adjudicatorContract.commitments(commitment), 0, "the commitment is used up");
    }

    /// @dev The verdict is recorded for the beneficiary, and nobody is paid or slashed.
    function test_EvaluateCFragFor_CorrectCFragIsRecordedWithoutPayment() public {
        Case memory c = load(indexOf("correct", 0));
        address staker = prepare(c);
        address beneficiary = makeAddr("beneficiary");
        bytes32 evidenceHash = hashOf(c.evidence);
        uint256 stakeBefore = escrow.stakeOf(staker);
        uint256 supplyBefore = token.totalSupply();
        commitFor(submitter, beneficiary, c.evidence);
        vm.roll(vm.getBlockNumber() + 1);
        vm.expectEmit(address(adjudicatorContract));
        emit Adjudicator.CFragEvaluated(
            evidenceHash, staker, beneficiary, c.policyId, c.worker, Adjudicator.Verdict.Correct, 0, 0
        );
        vm.prank(submitter);
        adjudicatorContract.evaluateCFragFor(c.evidence, beneficiary);
        assertTrue(adjudicatorContract.evaluated(evidenceHash));
        assertEq(escrow.stakeOf(staker), stakeBefore);
        assertEq(token.totalSupply(), supplyBefore);
        assertEq(token.balanceOf(beneficiary), 0);
        assertEq(token.balanceOf(submitter), 0);
        assertEq(adjudicatorContract.violations(staker), 0);
    }

    /// @dev A submitter pays the gas of any other account's reward (or names itself): the
    /// beneficiary, whoever it is (but the zero address and the culprits, tested below), gets
    /// exactly `penalty / rewardCoefficient`, and the submitter, when another account, nothing.
    function testFuzz_EvaluateCFragFor_PaysAnyBeneficiary(address beneficiary, uint256 seed) public {
        Case memory c = load(indexOf("slash", seed));
        address staker = prepare(c);
        vm.assume(beneficiary != address(0) && beneficiary != staker && beneficiary != c.worker);
        // Tokens paid to the escrow itself stay there as a donation: its balance moves by the
        // penalty too, which this test's arithmetic does not follow.
        vm.assume(beneficiary != address(escrow));
        uint256 beneficiaryBefore = token.balanceOf(beneficiary);
        uint256 submitterBefore = token.balanceOf(submitter);
        (uint256 penalty, uint256 reward) = adjudicatorContract.penaltyFor(staker);
        reportFor(submitter, beneficiary, c.evidence);
        assertEq(token.balanceOf(beneficiary), beneficiaryBefore + penalty / REWARD_COEFFICIENT);
        assertEq(reward, penalty / REWARD_COEFFICIENT);
        if (beneficiary != submitter) assertEq(token.balanceOf(submitter), submitterBefore);
        assertEq(adjudicatorContract.violations(staker), 1);
    }

    /// @dev The commitment names the sender of the reveal: nobody else can reveal it, not even the
    /// beneficiary it names; the committed sender still can.
    function test_RevertWhen_ForIsRevealedByAnotherSender() public {
        Case memory c = load(indexOf("slash", 0));
        prepare(c);
        address beneficiary = makeAddr("beneficiary");
        commitFor(submitter, beneficiary, c.evidence);
        vm.roll(vm.getBlockNumber() + 1);
        address[2] memory others = [makeAddr("copier"), beneficiary];
        for (uint256 i; i < others.length; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    Errors.Adjudicator_NotCommitted.selector,
                    commitmentFor(others[i], beneficiary, c.evidence)
                )
            );
            vm.prank(others[i]);
            adjudicatorContract.evaluateCFragFor(c.evidence, beneficiary);
        }
        vm.prank(submitter);
        adjudicatorContract.evaluateCFragFor(c.evidence, beneficiary);
        assertGt(token.balanceOf(beneficiary), 0);
    }

    /// @dev The commitment names the beneficiary: the sender that made it cannot redirect the reward
    /// (to another account, or to itself) when it reveals.
    function test_RevertWhen_ForNamesAnotherBeneficiary() public {
        Case memory c = load(indexOf("slash", 0));
        prepare(c);
        address beneficiary = makeAddr("beneficiary");
        commitFor(submitter, beneficiary, c.evidence);
        vm.roll(vm.getBlockNumber() + 1);
        address[2] memory redirected = [makeAddr("other-beneficiary"), submitter];
        for (uint256 i; i < redirected.length; ++i) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    Errors.Adjudicator_NotCommitted.selector,
                    commitmentFor(submitter, redirected[i], c.evidence)
                )
            );
            vm.prank(submitter);
            adjudicatorContract.evaluateCFragFor(c.evidence, redirected[i]);
        }
        assertFalse(adjudicatorContract.evaluated(hashOf(c.evidence)));
    }

    /// @dev Each function reveals only its own commitment: `evidenceCommitment(h, a)` is not
    /// `evidenceCommitmentFor(h, a, a)`, so neither reveals the other's.
    function test_RevertWhen_ACommitmentIsRevealedThroughTheOtherFunction() public {
        Case memory c = load(indexOf("slash", 0));
        address staker = prepare(c);
        bytes32 evidenceHash = hashOf(c.evidence);
        commitTo(investigator, c.evidence);
        vm.roll(vm.getBlockNumber() + 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.Adjudicator_NotCommitted.selector,
                commitmentFor(investigator, investigator, c.evidence)
            )
        );
        vm.prank(investigator);
        adjudicatorContract.evaluateCFragFor(c.evidence, investigator);

        commitFor(submitter, submitter, c.evidence);
        vm.roll(vm.getBlockNumber() + 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.Adjudicator_NotCommitted.selector,
                adjudicatorContract.evidenceCommitment(evidenceHash, submitter)
            )
        );
        vm.prank(submitter);
        adjudicatorContract.evaluateCFrag(c.evidence);

        // Naming itself through its own commitment, a submitter is paid like with evaluateCFrag.
        (, uint256 reward) = adjudicatorContract.penaltyFor(staker);
        vm.prank(submitter);
        adjudicatorContract.evaluateCFragFor(c.evidence, submitter);
        assertEq(token.balanceOf(submitter), reward);
    }

    function test_RevertWhen_ForIsRevealedInTheCommitBlock() public {
        Case memory c = load(indexOf("slash", 0));
        prepare(c);
        address beneficiary = makeAddr("beneficiary");
        commitFor(submitter, beneficiary, c.evidence);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.Adjudicator_RevealTooEarly.selector, vm.getBlockNumber())
        );
        vm.prank(submitter);
        adjudicatorContract.evaluateCFragFor(c.evidence, beneficiary);
        vm.roll(vm.getBlockNumber() + 1);
        vm.prank(submitter);
        adjudicatorContract.evaluateCFragFor(c.evidence, beneficiary);
        assertGt(token.balanceOf(beneficiary), 0);
    }

    /// @dev Checked first: before the evidence's shapes, its evaluation and the commitment, which
    /// stays for a later reveal (it can never be revealed: naming nobody is always refused).
    function test_RevertWhen_BeneficiaryIsZero() public {
        Case memory c = load(indexOf("slash", 0));
        prepare(c);
        bytes32 commitment = commitmentFor(submitter, address(0), c.evidence);
        commitFor(submitter, address(0), c.evidence);
        uint256 committedBlock = vm.getBlockNumber();
        vm.roll(committedBlock + 1);
        vm.expectRevert(Errors.Adjudicator_ZeroBeneficiary.selector);
        vm.prank(submitter);
        adjudicatorContract.evaluateCFragFor(c.evidence, address(0));
        assertEq(adjudicatorContract.commitments(commitment), committedBlock, "the commitment was consumed");
        assertFalse(adjudicatorContract.evaluated(hashOf(c.evidence)));

        // Malformed evidence: the zero beneficiary is still what is reported.
        IAdjudicator.Evidence memory malformed = load(indexOf("slash", 0)).evidence;
        malformed.cfrag = new bytes(1);
        vm.expectRevert(Errors.Adjudicator_ZeroBeneficiary.selector);
        vm.prank(submitter);
        adjudicatorContract.evaluateCFragFor(malformed, address(0));

        // Evaluated evidence, too.
        report(investigator, c.evidence);
        vm.expectRevert(Errors.Adjudicator_ZeroBeneficiary.selector);
        vm.prank(submitter);
        adjudicatorContract.evaluateCFragFor(c.evidence, address(0));
    }

    /// @dev The culprit cannot have itself paid through an honest submitter: the staker, the worker
    /// that signed, or the staker's current worker (after a rotation) named as beneficiary.
    function test_RevertWhen_TheCulpritIsTheBeneficiary() public {
        Case memory c = load(indexOf("slash", 0));
        address staker = prepare(c);
        address[2] memory culprits = [staker, c.worker];
        for (uint256 i; i < culprits.length; ++i) {
            expectReportFor(
                abi.encodeWithSelector(Errors.Adjudicator_InvestigatorIsCulprit.selector, culprits[i]),
                submitter,
                culprits[i],
                c.evidence
            );
        }
        advancePeriods(MIN_WORKER_PERIODS);
        address current = makeAddr("current-worker");
        bond(staker, current);
        expectReportFor(
            abi.encodeWithSelector(Errors.Adjudicator_InvestigatorIsCulprit.selector, current),
            submitter,
            current,
            c.evidence
        );
        // The evidence is still there for an honest beneficiary.
        uint256 before = escrow.stakeOf(staker);
        reportFor(submitter, investigator, c.evidence);
        assertLt(escrow.stakeOf(staker), before);
        assertGt(token.balanceOf(investigator), 0);
    }

    /// @dev Nor can the culprit send the reveal for an honest beneficiary.
    function test_RevertWhen_TheCulpritSubmitsForAnother() public {
        Case memory c = load(indexOf("slash", 0));
        address staker = prepare(c);
        address beneficiary = makeAddr("beneficiary");
        address[2] memory culprits = [staker, c.worker];
        for (uint256 i; i < culprits.length; ++i) {
            expectReportFor(
                abi.encodeWithSelector(Errors.Adjudicator_InvestigatorIsCulprit.selector, culprits[i]),
                culprits[i],
                beneficiary,
                c.evidence
            );
        }
        advancePeriods(MIN_WORKER_PERIODS);
        address current = makeAddr("current-worker");
        bond(staker, current);
        expectReportFor(
            abi.encodeWithSelector(Errors.Adjudicator_InvestigatorIsCulprit.selector, current),
            current,
            beneficiary,
            c.evidence
        );
        assertEq(token.balanceOf(beneficiary), 0);
        assertFalse(adjudicatorContract.evaluated(hashOf(c.evidence)));
    }

    /// @dev A correct cfrag pays nobody, so a culprit may report it through either role.
    function test_EvaluateCFragFor_CulpritMayReportACorrectCFrag() public {
        Case memory c = load(indexOf("correct", 0));
        address staker = prepare(c);
        reportFor(c.worker, staker, c.evidence);
        assertTrue(adjudicatorContract.evaluated(hashOf(c.evidence)));
    }

    /// @dev One evaluation per evidence across both functions, in either order.
    function test_RevertWhen_EvaluatedThroughBothFunctions() public {
        Case memory c = load(indexOf("slash", 0));
        prepare(c);
        bytes32 evidenceHash = hashOf(c.evidence);
        uint256 snapshot = vm.snapshotState();

        report(investigator, c.evidence);
        commitFor(submitter, makeAddr("beneficiary"), c.evidence);
        vm.roll(vm.getBlockNumber() + 1);
        vm.expectRevert(abi.encodeWithSelector(Errors.Adjudicator_AlreadyEvaluated.selector, evidenceHash));
        vm.prank(submitter);
        adjudicatorContract.evaluateCFragFor(c.evidence, makeAddr("beneficiary"));

        vm.revertToState(snapshot);
        reportFor(submitter, makeAddr("beneficiary"), c.evidence);
        expectReport(
            abi.encodeWithSelector(Errors.Adjudicator_AlreadyEvaluated.selector, evidenceHash), c.evidence
        );
        assertEq(adjudicatorContract.violations(c.staker), 1);
    }

    /// @dev The recorded `CFragEvaluated` names `beneficiary` as the investigator and carries a
    /// wrong verdict (which one depends on the fixture's tampered field) and the penalty and reward.
    function expectEvaluated(
        bytes32 evidenceHash,
        address staker,
        address beneficiary,
        Case memory c,
        uint256 penalty,
        uint256 reward
    ) internal {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 found;
        for (uint256 i; i < logs.length; ++i) {
            if (
                logs[i].emitter != address(adjudicatorContract)
                    || logs[i].topics[0] != Adjudicator.CFragEvaluated.selector
            ) continue;
            found++;
            assertEq(logs[i].topics[1], evidenceHash);
            assertEq(logs[i].topics[2], bytes32(uint256(uint160(staker))));
            assertEq(logs[i].topics[3], bytes32(uint256(uint160(beneficiary))), "the event names the payee");
            (bytes16 policyId, address worker, Adjudicator.Verdict verdict, uint256 p, uint256 r) =
                abi.decode(logs[i].data, (bytes16, address, Adjudicator.Verdict, uint256, uint256));
            assertEq(bytes32(policyId), bytes32(c.policyId));
            assertEq(worker, c.worker);
            assertTrue(verdict != Adjudicator.Verdict.Correct, "a wrong cfrag judged correct");
            assertEq(p, penalty);
            assertEq(r, reward);
        }
        assertEq(found, 1, "one CFragEvaluated");
    }

    /// @dev Commits to `evidence` as `from` for `beneficiary`, then expects its reveal to revert so.
    function expectReportFor(
        bytes memory revertData,
        address from,
        address beneficiary,
        IAdjudicator.Evidence memory evidence
    ) internal {
        commitFor(from, beneficiary, evidence);
        vm.roll(vm.getBlockNumber() + 1);
        vm.expectRevert(revertData);
        vm.prank(from);
        adjudicatorContract.evaluateCFragFor(evidence, beneficiary);
    }

    /*//////////////////////////////////////////////////////////////
                           MALFORMED EVIDENCE
    //////////////////////////////////////////////////////////////*/

    function test_RevertWhen_LengthsAreWrong() public {
        Case memory c = load(indexOf("correct", 0));
        prepare(c);
        IAdjudicator.Evidence memory evidence = c.evidence;
        evidence.capsule = bytes.concat(evidence.capsule, hex"00");
        expectMalformed("capsule length", evidence);
        evidence = load(indexOf("correct", 0)).evidence;
        evidence.cfrag = new bytes(358);
        expectMalformed("cfrag length", evidence);
        evidence = load(indexOf("correct", 0)).evidence;
        evidence.receivingKey = new bytes(32);
        expectMalformed("key length", evidence);
    }

    function test_RevertWhen_APointDoesNotMatchItsCompressedForm() public {
        Case memory c = load(indexOf("correct", 0));
        prepare(c);
        IAdjudicator.Evidence memory evidence = c.evidence;
        evidence.ys[4] = Secp256k1.P - evidence.ys[4]; // the other root: wrong sign
        expectMalformed("point", evidence);
    }

    function test_RevertWhen_AProductIsWrong() public {
        Case memory c = load(indexOf("correct", 0));
        prepare(c);
        IAdjudicator.Evidence memory evidence = c.evidence;
        // -ez is on the curve but is not z*E.
        evidence.ez.y = Secp256k1.P - evidence.ez.y;
        expectMalformed("product", evidence);
        evidence = load(indexOf("correct", 0)).evidence;
        evidence.u1h.x += 1; // off the curve: its address cannot match
        expectMalformed("product", evidence);
    }

    function test_RevertWhen_PolicyUnknown() public {
        Case memory c = load(indexOf("correct", 0));
        expectReport(
            abi.encodeWithSelector(Errors.Adjudicator_PolicyNotFound.selector, c.policyId), c.evidence
        );
    }

    function test_RevertWhen_WorkerSignatureUnparsable() public {
        Case memory c = load(indexOf("correct", 0));
        prepare(c);
        c.evidence.workerSignature = new bytes(64);
        expectReport(abi.encodeWithSelector(Errors.Adjudicator_InvalidWorkerSignature.selector), c.evidence);
    }

    function expectMalformed(string memory what, IAdjudicator.Evidence memory evidence) internal {
        expectReport(abi.encodeWithSelector(Errors.Adjudicator_MalformedEvidence.selector, what), evidence);
    }

    /// @dev Commits to `evidence` as the investigator, then expects its reveal to revert so.
    function expectReport(bytes memory revertData, IAdjudicator.Evidence memory evidence) internal {
        commitTo(investigator, evidence);
        vm.roll(vm.getBlockNumber() + 1);
        vm.expectRevert(revertData);
        vm.prank(investigator);
        adjudicatorContract.evaluateCFrag(evidence);
    }

    /*//////////////////////////////////////////////////////////////
                               CURVE MATHS
    //////////////////////////////////////////////////////////////*/

    /// @dev G, 2G and 3G: the sum and doubling formulas against known points.
    function test_Secp256k1_SumAndDoubling() public pure {
        uint256 gx = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798;
        uint256 gy = 0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8;
        uint256 g2x = 0xC6047F9441ED7D6D3045406E95C07CD85C778E4B8CEF3CA7ABAC09B95C709EE5;
        uint256 g2y = 0x1AE168FEA63DC339A3C58419466CEAEEF7F632653266D0E1236431A950CFE52A;
        uint256 g3x = 0xF9308A019258C31049344F85F89D5229B531C845836F99B08601F113BCE036F9;
        uint256 g3y = 0x388F7B0F632DE8140FE337E62A37F3566500A99934C2231B6CB9FD7584B8E672;
        assertTrue(Secp256k1.isOnCurve(gx, gy));
        assertTrue(Secp256k1.isSum(gx, gy, gx, gy, g2x, g2y), "G + G");
        assertTrue(Secp256k1.isSum(gx, gy, g2x, g2y, g3x, g3y), "G + 2G");
        assertFalse(Secp256k1.isSum(gx, gy, g2x, g2y, g2x, g2y));
        assertFalse(Secp256k1.isSum(gx, gy, gx, Secp256k1.P - gy, g2x, g2y), "G - G is infinity");
        assertTrue(Secp256k1.isProduct(gx, gy, 3, g3x, g3y), "3 * G");
        assertFalse(Secp256k1.isProduct(gx, gy, 2, g3x, g3y));
        assertFalse(Secp256k1.isProduct(gx, gy, 0, g3x, g3y));
    }
}
