// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {AdjudicatorFixtures} from "../utils/AdjudicatorFixtures.sol";

/// @notice Gas of a full evaluation, as a whole transaction (calldata included) under `--isolate`:
/// the commitment, then the reveal that evaluates.
contract AdjudicatorGasTest is AdjudicatorFixtures {
    function test_Gas_CommitEvidence() public {
        Case memory c = load(indexOf("slash", 0));
        commitTo(investigator, c.evidence);
        vm.snapshotGasLastCall("commitEvidence");
    }

    function test_Gas_EvaluateCorrectCFrag() public {
        Case memory c = load(indexOf("correct", 0));
        prepare(c);
        commitTo(investigator, c.evidence);
        vm.roll(vm.getBlockNumber() + 1);
        vm.prank(investigator);
        adjudicatorContract.evaluateCFrag(c.evidence);
        uint256 gasUsed = vm.snapshotGasLastCall("evaluateCFrag (correct cfrag)");
        assertLe(gasUsed, 150_000, "evaluation over its bar");
    }

    function test_Gas_EvaluateWrongCFragAndSlash() public {
        Case memory c = load(indexOf("slash", 0));
        prepare(c);
        commitTo(investigator, c.evidence);
        vm.roll(vm.getBlockNumber() + 1);
        vm.prank(investigator);
        adjudicatorContract.evaluateCFrag(c.evidence);
        vm.snapshotGasLastCall("evaluateCFrag (wrong cfrag, with the slash)");
    }

    /// @dev The same evaluation, revealed by one account and paying another (both fresh, as the
    /// investigator above): the price of naming the beneficiary.
    function test_Gas_EvaluateCFragForWrongCFragAndSlash() public {
        Case memory c = load(indexOf("slash", 0));
        prepare(c);
        address beneficiary = makeAddr("beneficiary");
        commitFor(investigator, beneficiary, c.evidence);
        vm.roll(vm.getBlockNumber() + 1);
        vm.prank(investigator);
        adjudicatorContract.evaluateCFragFor(c.evidence, beneficiary);
        vm.snapshotGasLastCall("evaluateCFragFor (wrong cfrag, with the slash)");
    }
}
