// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Adjudicator} from "../../../contracts/Adjudicator.sol";
import {KMSToken} from "../../../contracts/KMSToken.sol";
import {StakingEscrow} from "../../../contracts/StakingEscrow.sol";
import {IAdjudicator} from "../../../contracts/interfaces/IAdjudicator.sol";
import {Vm} from "../../utils/Vm.sol";

/// @notice Submits the umbral-pre test vectors to the real Adjudicator in random order, by random
/// investigators, some twice, and keeps ghost totals of what every slash moved.
contract EvaluationHandler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    Adjudicator public immutable adjudicator;
    StakingEscrow public immutable escrow;
    KMSToken public immutable token;

    IAdjudicator.Evidence[] internal evidences;
    bool[] public isCorrect;
    address[] public stakersOfCases;
    address[3] public investigators = [address(0x1001), address(0x1002), address(0x1003)];

    uint256 public ghostPenalties;
    uint256 public ghostRewards;
    uint256 public ghostHonestLoss; // stake lost by the node of a correct cfrag: must stay zero
    uint256 public evaluations;
    uint256 public wrongEvaluations;

    constructor(Adjudicator adjudicator_, StakingEscrow escrow_, KMSToken token_) {
        adjudicator = adjudicator_;
        escrow = escrow_;
        token = token_;
    }

    function addCase(IAdjudicator.Evidence memory evidence, bool correct, address staker) external {
        evidences.push(evidence);
        isCorrect.push(correct);
        stakersOfCases.push(staker);
    }

    function caseCount() external view returns (uint256) {
        return evidences.length;
    }

    function evaluate(uint256 caseSeed, uint256 investigatorSeed) external {
        uint256 i = caseSeed % evidences.length;
        address staker = stakersOfCases[i];
        address investigator = investigators[investigatorSeed % investigators.length];
        uint256 stakeBefore = escrow.stakeOf(staker);
        uint256 investigatorBefore = token.balanceOf(investigator);
        vm.prank(investigator);
        try adjudicator.evaluateCFrag(evidences[i]) {
            uint256 lost = stakeBefore - escrow.stakeOf(staker);
            if (isCorrect[i]) ghostHonestLoss += lost;
            ghostPenalties += lost;
            ghostRewards += token.balanceOf(investigator) - investigatorBefore;
            evaluations++;
            if (!isCorrect[i]) wrongEvaluations++;
        } catch {}
    }

    /// Time passes, so penalties meet stakes that have changed.
    function advance(uint256 periods) external {
        vm.warp(vm.getBlockTimestamp() + (periods % 3) * escrow.secondsPerPeriod());
    }
}
