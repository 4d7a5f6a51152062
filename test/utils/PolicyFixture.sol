// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Base} from "./Base.sol";

/// @notice Alice's policy over three staked nodes, as the policy manager's unit tests use it: Alice
/// creates the policy `ID` (salt `SALT`) paying `RATE` per node and period, and signs with `ALICE_KEY`.
abstract contract PolicyFixture is Base {
    uint256 internal constant STAKE = 100_000e18;
    uint256 internal constant RATE = 1 gwei;
    bytes16 internal constant SALT = bytes16("policy-1");
    /// @dev `makeAddr` derives an account from the hash of its name: this is Alice's key.
    uint256 internal constant ALICE_KEY = uint256(keccak256("alice"));
    /// @dev The id of alice's policy made with `SALT`.
    bytes16 internal ID;

    address internal alice = makeAddr("alice");
    address internal signer = makeAddr("signer");
    address internal nodeA;
    address internal nodeB;
    address internal nodeC;
    address[] internal nodes;

    function setUp() public virtual override {
        super.setUp();
        ID = policyManager.policyIdOf(alice, SALT);
        nodeA = newNode("node-a", STAKE, 365);
        nodeB = newNode("node-b", STAKE, 365);
        nodeC = newNode("node-c", STAKE, 365);
        nodes = list(nodeA, nodeB, nodeC);
    }

    function pay(uint256 periods) internal pure returns (uint256) {
        return RATE * 3 * periods;
    }

    /// @dev Alice creates `ID` for the current period and `periods - 1` more.
    function create(uint256 periods) internal {
        vm.deal(alice, pay(periods));
        vm.prank(alice);
        policyManager.createPolicy{value: pay(periods)}(SALT, alice, signer, endAfter(periods), nodes);
    }

    function commitAll() internal {
        commit(nodeA);
        commit(nodeB);
        commit(nodeC);
    }

    /// @dev ETH in = ETH out + ETH held, and what is held covers the accrued fees.
    function _assertConserved(uint256 paid) internal view {
        uint256 accrued = policyManager.fees(nodeA) + policyManager.fees(nodeB) + policyManager.fees(nodeC);
        assertEq(address(policyManager).balance + alice.balance, paid);
        assertGe(address(policyManager).balance, accrued);
    }
}
