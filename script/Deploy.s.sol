// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Adjudicator} from "../contracts/Adjudicator.sol";
import {KMSToken} from "../contracts/KMSToken.sol";
import {PolicyManager} from "../contracts/PolicyManager.sol";
import {StakingEscrow} from "../contracts/StakingEscrow.sol";
import {Vm} from "../test/utils/Vm.sol";

/// @notice Deploys and links KMSToken, StakingEscrow, PolicyManager and Adjudicator, then writes their addresses
/// and parameters to a deployments JSON for the Rust side and the CLI.
///
///     forge script script/Deploy.s.sol --rpc-url $ETH_RPC_URL --broadcast
///
/// Environment (all optional; defaults are production-like, a day per period):
///   PRIVATE_KEY (anvil's first key), DEPLOYMENTS_PATH (deployments/<chainid>.json),
///   SECONDS_PER_PERIOD, TOKEN_CAP, INITIAL_SUPPLY, MIN_STAKE, MAX_STAKE, MIN_LOCK_PERIODS,
///   MAX_LOCK_PERIODS, MIN_WORKER_PERIODS, ISSUANCE_RATE (WAD per period), EVIDENCE_WINDOW
///   (periods an answer stays slashable and unlocked tokens stay held), MIN_FEE_RATE,
///   DEFAULT_FEE_RATE, MAX_FEE_RATE (wei per node per period), FEE_GOVERNOR (the deployer),
///   BASE_PENALTY, PENALTY_HISTORY_COEFFICIENT (token units), PERCENTAGE_PENALTY_COEFFICIENT
///   (the penalty is at most stake / this), REWARD_COEFFICIENT (the investigator gets penalty / this).
contract Deploy {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @dev anvil's first development key: only a default for local chains.
    uint256 internal constant ANVIL_KEY_0 =
        0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80;

    struct Deployment {
        KMSToken token;
        StakingEscrow escrow;
        PolicyManager policyManager;
        Adjudicator adjudicator;
    }

    function run() external returns (Deployment memory deployment) {
        uint256 key = vm.envOr("PRIVATE_KEY", ANVIL_KEY_0);
        address deployer = vm.addr(key);
        StakingEscrow.Parameters memory params = StakingEscrow.Parameters({
            secondsPerPeriod: vm.envOr("SECONDS_PER_PERIOD", uint256(1 days)),
            minStake: vm.envOr("MIN_STAKE", uint256(15_000e18)),
            maxStake: vm.envOr("MAX_STAKE", uint256(4_000_000e18)),
            minLockPeriods: vm.envOr("MIN_LOCK_PERIODS", uint256(30)),
            maxLockPeriods: vm.envOr("MAX_LOCK_PERIODS", uint256(1825)),
            minWorkerPeriods: vm.envOr("MIN_WORKER_PERIODS", uint256(2)),
            // 1 - 2^(-1/1461): with daily periods the reserve halves every four years.
            issuanceRate: vm.envOr("ISSUANCE_RATE", uint256(474_320_862_749_566)),
            // Two weeks of daily periods: see docs/adjudicator.md, "The evidence window".
            evidenceWindow: vm.envOr("EVIDENCE_WINDOW", uint256(14))
        });
        uint256 cap = vm.envOr("TOKEN_CAP", uint256(3_800_000_000e18));
        uint256 initialSupply = vm.envOr("INITIAL_SUPPLY", uint256(1_000_000_000e18));
        address governor = vm.envOr("FEE_GOVERNOR", deployer);

        vm.startBroadcast(key);
        // The escrow is the token's immutable minter: it is created right after the token.
        address escrowAddress = vm.computeCreateAddress(deployer, vm.getNonce(deployer) + 1);
        deployment.token = new KMSToken(cap, initialSupply, deployer, escrowAddress);
        deployment.escrow = new StakingEscrow(deployment.token, params);
        deployment.policyManager = new PolicyManager(
            deployment.escrow,
            governor,
            vm.envOr("MIN_FEE_RATE", uint256(0)),
            vm.envOr("DEFAULT_FEE_RATE", uint256(1 gwei)),
            vm.envOr("MAX_FEE_RATE", uint256(1 ether))
        );
        deployment.escrow.setPolicyManager(deployment.policyManager);
        deployment.adjudicator = deployAdjudicator(deployment);
        deployment.escrow.setAdjudicator(address(deployment.adjudicator));
        vm.stopBroadcast();

        writeDeployment(deployment, deployer, params);
    }

    function deployAdjudicator(Deployment memory deployment) internal returns (Adjudicator) {
        return new Adjudicator(
            deployment.escrow,
            deployment.policyManager,
            vm.envOr("BASE_PENALTY", uint256(1_000e18)),
            vm.envOr("PENALTY_HISTORY_COEFFICIENT", uint256(1_000e18)),
            vm.envOr("PERCENTAGE_PENALTY_COEFFICIENT", uint256(10)),
            vm.envOr("REWARD_COEFFICIENT", uint256(2))
        );
    }

    function writeDeployment(
        Deployment memory deployment,
        address deployer,
        StakingEscrow.Parameters memory params
    ) internal {
        string memory defaultPath = string.concat("deployments/", vm.toString(block.chainid), ".json");
        string memory path = vm.envOr("DEPLOYMENTS_PATH", defaultPath);
        string memory key = "deployment";
        vm.serializeUint(key, "chainId", block.chainid);
        vm.serializeUint(key, "startBlock", block.number);
        vm.serializeAddress(key, "deployer", deployer);
        vm.serializeAddress(key, "token", address(deployment.token));
        vm.serializeAddress(key, "stakingEscrow", address(deployment.escrow));
        vm.serializeAddress(key, "policyManager", address(deployment.policyManager));
        vm.serializeAddress(key, "adjudicator", address(deployment.adjudicator));
        vm.serializeUint(key, "secondsPerPeriod", params.secondsPerPeriod);
        vm.serializeUint(key, "minStake", params.minStake);
        vm.serializeUint(key, "maxStake", params.maxStake);
        vm.serializeUint(key, "minLockPeriods", params.minLockPeriods);
        vm.serializeUint(key, "maxLockPeriods", params.maxLockPeriods);
        vm.serializeUint(key, "minWorkerPeriods", params.minWorkerPeriods);
        vm.serializeUint(key, "issuanceRate", params.issuanceRate);
        string memory json = vm.serializeUint(key, "evidenceWindow", params.evidenceWindow);
        vm.createDir("deployments", true);
        vm.writeJson(json, path);
    }
}
