// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {KMSToken} from "../../../contracts/KMSToken.sol";
import {PolicyManager} from "../../../contracts/PolicyManager.sol";
import {StakingEscrow} from "../../../contracts/StakingEscrow.sol";
import {Vm} from "../../utils/Vm.sol";

/// @notice What restaking a reward must do, predicted from the escrow's views before the mint and
/// checked after it (implemented by `CompoundingHandler`, which drives the restake switch).
interface IReStakeExpectations {
    /// @notice Lock `amount` into sub-stake `target`, which held `targetBefore`, while the staker
    /// had `lockedNextBefore` locked in the next period.
    struct ReStake {
        uint256 target;
        uint256 amount;
        uint256 targetBefore;
        uint256 lockedNextBefore;
    }

    function expectReStake(address staker, uint256 reward) external view returns (ReStake memory);

    /// @notice Reverts unless the last mint restaked as `expected`; returns the amount restaked.
    function checkReStaked(address staker, ReStake calldata expected) external view returns (uint256);
}

/// @notice Drives the escrow and the policy manager with bounded random actions by a fixed cast
/// of stakers (each with its current worker, rotated to fresh keys) and policy owners, and keeps
/// ghost totals of every token and every wei that moves, for the invariants to check against the
/// contracts' own state.
contract KMSHandler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint256 internal constant STAKERS = 5;
    uint256 internal constant OWNERS = 2;
    /// @dev Owner `i` is the address of the key `OWNER_KEY + i`: owners sign revocation orders.
    uint256 internal constant OWNER_KEY = 0xC000;

    KMSToken public immutable token;
    StakingEscrow public immutable escrow;
    PolicyManager public immutable policyManager;
    address public immutable adjudicator;
    address public immutable treasury; // holds the initial supply, funds the stakers

    address[STAKERS] public stakers;
    /// @notice Each staker's current worker: bonded once the staker has deposited, then rotated.
    address[STAKERS] public workers;
    address[OWNERS] public owners;
    address public investigator = address(0x1111);
    /// @notice Sends owners' signed revocation orders; never paid.
    address public relayer = address(0x2222);

    struct PolicyRecord {
        bytes16 id;
        uint256 ownerIndex;
        address[] nodes;
    }

    PolicyRecord[] internal policies;

    /// @notice A worker key rotated out, and the staker it answered for.
    struct RetiredWorker {
        address worker;
        address staker;
    }

    RetiredWorker[] public retiredWorkers;

    /// @notice Predicts and checks each restake (`CompoundingHandler`, which drives the switch).
    IReStakeExpectations public reStakeExpectations;

    // Ghost totals: tokens
    mapping(address => uint256) public ghostDeposited;
    mapping(address => uint256) public ghostWithdrawn;
    mapping(address => uint256) public ghostRewards;
    mapping(address => uint256) public ghostPenalties;
    /// @notice Rewards the handler saw locked by restaking (a part of `ghostRewards`).
    mapping(address => uint256) public ghostReStaked;
    uint256 public ghostRewardsTotal;
    uint256 public ghostBurnt;
    uint256 public ghostInvestigatorRewards;
    // Ghost totals: ETH
    uint256 public ghostPaid;
    uint256 public ghostRefunded;
    uint256 public ghostFeesWithdrawn;
    // Counters, to see that the run did something
    mapping(bytes32 => uint256) public calls;

    constructor(KMSToken token_, StakingEscrow escrow_, PolicyManager policyManager_, address adjudicator_) {
        token = token_;
        escrow = escrow_;
        policyManager = policyManager_;
        adjudicator = adjudicator_;
        treasury = msg.sender;
        for (uint256 i; i < STAKERS; ++i) {
            stakers[i] = address(uint160(0xA000 + i));
            workers[i] = address(uint160(0xB000 + i));
        }
        for (uint256 i; i < OWNERS; ++i) {
            owners[i] = vm.addr(OWNER_KEY + i);
        }
    }

    /// @notice Links the restake checks, once.
    function setReStakeExpectations(IReStakeExpectations expectations) external {
        require(address(reStakeExpectations) == address(0), "already linked");
        reStakeExpectations = expectations;
    }

    function stakerCount() external pure returns (uint256) {
        return STAKERS;
    }

    function policyCount() external view returns (uint256) {
        return policies.length;
    }

    /// @notice The id and node list of the `index`-th policy created.
    function policyAt(uint256 index) external view returns (bytes16 id, address[] memory nodes) {
        PolicyRecord storage policy = policies[index];
        return (policy.id, policy.nodes);
    }

    function retiredWorkerCount() external view returns (uint256) {
        return retiredWorkers.length;
    }

    /*//////////////////////////////////////////////////////////////
                                 TIME
    //////////////////////////////////////////////////////////////*/

    /// @notice Mostly up to three periods; one call in four up to 45, past a lock's end and its
    /// evidence window, so unlocking, release and slot reuse happen within a run.
    function advance(uint256 seconds_) external {
        uint256 periods = seconds_ % 4 == 0 ? 45 : 3;
        seconds_ = (seconds_ >> 2) % (periods * escrow.secondsPerPeriod());
        vm.warp(vm.getBlockTimestamp() + seconds_);
        calls["advance"]++;
    }

    /*//////////////////////////////////////////////////////////////
                                STAKING
    //////////////////////////////////////////////////////////////*/

    function deposit(uint256 actorSeed, uint256 amount, uint256 periods) external {
        uint256 i = actorSeed % STAKERS;
        address staker = stakers[i];
        amount = _bound(amount, escrow.minStake(), 500_000e18);
        periods = _bound(periods, escrow.minLockPeriods(), 120);
        uint256 current = escrow.currentPeriod();
        if (escrow.lockedAt(staker, current) + amount > escrow.maxStake()) return;
        vm.prank(treasury);
        require(token.transfer(staker, amount), "token transfer refused");
        vm.startPrank(staker);
        token.approve(address(escrow), amount);
        try escrow.deposit(amount, periods) {
            ghostDeposited[staker] += amount;
            calls["deposit"]++;
        } catch {
            // Only a full sub-stake table may refuse here: give the tokens back.
            require(token.transfer(treasury, amount), "token transfer refused");
        }
        vm.stopPrank();
        if (escrow.workerOf(staker) == address(0) && ghostDeposited[staker] != 0) _bond(staker, workers[i]);
    }

    function prolong(uint256 actorSeed, uint256 index, uint256 periods) external {
        address staker = stakers[actorSeed % STAKERS];
        index = _pickSubStake(staker, index);
        if (index == type(uint256).max) return;
        periods = _bound(periods, 1, 30);
        vm.prank(staker);
        try escrow.prolong(index, periods) {
            calls["prolong"]++;
        } catch {}
    }

    function divide(uint256 actorSeed, uint256 index, uint256 fraction, uint256 periods) external {
        address staker = stakers[actorSeed % STAKERS];
        index = _pickSubStake(staker, index);
        if (index == type(uint256).max) return;
        uint256 amount = escrow.getSubStakes(staker)[index].amount;
        uint256 newAmount = amount * _bound(fraction, 1, 99) / 100;
        vm.prank(staker);
        try escrow.divide(index, newAmount, _bound(periods, 1, 10)) {
            calls["divide"]++;
        } catch {}
    }

    /// @notice Merges two sub-stakes, first prolonging the one that ends sooner to the other's end
    /// (random locks seldom end in the same period).
    function merge(uint256 actorSeed, uint256 index1, uint256 index2) external {
        address staker = stakers[actorSeed % STAKERS];
        StakingEscrow.SubStake[] memory subStakes = escrow.getSubStakes(staker);
        uint256 count = subStakes.length;
        if (count < 2) return;
        (index1, index2) = (index1 % count, index2 % count);
        uint256 last1 = subStakes[index1].lastPeriod;
        uint256 last2 = subStakes[index2].lastPeriod;
        vm.startPrank(staker);
        if (last1 != last2) {
            (uint256 sooner, uint256 gap) = last1 < last2 ? (index1, last2 - last1) : (index2, last1 - last2);
            try escrow.prolong(sooner, gap) {} catch {}
        }
        try escrow.merge(index1, index2) {
            calls["merge"]++;
        } catch {}
        vm.stopPrank();
    }

    function withdraw(uint256 actorSeed, uint256 amount) external {
        address staker = stakers[actorSeed % STAKERS];
        // Sub-stakes stay held for the evidence window after their lock ends.
        uint256 unlocked = escrow.stakeOf(staker) - escrow.heldStakeOf(staker);
        // Not one held token more: locked and restaked tokens are never withdrawable.
        vm.prank(staker);
        try escrow.withdraw(unlocked + 1) {
            revert("a held token was withdrawn");
        } catch {}
        if (unlocked == 0) return;
        amount = _bound(amount, 1, unlocked);
        vm.prank(staker);
        escrow.withdraw(amount);
        ghostWithdrawn[staker] += amount;
        calls["withdraw"]++;
        // Hand the tokens back so the treasury can keep funding deposits.
        vm.prank(staker);
        require(token.transfer(treasury, amount), "token transfer refused");
    }

    /*//////////////////////////////////////////////////////////////
                                WORKERS
    //////////////////////////////////////////////////////////////*/

    /// @notice Bonds a fresh worker key to a bonded staker (propose, then accept as the worker):
    /// allowed exactly when the current worker has been bonded `minWorkerPeriods`.
    function rotateWorker(uint256 actorSeed) external {
        uint256 i = actorSeed % STAKERS;
        address staker = stakers[i];
        address previous = workers[i];
        if (escrow.workerOf(staker) != previous || previous == address(0)) return; // never bonded
        uint256 bondedPeriod = escrow.getStakerInfo(staker).workerBondedPeriod;
        bool allowed = escrow.currentPeriod() >= bondedPeriod + escrow.minWorkerPeriods();
        address fresh = address(uint160(0xD0000 + retiredWorkers.length));
        vm.prank(staker);
        try escrow.bondWorker(fresh) {
            require(allowed, "a worker was replaced before minWorkerPeriods");
        } catch {
            require(!allowed, "a rotation to a fresh key was refused");
            return;
        }
        require(escrow.stakerOf(fresh) == address(0), "a proposal bonded the worker");
        vm.prank(fresh);
        escrow.acceptWorker(staker);
        retiredWorkers.push(RetiredWorker(previous, staker));
        workers[i] = fresh;
        calls["rotateWorker"]++;
    }

    /*//////////////////////////////////////////////////////////////
                          COMMITMENTS AND REWARDS
    //////////////////////////////////////////////////////////////*/

    /// @notice The worker commits. The reward minted is the formula's; restaked, it is locked into
    /// the sub-stake that ends last and counted in the commitment, which records exactly what is
    /// locked in the next period.
    function commit(uint256 actorSeed) external {
        uint256 i = actorSeed % STAKERS;
        address staker = stakers[i];
        uint256 expected = escrow.pendingReward(staker);
        uint256 before = escrow.stakeOf(staker);
        uint256 next = escrow.currentPeriod() + 1;
        uint256 lockedNext = escrow.lockedAt(staker, next);
        IReStakeExpectations.ReStake memory reStake = reStakeExpectations.expectReStake(staker, expected);
        vm.prank(workers[i]);
        try escrow.commitToNextPeriod() {
            uint256 reward = escrow.stakeOf(staker) - before;
            require(reward == expected, "commit minted other than the formula's reward");
            ghostReStaked[staker] += reStakeExpectations.checkReStaked(staker, reStake);
            StakingEscrow.StakerView memory info = escrow.getStakerInfo(staker);
            uint256 committed = info.commitPeriods[0] == next ? info.commitLocked[0] : info.commitLocked[1];
            require(
                committed == lockedNext + reStake.amount, "the commitment does not count the restaked reward"
            );
            ghostRewards[staker] += reward;
            ghostRewardsTotal += reward;
            calls["commit"]++;
        } catch {}
    }

    function mint(uint256 actorSeed) external {
        uint256 i = actorSeed % STAKERS;
        address staker = stakers[i];
        if (escrow.workerOf(staker) == address(0)) return;
        uint256 expected = escrow.pendingReward(staker);
        IReStakeExpectations.ReStake memory reStake = reStakeExpectations.expectReStake(staker, expected);
        vm.prank(workers[i]);
        uint256 reward = escrow.mint();
        require(reward == expected, "mint minted other than the formula's reward");
        ghostReStaked[staker] += reStakeExpectations.checkReStaked(staker, reStake);
        ghostRewards[staker] += reward;
        ghostRewardsTotal += reward;
        calls["mint"]++;
    }

    /*//////////////////////////////////////////////////////////////
                                SLASHING
    //////////////////////////////////////////////////////////////*/

    function slash(uint256 actorSeed, uint256 penalty, uint256 rewardShare) external {
        address staker = stakers[actorSeed % STAKERS];
        uint256 value = escrow.stakeOf(staker);
        if (value == 0) return;
        penalty = _bound(penalty, 1, value * 2); // sometimes more than the stake: capped
        uint256 reward = penalty * _bound(rewardShare, 0, 100) / 100;
        uint256 investigatorBefore = token.balanceOf(investigator);
        vm.prank(adjudicator);
        escrow.slash(staker, penalty, investigator, reward);
        uint256 taken = value - escrow.stakeOf(staker);
        uint256 paid = token.balanceOf(investigator) - investigatorBefore;
        require(taken <= penalty && paid <= reward && paid <= taken, "slash took more than asked");
        ghostPenalties[staker] += taken;
        ghostInvestigatorRewards += paid;
        ghostBurnt += taken - paid;
        calls["slash"]++;
    }

    /*//////////////////////////////////////////////////////////////
                                POLICIES
    //////////////////////////////////////////////////////////////*/

    function createPolicy(uint256 ownerSeed, uint256 nodeMask, uint256 periods, uint256 rate) external {
        uint256 ownerIndex = ownerSeed % OWNERS;
        address owner = owners[ownerIndex];
        periods = _bound(periods, 1, 20);
        rate = _bound(rate, 1 gwei, 100 gwei);
        uint256 current = escrow.currentPeriod();
        uint256 lastPeriod = current + periods - 1;
        // Eligible nodes among the mask, in ascending address order (stakers are ascending).
        address[] memory chosen = new address[](STAKERS);
        uint256 count;
        for (uint256 i; i < STAKERS; ++i) {
            if ((nodeMask >> i) & 1 == 0) continue;
            (uint256 locked, address worker) = escrow.policyEligibility(stakers[i], lastPeriod);
            if (locked == 0 || worker == address(0)) continue;
            chosen[count++] = stakers[i];
        }
        if (count == 0) return;
        assembly ("memory-safe") {
            mstore(chosen, count)
        }
        uint256 value = rate * count * periods;
        bytes16 salt = bytes16(keccak256(abi.encode("policy", policies.length)));
        uint256 end = (current + periods) * escrow.secondsPerPeriod();
        vm.deal(owner, owner.balance + value);
        vm.prank(owner); // the next call, and its value, come from the owner
        bytes16 id = policyManager.createPolicy{value: value}(salt, owner, owner, end, chosen);
        require(id == policyManager.policyIdOf(owner, salt), "the id is not the creator's and salt's");
        policies.push(PolicyRecord(id, ownerIndex, chosen));
        ghostPaid += value;
        calls["createPolicy"]++;
    }

    /// @notice The owner extends a policy by 1 to 20 periods (to an end inside a period, one time
    /// in two), paying its live arrangements at the policy's rate; one time in eight a wei too
    /// much. The handler predicts the answer: accepted exactly when the policy is live, has a live
    /// arrangement, each live node is eligible through the new last period (staked, a worker, a
    /// minimum fee rate within the policy's), and the payment is exact.
    function extendPolicy(uint256 policySeed, uint256 periods, uint256 offset) external {
        if (policies.length == 0) return;
        PolicyRecord storage policy = policies[policySeed % policies.length];
        PolicyManager.PolicyView memory before = policyManager.getPolicy(policy.id);
        uint256 secondsPerPeriod = escrow.secondsPerPeriod();
        periods = _bound(periods, 1, 20);
        uint256 lastPeriod = before.lastPeriod + periods;
        uint256 end =
            (lastPeriod + 1) * secondsPerPeriod - (offset % 2 == 0 ? 0 : (offset >> 8) % secondsPerPeriod);
        uint256 live;
        bool eligible = true;
        for (uint256 i; i < policy.nodes.length; ++i) {
            address node = policy.nodes[i];
            if (policyManager.arrangementRevoked(policy.id, node)) continue;
            ++live;
            (uint256 locked, address worker) = escrow.policyEligibility(node, lastPeriod);
            if (
                locked == 0 || worker == address(0)
                    || policyManager.effectiveMinFeeRate(node) > before.feeRate
            ) {
                eligible = false;
            }
        }
        bool overpaid = (offset >> 4) % 8 == 0;
        uint256 value = before.feeRate * live * periods + (overpaid ? 1 : 0);
        bool accepted = !before.revoked && vm.getBlockTimestamp() < before.endTimestamp && live != 0
            && eligible && !overpaid;
        address owner = owners[policy.ownerIndex];
        vm.deal(owner, owner.balance + value);
        vm.prank(owner);
        try policyManager.extendPolicy{value: value}(policy.id, end, policy.nodes) returns (uint256 last) {
            require(accepted, "an extension the rules refuse was accepted");
            PolicyManager.PolicyView memory after_ = policyManager.getPolicy(policy.id);
            require(last == lastPeriod && after_.lastPeriod == lastPeriod, "another last period");
            require(after_.endTimestamp == end && after_.feeRate == before.feeRate, "another end or rate");
            ghostPaid += value;
            calls["extendPolicy"]++;
        } catch {
            require(!accepted, "an extension the rules allow was refused");
            vm.deal(owner, owner.balance - value);
        }
    }

    function revokePolicy(uint256 policySeed) external {
        if (policies.length == 0) return;
        PolicyRecord storage policy = policies[policySeed % policies.length];
        address owner = owners[policy.ownerIndex];
        uint256 before = owner.balance;
        vm.prank(owner);
        try policyManager.revokePolicy(policy.id, policy.nodes) returns (uint256 refunded) {
            require(owner.balance - before == refunded, "refund not sent");
            ghostRefunded += refunded;
            calls["revokePolicy"]++;
        } catch {}
    }

    function revokeArrangement(uint256 policySeed, uint256 nodeSeed) external {
        if (policies.length == 0) return;
        PolicyRecord storage policy = policies[policySeed % policies.length];
        address node = policy.nodes[nodeSeed % policy.nodes.length];
        vm.prank(owners[policy.ownerIndex]);
        try policyManager.revokeArrangement(policy.id, node, policy.nodes) returns (uint256 refunded) {
            ghostRefunded += refunded;
            calls["revokeArrangement"]++;
        } catch {}
    }

    /// @notice The relayer carries out an order to revoke a policy (or, two times in three, one of
    /// its arrangements), signed by the policy's owner or, one time in eight, by the other owner:
    /// that one is always refused; the owner's pays the owner, never the relayer.
    function revokeBySignature(uint256 policySeed, uint256 nodeSeed, uint256 signerSeed) external {
        if (policies.length == 0) return;
        PolicyRecord storage policy = policies[policySeed % policies.length];
        address node = nodeSeed % 3 == 0 ? address(0) : policy.nodes[(nodeSeed / 3) % policy.nodes.length];
        bool forged = signerSeed % 8 == 0;
        uint256 key = OWNER_KEY + (forged ? policy.ownerIndex + 1 : policy.ownerIndex) % OWNERS;
        uint64 deadline = uint64(vm.getBlockTimestamp() + (signerSeed >> 8) % 1 days);
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(key, policyManager.revocationTypedDataHash(policy.id, node, deadline));
        address owner = owners[policy.ownerIndex];
        uint256 before = owner.balance;
        vm.prank(relayer);
        try policyManager.revokeBySignature(
            policy.id, node, deadline, policy.nodes, abi.encodePacked(r, s, v)
        ) returns (
            uint256 refunded
        ) {
            require(!forged, "an order signed by another key was carried out");
            require(owner.balance - before == refunded, "refund not sent to the owner");
            require(relayer.balance == 0, "the relayer was paid");
            ghostRefunded += refunded;
            calls["revokeBySignature"]++;
        } catch {}
    }

    function refund(uint256 policySeed) external {
        if (policies.length == 0) return;
        PolicyRecord storage policy = policies[policySeed % policies.length];
        try policyManager.refund(policy.id, policy.nodes) returns (uint256 amount) {
            ghostRefunded += amount;
            calls["refund"]++;
        } catch {}
    }

    /// @notice The staker or, half the time, its current worker (as a node does) withdraws: it is
    /// paid all the fees, and none are left.
    function withdrawFees(uint256 actorSeed) external {
        uint256 i = actorSeed % STAKERS;
        address staker = stakers[i];
        uint256 accrued = policyManager.fees(staker);
        if (accrued == 0) return;
        bool byWorker = (actorSeed / STAKERS) % 2 == 1 && escrow.workerOf(staker) == workers[i];
        uint256 before = staker.balance;
        vm.prank(byWorker ? workers[i] : staker);
        uint256 amount = policyManager.withdrawFees(staker);
        require(amount == accrued && staker.balance - before == amount, "withdrawal paid other than the fees");
        require(policyManager.fees(staker) == 0, "a withdrawal left fees behind");
        ghostFeesWithdrawn += amount;
        calls["withdrawFees"]++;
    }

    function processRateEndings(uint256 actorSeed, uint256 maxPeriods) external {
        try policyManager.processRateEndings(stakers[actorSeed % STAKERS], _bound(maxPeriods, 1, 5)) {
            calls["processRateEndings"]++;
        } catch {}
    }

    /*//////////////////////////////////////////////////////////////
                                HELPERS
    //////////////////////////////////////////////////////////////*/

    /// @dev Both steps of bonding: the staker proposes, the worker accepts.
    function _bond(address staker, address worker) internal {
        vm.prank(staker);
        escrow.bondWorker(worker);
        vm.prank(worker);
        escrow.acceptWorker(staker);
    }

    function _pickSubStake(address staker, uint256 seed) internal view returns (uint256) {
        StakingEscrow.SubStake[] memory subStakes = escrow.getSubStakes(staker);
        if (subStakes.length == 0) return type(uint256).max;
        return seed % subStakes.length;
    }

    function _bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        if (x >= min && x <= max) return x;
        return min + x % (max - min + 1);
    }
}
