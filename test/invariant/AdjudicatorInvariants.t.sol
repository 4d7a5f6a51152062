// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {AdjudicatorFixtures} from "../utils/AdjudicatorFixtures.sol";
import {EvaluationHandler} from "./handlers/EvaluationHandler.sol";

/// @notice Slashing through the real Adjudicator, reported in two steps, conserves tokens, never
/// touches an honest node and pays only the investigator that committed first (or the beneficiary
/// its commitment named). The handler checks
/// every reveal's outcome against the rules and reverts when they disagree, which fails the run.
/// forge-config: default.invariant.fail-on-revert = true
contract AdjudicatorInvariantsTest is AdjudicatorFixtures {
    EvaluationHandler internal handler;
    address[] internal stakers;
    uint256 internal depositedTotal;

    function setUp() public override {
        super.setUp();
        handler = new EvaluationHandler(adjudicatorContract, escrow, token, currentPeriod());
        for (uint256 i; i < count; ++i) {
            Case memory c = load(i);
            bool known = escrow.stakerOf(c.worker) != address(0);
            address staker = prepare(c);
            if (!known) {
                stakers.push(staker);
                depositedTotal += STAKE;
            }
            // Only evaluable evidence; the rejected kinds are covered by the unit tests.
            if (equal(c.expect, "correct") || equal(c.expect, "slash")) {
                handler.addCase(c.evidence, equal(c.expect, "correct"), staker, c.worker);
            }
        }
        targetContract(address(handler));
        bytes4[] memory selectors = new bytes4[](5);
        selectors[0] = EvaluationHandler.commit.selector;
        selectors[1] = EvaluationHandler.reveal.selector;
        selectors[2] = EvaluationHandler.reveal.selector; // a commitment waits for one reveal or more
        selectors[3] = EvaluationHandler.advance.selector;
        selectors[4] = EvaluationHandler.rotateWorker.selector;
        targetSelector(FuzzSelector(address(handler), selectors));
    }

    /// Every token a slash takes is either the investigator's or burnt back into the reserve.
    function invariant_SlashingConservesTokens() public view {
        uint256 stakes;
        for (uint256 i; i < stakers.length; ++i) {
            stakes += escrow.stakeOf(stakers[i]);
        }
        assertEq(stakes, depositedTotal - handler.ghostPenalties(), "stakes != deposits - penalties");
        assertEq(token.balanceOf(address(escrow)), stakes, "escrow balance != stakes");
        uint256 burnt = handler.ghostPenalties() - handler.ghostRewards();
        assertEq(token.totalSupply(), INITIAL_SUPPLY - burnt, "supply != initial - burnt");
        assertEq(token.reserve(), RESERVE + burnt, "burnt tokens are not back in the reserve");
    }

    /// A node whose cfrag was correct never loses stake, whatever is evaluated around it.
    function invariant_HonestNodesAreNeverSlashed() public view {
        assertEq(handler.ghostHonestLoss(), 0);
    }

    /// Each wrong cfrag counts one violation, once: evidence is never evaluated twice.
    function invariant_ViolationsMatchWrongEvaluations() public view {
        uint256 violations;
        for (uint256 i; i < stakers.length; ++i) {
            violations += adjudicatorContract.violations(stakers[i]);
        }
        assertEq(violations, handler.wrongEvaluations());
        assertLe(handler.evaluations(), handler.caseCount(), "some evidence was evaluated twice");
    }

    /// Rewards are the only tokens a slash pays out, and each went to the investigator whose reveal
    /// earned it, or to the beneficiary that reveal named: every payee holds exactly what the
    /// handler saw it paid, and no token is anywhere but in the treasury, the escrow and the payees'
    /// hands. (Who may be paid, and that a culprit, a thief or a sender naming someone else never
    /// is, the handler checks on every reveal.)
    function invariant_OnlyRevealingInvestigatorsArePaid() public view {
        uint256 paid;
        for (uint256 i; i < handler.payeeCount(); ++i) {
            address payee = handler.payees(i);
            assertEq(token.balanceOf(payee), handler.ghostPaidTo(payee), "a payee's balance != its rewards");
            paid += token.balanceOf(payee);
        }
        assertEq(paid, handler.ghostRewards(), "rewards paid != rewards the handler saw");
        assertEq(
            token.totalSupply(),
            token.balanceOf(address(this)) + token.balanceOf(address(escrow)) + paid,
            "tokens went to someone who did not reveal"
        );
    }
}
