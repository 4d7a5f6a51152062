// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {IAdjudicator} from "../../contracts/interfaces/IAdjudicator.sol";
import {Base} from "./Base.sol";

/// @notice Test vectors made by the real umbral-pre library (`test/fixtures/adjudicator/cases.json`,
/// written by `cargo run -p kms-crypto --bin gen-adjudicator-fixtures`): valid cfrags, cfrags with
/// each proof field tampered, and evidence whose signatures do not hold, with the real Adjudicator
/// linked to the escrow. The Solidity verifier is checked against the library, not against itself.
abstract contract AdjudicatorFixtures is Base {
    uint256 internal constant STAKE = 1_000_000e18;
    string internal constant FIXTURES = "test/fixtures/adjudicator/cases.json";

    struct Case {
        string name;
        string expect;
        bytes16 policyId;
        address creator; // creates the policy with `salt`: its id is `policyId`
        bytes16 salt;
        address staker; // the stake the answer names
        address kfragSigner;
        address worker;
        IAdjudicator.Evidence evidence;
    }

    /// @dev One case as `vm.parseJson` decodes it: the JSON keys in alphabetical order.
    struct JsonCase {
        address creator;
        bytes evidence;
        string expect;
        string field;
        address kfragSigner;
        string name;
        bytes policyId;
        bytes salt;
        uint256 scenario;
        address signer;
        address staker;
        address worker;
    }

    JsonCase[] internal cases;
    uint256 internal count;
    address internal investigator = makeAddr("investigator");
    address internal alice = makeAddr("alice");

    function realAdjudicator() internal pure override returns (bool) {
        return true;
    }

    /// @dev Parses the file once: it is large, and every `vm.parseJson*` call parses all of it.
    function setUp() public virtual override {
        super.setUp();
        // Reads kms-crypto's generated fixtures, the only file access (read-only in foundry.toml).
        // forge-lint: disable-next-line(unsafe-cheatcode)
        string memory json = vm.readFile(FIXTURES);
        assertEq(vm.parseJsonUint(json, ".chainId"), block.chainid, "fixtures signed for another chain");
        assertEq(
            vm.parseJsonAddress(json, ".adjudicator"),
            address(adjudicatorContract),
            "fixtures signed for another adjudicator: see FORGE_TEST_CONTRACT in kms-crypto's fixtures.rs"
        );
        assertEq(vm.parseJsonUint(json, ".period"), currentPeriod(), "fixtures answer in another period");
        count = vm.parseJsonUint(json, ".count");
        JsonCase[] memory parsed = abi.decode(vm.parseJson(json, ".cases"), (JsonCase[]));
        assertEq(parsed.length, count, "fixture count");
        for (uint256 i; i < parsed.length; ++i) {
            cases.push(parsed[i]);
        }
    }

    /*//////////////////////////////////////////////////////////////
                                FIXTURES
    //////////////////////////////////////////////////////////////*/

    function load(uint256 index) internal view returns (Case memory c) {
        JsonCase storage json = cases[index];
        c.name = json.name;
        c.expect = json.expect;
        c.policyId = bytes16(json.policyId);
        c.creator = json.creator;
        c.salt = bytes16(json.salt);
        c.staker = json.staker;
        c.kfragSigner = json.kfragSigner;
        c.worker = json.worker;
        c.evidence = abi.decode(json.evidence, (IAdjudicator.Evidence));
    }

    /// @dev The case's node: the fixture's staker bonded to the fixture's worker, in a policy the
    /// fixture's creator makes with its salt (so with the fixture's id) and kfrag signer.
    /// Idempotent, so cases of one scenario share their node and policy.
    function prepare(Case memory c) internal returns (address staker) {
        staker = c.staker;
        if (escrow.stakerOf(c.worker) == address(0)) {
            deposit(staker, STAKE, 60);
            bond(staker, c.worker);
        }
        if (policyManager.kfragSignerOf(c.policyId) == address(0)) {
            uint256 value = 1 gwei * 10;
            vm.deal(c.creator, value);
            uint256 end = endAfter(10);
            vm.prank(c.creator);
            bytes16 id =
                policyManager.createPolicy{value: value}(c.salt, alice, c.kfragSigner, end, list(staker));
            assertEq(
                bytes32(id), bytes32(c.policyId), "the fixture's policy id is not the creator's and salt's"
            );
        }
    }

    /// @dev Both steps of a report: commit, then reveal in the next block.
    function report(address reporter, IAdjudicator.Evidence memory evidence) internal {
        commitTo(reporter, evidence);
        vm.roll(vm.getBlockNumber() + 1);
        vm.prank(reporter);
        adjudicatorContract.evaluateCFrag(evidence);
    }

    function commitTo(address reporter, IAdjudicator.Evidence memory evidence) internal {
        // Computed before the prank, which the call computing it would otherwise take.
        bytes32 commitment = adjudicatorContract.evidenceCommitment(hashOf(evidence), reporter);
        vm.prank(reporter);
        adjudicatorContract.commitEvidence(commitment);
    }

    /// @dev Both steps of a report that names who is paid: `submitter` commits to the evidence for
    /// `beneficiary`, then reveals it with `evaluateCFragFor` in the next block.
    function reportFor(address submitter, address beneficiary, IAdjudicator.Evidence memory evidence)
        internal
    {
        commitFor(submitter, beneficiary, evidence);
        vm.roll(vm.getBlockNumber() + 1);
        vm.prank(submitter);
        adjudicatorContract.evaluateCFragFor(evidence, beneficiary);
    }

    /// @dev `submitter` commits to revealing `evidence` with `evaluateCFragFor`, paying `beneficiary`.
    function commitFor(address submitter, address beneficiary, IAdjudicator.Evidence memory evidence)
        internal
    {
        bytes32 commitment = commitmentFor(submitter, beneficiary, evidence);
        vm.prank(submitter);
        adjudicatorContract.commitEvidence(commitment);
    }

    function commitmentFor(address submitter, address beneficiary, IAdjudicator.Evidence memory evidence)
        internal
        view
        returns (bytes32)
    {
        return adjudicatorContract.evidenceCommitmentFor(hashOf(evidence), submitter, beneficiary);
    }

    /// @dev The evidence hash the Adjudicator records: `keccak256(capsule || cfrag)`.
    function hashOf(IAdjudicator.Evidence memory evidence) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(evidence.capsule, evidence.cfrag));
    }

    /// @dev The first case of the kind at or after a random start (cases are ordered by scenario).
    function indexOf(string memory expect, uint256 seed) internal view returns (uint256) {
        uint256 start = seed % count;
        for (uint256 step; step < count; ++step) {
            uint256 i = (start + step) % count;
            if (equal(cases[i].expect, expect)) return i;
        }
        revert("no fixture of that kind");
    }

    function equal(string memory a, string memory b) internal pure returns (bool) {
        return keccak256(bytes(a)) == keccak256(bytes(b));
    }
}
