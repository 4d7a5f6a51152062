// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {AdjudicatorFixtures} from "../utils/AdjudicatorFixtures.sol";
import {EvaluationHandler} from "./handlers/EvaluationHandler.sol";

/// @notice Slashing through the real Adjudicator conserves tokens and never touches an honest node.
contract AdjudicatorInvariantsTest is AdjudicatorFixtures {
    EvaluationHandler internal handler;
    address[] internal stakers;
    uint256 internal depositedTotal;

    function setUp() public override {
        super.setUp();
        handler = new EvaluationHandler(adjudicatorContract, escrow, token);
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
                handler.addCase(c.evidence, equal(c.expect, "correct"), staker);
            }
        }
        targetContract(address(handler));
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
}
