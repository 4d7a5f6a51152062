// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Burnable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Burnable.sol";
import {ERC20Capped} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Capped.sol";

import {Errors} from "./libraries/Errors.sol";

/// @title KMSToken
/// @notice The KMS staking token: an ERC-20 with a hard cap. What is not minted at deployment is the
/// mining reserve, which only the staking escrow (the minter) can mint, as rewards. Tokens burnt
/// (slashing burns the part of a penalty not paid to the investigator) return to the reserve,
/// because the reserve is `cap() - totalSupply()`.
contract KMSToken is ERC20Capped, ERC20Burnable {
    /// @notice The only account allowed to mint: the staking escrow.
    /// @dev Immutable, so a mint costs no storage read. The escrow is deployed right after the token
    /// at an address computed in advance, and checks at construction that it is this minter.
    address public immutable minter;

    /// @param cap_ The hard cap, in token units (18 decimals). At most `type(uint96).max`.
    /// @param initialSupply Minted to `initialHolder` at deployment; the rest of the cap is the reserve.
    /// @param initialHolder The receiver of the initial supply.
    /// @param minter_ The staking escrow's (future) address.
    constructor(uint256 cap_, uint256 initialSupply, address initialHolder, address minter_)
        ERC20("KMS Token", "KMS")
        ERC20Capped(cap_)
    {
        // The escrow packs amounts into 96 bits; a cap that fits makes every amount fit.
        if (cap_ > type(uint96).max) revert Errors.KMSToken_CapTooLarge(cap_);
        if (minter_ == address(0)) revert Errors.KMSToken_ZeroMinter();
        minter = minter_;
        _mint(initialHolder, initialSupply);
    }

    /// @notice Mints `amount` of the reserve to `to`.
    /// Requirements: the caller is the minter; the total supply stays within the cap.
    /// @param to The receiver.
    /// @param amount The amount, in token units.
    function mint(address to, uint256 amount) external {
        if (msg.sender != minter) revert Errors.KMSToken_CallerNotMinter(msg.sender, minter);
        _mint(to, amount);
    }

    /// @notice The mining reserve: what may still be minted.
    function reserve() external view returns (uint256) {
        return cap() - totalSupply();
    }

    function _update(address from, address to, uint256 value) internal override(ERC20, ERC20Capped) {
        ERC20Capped._update(from, to, value);
    }
}
