// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {ERC20Capped} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Capped.sol";

import {KMSToken} from "../../contracts/KMSToken.sol";
import {Errors} from "../../contracts/libraries/Errors.sol";
import {Test} from "../utils/Test.sol";

contract KMSTokenTest is Test {
    address internal holder = makeAddr("holder");
    address internal minter = makeAddr("minter");
    KMSToken internal token;

    function setUp() public {
        token = new KMSToken(1_000e18, 400e18, holder, minter);
    }

    function test_Constructor_MintsInitialSupplyAndLeavesTheReserve() public view {
        assertEq(token.totalSupply(), 400e18);
        assertEq(token.balanceOf(holder), 400e18);
        assertEq(token.cap(), 1_000e18);
        assertEq(token.reserve(), 600e18);
        assertEq(token.minter(), minter);
    }

    function test_RevertWhen_CapAbove96Bits() public {
        uint256 cap = uint256(type(uint96).max) + 1;
        vm.expectRevert(abi.encodeWithSelector(Errors.KMSToken_CapTooLarge.selector, cap));
        new KMSToken(cap, 0, holder, minter);
    }

    function test_RevertWhen_MinterIsZero() public {
        vm.expectRevert(Errors.KMSToken_ZeroMinter.selector);
        new KMSToken(1_000e18, 0, holder, address(0));
    }

    function test_RevertWhen_InitialSupplyAboveCap() public {
        vm.expectRevert(abi.encodeWithSelector(ERC20Capped.ERC20ExceededCap.selector, 1_001e18, 1_000e18));
        new KMSToken(1_000e18, 1_001e18, holder, minter);
    }

    function test_Mint_ByMinter() public {
        vm.prank(minter);
        token.mint(holder, 100e18);
        assertEq(token.balanceOf(holder), 500e18);
        assertEq(token.reserve(), 500e18);
    }

    function test_RevertWhen_MintByOther() public {
        vm.expectRevert(abi.encodeWithSelector(Errors.KMSToken_CallerNotMinter.selector, holder, minter));
        vm.prank(holder);
        token.mint(holder, 1);
    }

    function test_RevertWhen_MintAboveCap() public {
        vm.expectRevert(abi.encodeWithSelector(ERC20Capped.ERC20ExceededCap.selector, 1_000e18 + 1, 1_000e18));
        vm.prank(minter);
        token.mint(holder, 600e18 + 1);
    }

    function test_Burn_ReturnsToReserve() public {
        vm.prank(holder);
        token.burn(100e18);
        assertEq(token.reserve(), 700e18);
    }

    function testFuzz_MintNeverExceedsCap(uint256 amount) public {
        amount = bound(amount, 0, 2_000e18);
        vm.prank(minter);
        if (amount > 600e18) {
            vm.expectRevert(
                abi.encodeWithSelector(ERC20Capped.ERC20ExceededCap.selector, 400e18 + amount, 1_000e18)
            );
        }
        token.mint(holder, amount);
        assertLe(token.totalSupply(), token.cap());
    }
}
