// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Adjudicator} from "../../../contracts/Adjudicator.sol";
import {KMSToken} from "../../../contracts/KMSToken.sol";
import {StakingEscrow} from "../../../contracts/StakingEscrow.sol";
import {IAdjudicator} from "../../../contracts/interfaces/IAdjudicator.sol";
import {Vm} from "../../utils/Vm.sol";

/// @notice Reports the umbral-pre test vectors to the real Adjudicator in two steps (commit, then
/// reveal from a later block) in random order, by random investigators (sometimes the culprit
/// itself, sometimes a thief replaying another investigator's reveal), paid themselves
/// (`evaluateCFrag`) or naming who is paid (`evaluateCFragFor`: another investigator, or sometimes
/// the culprit), while time passes and the nodes rotate or drop their worker keys. It predicts the outcome of every reveal from the rules
/// and fails the run (a revert: the suite sets fail-on-revert) when the Adjudicator disagrees, and
/// keeps ghost totals of what every slash moved.
contract EvaluationHandler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    Adjudicator public immutable adjudicator;
    StakingEscrow public immutable escrow;
    KMSToken public immutable token;
    /// @notice The period every fixture answer names.
    uint256 public immutable answerPeriod;

    struct Case {
        IAdjudicator.Evidence evidence;
        bytes32 evidenceHash;
        bool correct;
        address staker;
        address signer; // the worker that signed the answer
    }

    /// @notice A commitment awaiting its reveal.
    struct Pending {
        uint256 caseIndex;
        address investigator; // the sender of the reveal
        address beneficiary; // named to `evaluateCFragFor`; zero: `evaluateCFrag`, paying the sender
    }

    Case[] internal cases;
    Pending[] internal pending;
    address[3] public investigators = [address(0x1001), address(0x1002), address(0x1003)];

    uint256 public ghostPenalties;
    uint256 public ghostRewards;
    /// @notice Every address a reveal paid (the investigators, and any former worker of the staker
    /// that committed, or was named, while it was current: not a culprit once rotated out), and what
    /// it was paid.
    address[] public payees;
    mapping(address => uint256) public ghostPaidTo;
    uint256 public ghostHonestLoss; // stake lost by the node of a correct cfrag: must stay zero
    uint256 public evaluations;
    uint256 public wrongEvaluations;
    // Counters, to see that the run did something
    mapping(bytes32 => uint256) public calls;

    constructor(Adjudicator adjudicator_, StakingEscrow escrow_, KMSToken token_, uint256 answerPeriod_) {
        adjudicator = adjudicator_;
        escrow = escrow_;
        token = token_;
        answerPeriod = answerPeriod_;
    }

    /// @notice Set-up only (the suite does not target it).
    function addCase(IAdjudicator.Evidence memory evidence, bool correct, address staker, address signer)
        external
    {
        cases.push(
            Case(
                evidence,
                keccak256(abi.encodePacked(evidence.capsule, evidence.cfrag)),
                correct,
                staker,
                signer
            )
        );
    }

    function caseCount() external view returns (uint256) {
        return cases.length;
    }

    function investigatorCount() external view returns (uint256) {
        return investigators.length;
    }

    function payeeCount() external view returns (uint256) {
        return payees.length;
    }

    /*//////////////////////////////////////////////////////////////
                                REPORTS
    //////////////////////////////////////////////////////////////*/

    /// @notice Step one: an investigator commits to a case. One seed in four makes the culprit
    /// commit instead: the staker, the worker that signed, or the staker's current worker. One seed
    /// in three commits to `evaluateCFragFor`, naming who is paid: an investigator (perhaps the
    /// sender itself), or, one time in four, the culprit.
    function commit(uint256 caseSeed, uint256 investigatorSeed) external {
        uint256 i = caseSeed % cases.length;
        Case storage c = cases[i];
        address investigator = investigators[investigatorSeed % investigators.length];
        if ((investigatorSeed >> 8) % 4 == 0) investigator = _culprit(c, investigatorSeed >> 16);
        address beneficiary;
        if ((investigatorSeed >> 24) % 3 == 0) {
            beneficiary = (investigatorSeed >> 32) % 4 == 0
                ? _culprit(c, investigatorSeed >> 40)
                : investigators[(investigatorSeed >> 48) % investigators.length];
        }
        bytes32 commitment = _commitment(c, investigator, beneficiary);
        uint256 earlier = adjudicator.commitments(commitment);
        vm.prank(investigator);
        adjudicator.commitEvidence(commitment);
        if (earlier != 0) {
            require(adjudicator.commitments(commitment) == earlier, "a second commitment moved the block");
            return; // committed before: pending, or dropped after a final refusal
        }
        require(adjudicator.commitments(commitment) == vm.getBlockNumber(), "commitment not recorded");
        pending.push(Pending(i, investigator, beneficiary));
        calls[beneficiary == address(0) ? bytes32("commit") : bytes32("commitFor")]++;
    }

    /// @notice Step two: reveals a pending commitment, after a thief (an investigator that did not
    /// commit to this evidence) tried to reveal it first, for itself or for the payee, and after the
    /// committed sender tried to name another beneficiary. Checks the verdict against the rules: the
    /// reveal succeeds exactly when it comes from a later block than the commitment, the evidence
    /// was not evaluated, the answer is within the evidence window, and, for a wrong cfrag, neither
    /// the sender nor the beneficiary is the culprit. A rotated or dropped worker key changes nothing.
    function reveal(uint256 pendingSeed, uint256 thiefSeed) external {
        if (pending.length == 0) return;
        uint256 index = pendingSeed % pending.length;
        Pending memory p = pending[index];
        Case storage c = cases[p.caseIndex];
        address payee = p.beneficiary == address(0) ? p.investigator : p.beneficiary;
        address thief = investigators[thiefSeed % investigators.length];
        _tryTheft(c, thief, payee);
        if (p.beneficiary != address(0)) _tryRedirect(c, p.investigator, thief);

        uint256 committedBlock = adjudicator.commitments(_commitment(c, p.investigator, p.beneficiary));
        bool tooEarly = committedBlock >= vm.getBlockNumber();
        bool expired = escrow.currentPeriod() - answerPeriod > escrow.evidenceWindow();
        bool culprit = !c.correct && (_isCulprit(c, p.investigator) || _isCulprit(c, payee));
        bool accepted = committedBlock != 0 && !tooEarly && !adjudicator.evaluated(c.evidenceHash) && !expired
            && !culprit;

        if (_evaluate(c, p)) {
            require(accepted, "the Adjudicator accepted a reveal the rules refuse");
            calls[c.correct ? bytes32("revealCorrect") : bytes32("revealWrong")]++;
            if (p.beneficiary != address(0)) calls["revealFor"]++;
        } else {
            require(!accepted, "the Adjudicator refused a reveal the rules accept");
            if (tooEarly) {
                calls["revealTooEarly"]++;
                return; // can be tried again from a later block
            }
            if (expired) calls["revealExpired"]++;
            else if (culprit) calls["revealByCulprit"]++;
            else calls["revealRefused"]++;
        }
        pending[index] = pending[pending.length - 1];
        pending.pop();
    }

    /// @dev An investigator with no commitment to the evidence cannot reveal it, neither for itself
    /// nor copying a reveal that names `payee`.
    function _tryTheft(Case storage c, address thief, address payee) internal {
        if (adjudicator.commitments(_commitment(c, thief, address(0))) == 0) {
            vm.prank(thief);
            try adjudicator.evaluateCFrag(c.evidence) {
                revert("an investigator that did not commit revealed the evidence");
            } catch {
                calls["thiefRefused"]++;
            }
        }
        if (adjudicator.commitments(_commitment(c, thief, payee)) == 0) {
            vm.prank(thief);
            try adjudicator.evaluateCFragFor(c.evidence, payee) {
                revert("an investigator that did not commit revealed the evidence for another");
            } catch {
                calls["thiefForRefused"]++;
            }
        }
    }

    /// @dev The sender of a commitment naming a beneficiary cannot name another when it reveals.
    function _tryRedirect(Case storage c, address submitter, address other) internal {
        if (adjudicator.commitments(_commitment(c, submitter, other)) != 0) return;
        vm.prank(submitter);
        try adjudicator.evaluateCFragFor(c.evidence, other) {
            revert("a reveal named a beneficiary its commitment does not");
        } catch {
            calls["redirectRefused"]++;
        }
    }

    /// @dev Reveals `p`; on success checks and records what moved: the payee got the reward, and a
    /// sender naming another beneficiary got nothing.
    function _evaluate(Case storage c, Pending memory p) internal returns (bool success) {
        address payee = p.beneficiary == address(0) ? p.investigator : p.beneficiary;
        uint256 stakeBefore = escrow.stakeOf(c.staker);
        uint256 payeeBefore = token.balanceOf(payee);
        uint256 senderBefore = token.balanceOf(p.investigator);
        uint256 violationsBefore = adjudicator.violations(c.staker);
        vm.prank(p.investigator);
        if (p.beneficiary == address(0)) {
            try adjudicator.evaluateCFrag(c.evidence) {}
            catch {
                return false;
            }
        } else {
            try adjudicator.evaluateCFragFor(c.evidence, p.beneficiary) {}
            catch {
                return false;
            }
        }
        uint256 lost = stakeBefore - escrow.stakeOf(c.staker);
        uint256 paid = token.balanceOf(payee) - payeeBefore;
        require(paid <= lost, "the investigator got more than the penalty");
        if (payee != p.investigator) {
            require(
                token.balanceOf(p.investigator) == senderBefore, "the sender was paid, not the beneficiary"
            );
        }
        require(
            adjudicator.commitments(_commitment(c, p.investigator, p.beneficiary)) == 0,
            "the commitment was not used up"
        );
        if (c.correct) {
            ghostHonestLoss += lost;
            require(adjudicator.violations(c.staker) == violationsBefore, "a correct cfrag counted");
        } else {
            require(adjudicator.violations(c.staker) == violationsBefore + 1, "a violation not counted");
            wrongEvaluations++;
        }
        ghostPenalties += lost;
        ghostRewards += paid;
        if (paid != 0) {
            if (ghostPaidTo[payee] == 0) payees.push(payee);
            ghostPaidTo[payee] += paid;
        }
        evaluations++;
        return true;
    }

    /// @dev The commitment `investigator` reveals with `evaluateCFrag` (`beneficiary` zero) or with
    /// `evaluateCFragFor(evidence, beneficiary)`.
    function _commitment(Case storage c, address investigator, address beneficiary)
        internal
        view
        returns (bytes32)
    {
        return beneficiary == address(0)
            ? adjudicator.evidenceCommitment(c.evidenceHash, investigator)
            : adjudicator.evidenceCommitmentFor(c.evidenceHash, investigator, beneficiary);
    }

    /// @dev The staker, the worker that signed, or the staker's current worker (the staker when it
    /// has none).
    function _culprit(Case storage c, uint256 seed) internal view returns (address culprit) {
        uint256 which = seed % 3;
        culprit = which == 0 ? c.staker : which == 1 ? c.signer : escrow.workerOf(c.staker);
        if (culprit == address(0)) culprit = c.staker; // unbonded: no current worker
    }

    /// @dev Whether `account` is the culprit as the Adjudicator defines it now.
    function _isCulprit(Case storage c, address account) internal view returns (bool) {
        return account == c.staker || account == c.signer || account == escrow.workerOf(c.staker);
    }

    /*//////////////////////////////////////////////////////////////
                             TIME AND KEYS
    //////////////////////////////////////////////////////////////*/

    /// @notice Time passes (0 to 2 periods) and blocks are mined (0 to 2), so reveals meet
    /// commitments of the same block, stakes that changed, and answers past the evidence window.
    function advance(uint256 periods, uint256 blocks) external {
        vm.warp(vm.getBlockTimestamp() + (periods % 3) * escrow.secondsPerPeriod());
        vm.roll(vm.getBlockNumber() + blocks % 3);
    }

    /// @notice A staker replaces its worker by a fresh key (propose, then accept), or drops it, when
    /// its current bond is old enough: the answers its earlier key signed still count against it.
    function rotateWorker(uint256 caseSeed, bool drop) external {
        address staker = cases[caseSeed % cases.length].staker;
        StakingEscrow.StakerView memory info = escrow.getStakerInfo(staker);
        if (
            info.worker != address(0)
                && escrow.currentPeriod() < info.workerBondedPeriod + escrow.minWorkerPeriods()
        ) {
            return;
        }
        address fresh = drop && info.worker != address(0)
            ? address(0)
            : address(uint160(0xE0000 + calls["rotateWorker"]));
        vm.prank(staker);
        escrow.bondWorker(fresh);
        if (fresh != address(0)) {
            vm.prank(fresh);
            escrow.acceptWorker(staker);
        }
        require(escrow.workerOf(staker) == fresh, "the rotation did not take");
        calls["rotateWorker"]++;
    }
}
