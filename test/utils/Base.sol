// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Adjudicator} from "../../contracts/Adjudicator.sol";
import {KMSToken} from "../../contracts/KMSToken.sol";
import {PolicyManager} from "../../contracts/PolicyManager.sol";
import {StakingEscrow} from "../../contracts/StakingEscrow.sol";
import {Test} from "./Test.sol";

/// @notice Deploys and links the contracts with production-like parameters (a day per period) and
/// offers the steps every test needs: fund, stake, bond, commit, advance periods, create policies.
abstract contract Base is Test {
    uint256 internal constant PERIOD = 1 days;
    uint256 internal constant CAP = 3_800_000_000e18;
    uint256 internal constant INITIAL_SUPPLY = 1_000_000_000e18;
    uint256 internal constant RESERVE = CAP - INITIAL_SUPPLY;
    uint256 internal constant MIN_STAKE = 15_000e18;
    uint256 internal constant MAX_STAKE = 4_000_000e18;
    uint256 internal constant MIN_LOCK = 30;
    uint256 internal constant MAX_LOCK = 1825;
    uint256 internal constant MIN_WORKER_PERIODS = 2;
    /// @dev 1 - 2^(-1/1461): the reserve halves every four years of daily periods.
    uint256 internal constant ISSUANCE_RATE = 474_320_862_749_566;
    uint256 internal constant EVIDENCE_WINDOW = 14;
    uint256 internal constant MIN_FEE_RATE = 0;
    uint256 internal constant DEFAULT_FEE_RATE = 1 gwei;
    uint256 internal constant MAX_FEE_RATE = 1 ether;
    uint256 internal constant START_TIME = 1_700_000_000;
    uint256 internal constant BASE_PENALTY = 1_000e18;
    uint256 internal constant PENALTY_HISTORY_COEFFICIENT = 1_000e18;
    uint256 internal constant PERCENTAGE_PENALTY_COEFFICIENT = 10; // at most 10% of the stake
    uint256 internal constant REWARD_COEFFICIENT = 2; // half to the investigator

    KMSToken internal token;
    StakingEscrow internal escrow;
    PolicyManager internal policyManager;
    address internal governor;
    /// @dev The escrow's adjudicator: an address the tests prank as, or the real contract when
    /// `realAdjudicator()` says so.
    address internal adjudicator;
    Adjudicator internal adjudicatorContract;

    function setUp() public virtual {
        deployUnlinked();
        // Deployed before any call: under `--isolate` each call from this contract is a transaction
        // that bumps its nonce, and the fixtures' answers name the Adjudicator at its fourth creation.
        if (realAdjudicator()) {
            adjudicatorContract = new Adjudicator(
                escrow,
                policyManager,
                BASE_PENALTY,
                PENALTY_HISTORY_COEFFICIENT,
                PERCENTAGE_PENALTY_COEFFICIENT,
                REWARD_COEFFICIENT
            );
            adjudicator = address(adjudicatorContract);
        }
        escrow.setPolicyManager(policyManager);
        escrow.setAdjudicator(adjudicator);
    }

    /// @dev The token, the escrow and the policy manager at `START_TIME`, not yet linked.
    function deployUnlinked() internal {
        vm.warp(START_TIME);
        governor = makeAddr("governor");
        adjudicator = makeAddr("adjudicator");
        // The escrow is the token's immutable minter: deploy the token for the escrow's next address.
        address escrowAddress = vm.computeCreateAddress(address(this), vm.getNonce(address(this)) + 1);
        token = new KMSToken(CAP, INITIAL_SUPPLY, address(this), escrowAddress);
        escrow = new StakingEscrow(token, escrowParameters());
        policyManager = new PolicyManager(escrow, governor, MIN_FEE_RATE, DEFAULT_FEE_RATE, MAX_FEE_RATE);
    }

    /// @dev Override to link the real Adjudicator contract instead of a pranked address.
    function realAdjudicator() internal pure virtual returns (bool) {
        return false;
    }

    function escrowParameters() internal pure returns (StakingEscrow.Parameters memory) {
        return StakingEscrow.Parameters({
            secondsPerPeriod: PERIOD,
            minStake: MIN_STAKE,
            maxStake: MAX_STAKE,
            minLockPeriods: MIN_LOCK,
            maxLockPeriods: MAX_LOCK,
            minWorkerPeriods: MIN_WORKER_PERIODS,
            issuanceRate: ISSUANCE_RATE,
            evidenceWindow: EVIDENCE_WINDOW
        });
    }

    /*//////////////////////////////////////////////////////////////
                                 STEPS
    //////////////////////////////////////////////////////////////*/

    function currentPeriod() internal view returns (uint256) {
        return vm.getBlockTimestamp() / PERIOD;
    }

    function advancePeriods(uint256 periods) internal {
        vm.warp(vm.getBlockTimestamp() + periods * PERIOD);
    }

    function fund(address account, uint256 amount) internal {
        // KMSToken (OpenZeppelin's ERC20) reverts rather than return false, and the gas tests call
        // this: checking the result would only add gas to their snapshots.
        // forge-lint: disable-next-line(erc20-unchecked-transfer)
        token.transfer(account, amount);
    }

    function deposit(address staker, uint256 amount, uint256 periods) internal returns (uint256 index) {
        fund(staker, amount);
        vm.startPrank(staker);
        token.approve(address(escrow), amount);
        index = escrow.deposit(amount, periods);
        vm.stopPrank();
    }

    /// @dev The first step of bonding alone: the staker proposes `worker`.
    function propose(address staker, address worker) internal {
        vm.prank(staker);
        escrow.bondWorker(worker);
    }

    /// @dev Both steps of bonding: the staker proposes, the worker accepts (one step for self or zero).
    function bond(address staker, address worker) internal {
        vm.prank(staker);
        escrow.bondWorker(worker);
        if (worker == address(0) || worker == staker) return;
        vm.prank(worker);
        escrow.acceptWorker(staker);
    }

    /// @dev A staker with one sub-stake and a bonded worker; returns the worker.
    function newNode(string memory name, uint256 amount, uint256 periods) internal returns (address staker) {
        staker = makeAddr(name);
        deposit(staker, amount, periods);
        bond(staker, makeAddr(string.concat(name, "-worker")));
    }

    function workerOf(address staker) internal view returns (address) {
        return escrow.workerOf(staker);
    }

    function commit(address staker) internal {
        vm.prank(escrow.workerOf(staker));
        escrow.commitToNextPeriod();
    }

    /// @dev The end timestamp of a policy paying for the current period and `periods - 1` more.
    function endAfter(uint256 periods) internal view returns (uint256) {
        return (currentPeriod() + periods) * PERIOD;
    }

    /// @dev Creates the owner's policy with `salt`; returns its id.
    function createPolicy(
        bytes16 salt,
        address owner,
        address[] memory nodes,
        uint256 periods,
        uint256 feeRate
    ) internal returns (bytes16 id) {
        uint256 value = feeRate * nodes.length * periods;
        vm.deal(owner, owner.balance + value);
        vm.prank(owner);
        id = policyManager.createPolicy{value: value}(
            salt, owner, makeAddr("kfrag-signer"), endAfter(periods), nodes
        );
    }

    /// @dev Sorts in place (insertion sort: test-sized arrays).
    function sorted(address[] memory nodes) internal pure returns (address[] memory) {
        for (uint256 i = 1; i < nodes.length; ++i) {
            address key = nodes[i];
            uint256 j = i;
            while (j > 0 && nodes[j - 1] > key) {
                nodes[j] = nodes[j - 1];
                --j;
            }
            nodes[j] = key;
        }
        return nodes;
    }

    function list(address a) internal pure returns (address[] memory nodes) {
        nodes = new address[](1);
        nodes[0] = a;
    }

    function list(address a, address b) internal pure returns (address[] memory nodes) {
        nodes = new address[](2);
        nodes[0] = a;
        nodes[1] = b;
        sorted(nodes);
    }

    function list(address a, address b, address c) internal pure returns (address[] memory nodes) {
        nodes = new address[](3);
        nodes[0] = a;
        nodes[1] = b;
        nodes[2] = c;
        sorted(nodes);
    }
}
