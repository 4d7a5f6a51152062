// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {KMSToken} from "./KMSToken.sol";
import {IPolicyManager} from "./interfaces/IPolicyManager.sol";
import {IStakingEscrow} from "./interfaces/IStakingEscrow.sol";
import {Errors} from "./libraries/Errors.sol";

/// @title StakingEscrow
/// @notice Holds stakers' KMS tokens in sub-stakes locked for a number of periods, bonds each staker
/// to a worker (the node's hot key), takes the worker's commitment to the next period and mints the
/// mining reward for every period a staker committed to:
///
///     reward(staker, p) = locked(staker, p) * issuance(p) / lockedTotal(p)
///
/// where `lockedTotal(p)` sums the locked tokens of the stakers committed to `p` and `issuance(p)` is
/// a fixed fraction (`issuanceRate`) of the reserve not yet allocated, taken when the first staker
/// commits to `p` (so the reserve decays geometrically and is never exceeded). See docs/economics.md.
///
/// Every state-changing function is O(1) in the number of stakers and policies: loops only run over
/// the caller's own sub-stakes, bounded by `MAX_SUB_STAKES`.
contract StakingEscrow is IStakingEscrow {
    using SafeERC20 for IERC20;

    /*//////////////////////////////////////////////////////////////
                                 TYPES
    //////////////////////////////////////////////////////////////*/

    /// @notice Constructor parameters (token amounts in token units, durations in periods).
    struct Parameters {
        uint256 secondsPerPeriod;
        uint256 minStake; // smallest sub-stake
        uint256 maxStake; // largest total locked per staker
        uint256 minLockPeriods;
        uint256 maxLockPeriods;
        uint256 minWorkerPeriods; // a worker stays bonded at least this long
        uint256 issuanceRate; // WAD fraction of the unallocated reserve issued per period
        uint256 evidenceWindow; // periods an answer stays slashable (see docs/adjudicator.md)
    }

    /// @notice Tokens locked from `firstPeriod` through `lastPeriod`, both included.
    /// @dev `amount == 0` marks a free slot (merged away or cut to zero by a slash).
    struct SubStake {
        uint32 firstPeriod;
        uint32 lastPeriod;
        uint96 amount;
    }

    /// @dev Three slots plus one per sub-stake. The sub-stake count sits beside the worker, so the
    /// one read that finds the worker also bounds the sub-stake loop; the restake switch sits beside
    /// the stake, which every mint rewrites.
    struct StakerInfo {
        // slot 0
        uint96 value; // tokens held for the staker, locked or not
        uint96 rewardsMinted; // cumulative
        bool reStake; // lock each mint into the sub-stake that ends last (`setReStake`)
        // slot 1
        address worker;
        uint32 workerBondedPeriod;
        bool listed; // in `stakerList`
        uint8 subStakeCount;
        // slot 2: both commitments. A struct starts a slot of its own; as plain fields the first
        // period packed into slot 1, and settling or making a commitment rewrote two slots.
        Commitments commitments;
        // slot 3
        mapping(uint256 index => SubStake) subStakes;
    }

    /// @notice A staker's pending commitments, one slot: at most two await their reward, the current
    /// period's and the next one's. A zero period is a free slot; the last commitment is the larger
    /// period.
    struct Commitments {
        uint32 periodA;
        uint96 lockedA;
        uint32 periodB;
        uint96 lockedB;
    }

    /// @notice Per-period totals, one slot.
    struct PeriodTotals {
        uint96 lockedTotal; // sum of committed stakers' locked tokens
        uint96 issuance; // reward for the whole period, allocated at the first commitment
        bool allocated;
    }

    /// @notice The latest bonding of a worker key: to `staker` from `firstPeriod` through
    /// `lastPeriod` (both included; `lastPeriod == OPEN_BOND` while bonded). One slot. Kept after
    /// the worker is unbonded, and not overwritten before the evidence window of its last period
    /// has passed, so the Adjudicator can tell which staker answers for what the worker signed.
    struct WorkerBond {
        address staker;
        uint32 firstPeriod;
        uint32 lastPeriod;
    }

    /// @notice Where a staker's node can be reached, published by its worker.
    struct NodeRecord {
        string url;
        bytes umbralPublicKey; // 33-byte compressed secp256k1 point (umbral-pre's PublicKey bytes)
    }

    /// @notice A staker's state, for clients.
    struct StakerView {
        uint256 value;
        uint256 lockedNow;
        uint256 lockedNextPeriod;
        uint256 rewardsMinted;
        uint256 pendingReward;
        uint256 lastCommittedPeriod;
        address worker;
        uint256 workerBondedPeriod;
        uint256[2] commitPeriods;
        uint256[2] commitLocked;
    }

    /// @notice A node as clients see it.
    struct NodeView {
        address staker;
        address worker;
        string url;
        bytes umbralPublicKey;
    }

    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    /// @notice Sub-stake slots per staker (free slots are reused).
    uint256 public constant MAX_SUB_STAKES = 16;

    /// @notice The longest URL a node record may hold, in bytes.
    uint256 public constant MAX_URL_LENGTH = 256;

    uint256 internal constant WAD = 1e18;

    /// @notice The `lastPeriod` of a worker bond still in force.
    uint32 public constant OPEN_BOND = type(uint32).max;

    /*//////////////////////////////////////////////////////////////
                               IMMUTABLES
    //////////////////////////////////////////////////////////////*/

    KMSToken public immutable token;
    address public immutable owner; // may link the policy manager and adjudicator, once each
    uint256 public immutable override secondsPerPeriod;
    uint256 public immutable minStake;
    uint256 public immutable maxStake;
    uint256 public immutable minLockPeriods;
    uint256 public immutable maxLockPeriods;
    uint256 public immutable minWorkerPeriods;
    uint256 public immutable issuanceRate;
    uint256 public immutable override evidenceWindow;

    /*//////////////////////////////////////////////////////////////
                                STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @notice The policy manager told of every commitment (slot shared with the reserve: one read).
    IPolicyManager public policyManager;

    /// @notice The part of the mining reserve not yet allocated to a period.
    uint96 public unallocatedReserve;

    /// @notice The only caller of `slash`.
    address public adjudicator;

    mapping(address staker => StakerInfo) internal stakers;
    mapping(address worker => WorkerBond) internal workerBonds;
    /// @notice The worker a staker proposed, awaiting the worker's acceptance.
    mapping(address staker => address worker) public pendingWorker;
    mapping(uint256 period => PeriodTotals) internal periodTotals;
    mapping(address staker => NodeRecord) internal nodeRecords;
    address[] internal stakerList;

    /*//////////////////////////////////////////////////////////////
                                 EVENTS
    //////////////////////////////////////////////////////////////*/

    event PolicyManagerSet(address indexed policyManager);
    event AdjudicatorSet(address indexed adjudicator);
    event Deposited(
        address indexed staker, uint256 indexed index, uint256 amount, uint256 firstPeriod, uint256 lastPeriod
    );
    event Prolonged(address indexed staker, uint256 indexed index, uint256 lastPeriod);
    event Divided(
        address indexed staker,
        uint256 indexed index,
        uint256 newIndex,
        uint256 newAmount,
        uint256 newLastPeriod
    );
    event Merged(address indexed staker, uint256 indexed index, uint256 mergedIndex);
    /// @notice `amount` of the staker's unlocked tokens became sub-stake `index`, locked from
    /// `firstPeriod` through `lastPeriod`.
    event Locked(
        address indexed staker, uint256 indexed index, uint256 amount, uint256 firstPeriod, uint256 lastPeriod
    );
    /// @notice Sub-stake `index` grew by `amount`: tokens deposited from the wallet, or the staker's
    /// unlocked tokens when `fromUnlocked`.
    event Increased(address indexed staker, uint256 indexed index, uint256 amount, bool fromUnlocked);
    /// @notice The staker turned restaking of its rewards on or off.
    event ReStakeSet(address indexed staker, bool reStake);
    event Withdrawn(address indexed staker, uint256 amount);
    event WorkerBonded(address indexed staker, address indexed worker, uint256 period);
    /// @notice The staker proposed `worker` (zero: withdrew its proposal); the bond takes effect when
    /// the worker accepts it.
    event WorkerProposed(address indexed staker, address indexed worker);
    event NodeRecordPublished(
        address indexed staker, address indexed worker, string url, bytes umbralPublicKey
    );
    event CommitmentMade(address indexed staker, uint256 indexed period, uint256 locked);
    event IssuanceAllocated(uint256 indexed period, uint256 issuance);
    /// @notice Rewards of the commitments to periods `firstPeriod..lastPeriod` (one or two periods:
    /// the pending commitments are always consecutive) were added to the stake. Emitted only when
    /// `amount` is positive (a settled commitment that earned nothing emits nothing).
    event RewardMinted(address indexed staker, uint256 firstPeriod, uint256 lastPeriod, uint256 amount);
    /// @notice `amount` of the reward just minted (`RewardMinted`, emitted before) was locked into
    /// sub-stake `index` (restaking is on). Emitted only when `amount` is positive.
    event ReStaked(address indexed staker, uint256 index, uint256 amount);
    event Slashed(address indexed staker, uint256 penalty, address indexed investigator, uint256 reward);

    /*//////////////////////////////////////////////////////////////
                              CONSTRUCTOR
    //////////////////////////////////////////////////////////////*/

    /// @param token_ The KMS token; its whole unminted reserve becomes this escrow's to issue.
    /// @param params See `Parameters`.
    constructor(KMSToken token_, Parameters memory params) {
        // Period 0 is the "no period" sentinel of commitments and refund cursors: start past it.
        if (params.secondsPerPeriod == 0 || block.timestamp < params.secondsPerPeriod) {
            revert Errors.StakingEscrow_InvalidParameter("secondsPerPeriod");
        }
        if (params.minStake == 0 || params.minStake > params.maxStake) {
            revert Errors.StakingEscrow_InvalidParameter("minStake/maxStake");
        }
        if (params.maxStake > type(uint96).max) revert Errors.StakingEscrow_InvalidParameter("maxStake");
        if (params.minLockPeriods == 0 || params.minLockPeriods > params.maxLockPeriods) {
            revert Errors.StakingEscrow_InvalidParameter("minLockPeriods/maxLockPeriods");
        }
        if (params.maxLockPeriods > type(uint16).max) {
            revert Errors.StakingEscrow_InvalidParameter("maxLockPeriods");
        }
        if (params.issuanceRate == 0 || params.issuanceRate > WAD) {
            revert Errors.StakingEscrow_InvalidParameter("issuanceRate");
        }
        if (params.evidenceWindow == 0 || params.evidenceWindow > type(uint16).max) {
            revert Errors.StakingEscrow_InvalidParameter("evidenceWindow");
        }
        if (token_.minter() != address(this)) revert Errors.StakingEscrow_NotTheMinter(token_.minter());
        token = token_;
        owner = msg.sender;
        secondsPerPeriod = params.secondsPerPeriod;
        minStake = params.minStake;
        maxStake = params.maxStake;
        minLockPeriods = params.minLockPeriods;
        maxLockPeriods = params.maxLockPeriods;
        minWorkerPeriods = params.minWorkerPeriods;
        issuanceRate = params.issuanceRate;
        evidenceWindow = params.evidenceWindow;
        // The token's cap fits 96 bits (KMSToken enforces it), so the reserve does too.
        unallocatedReserve = uint96(token_.cap() - token_.totalSupply());
    }

    /*//////////////////////////////////////////////////////////////
                                LINKING
    //////////////////////////////////////////////////////////////*/

    /// @notice Links the policy manager. Callable once, by the deployer.
    function setPolicyManager(IPolicyManager policyManager_) external {
        if (
            msg.sender != owner || address(policyManager) != address(0)
                || address(policyManager_) == address(0)
        ) {
            revert Errors.StakingEscrow_LinkNotSettable("policyManager");
        }
        policyManager = policyManager_;
        emit PolicyManagerSet(address(policyManager_));
    }

    /// @notice Links the adjudicator, the only caller of `slash`. Callable once, by the deployer.
    function setAdjudicator(address adjudicator_) external {
        if (msg.sender != owner || adjudicator != address(0) || adjudicator_ == address(0)) {
            revert Errors.StakingEscrow_LinkNotSettable("adjudicator");
        }
        adjudicator = adjudicator_;
        emit AdjudicatorSet(adjudicator_);
    }

    /*//////////////////////////////////////////////////////////////
                                STAKING
    //////////////////////////////////////////////////////////////*/

    /// @notice Deposits `amount` tokens as a new sub-stake locked from now through `periods` more periods.
    /// Requirements: `amount >= minStake`; `minLockPeriods <= periods <= maxLockPeriods`; the staker's
    /// locked total stays within `maxStake`; an allowance of `amount` for this contract.
    /// @dev A deposit counts toward rewards from the staker's next commitment.
    /// @param amount Tokens, in token units.
    /// @param periods Lock duration in whole periods after the current one.
    /// @return index The sub-stake's index.
    function deposit(uint256 amount, uint256 periods) external returns (uint256 index) {
        if (amount < minStake) revert Errors.StakingEscrow_AmountBelowMinStake(amount, minStake);
        if (periods < minLockPeriods || periods > maxLockPeriods) {
            revert Errors.StakingEscrow_LockOutOfRange(periods, minLockPeriods, maxLockPeriods);
        }
        address bondedTo = stakerOf(msg.sender);
        if (bondedTo != address(0) && bondedTo != msg.sender) {
            revert Errors.StakingEscrow_WorkerIsAStaker(msg.sender);
        }

        StakerInfo storage info = stakers[msg.sender];
        uint256 current = currentPeriod();
        (uint256 lockedNow, uint256 freeIndex) = _scan(info, current);
        if (lockedNow + amount > maxStake) {
            revert Errors.StakingEscrow_StakeAboveMax(lockedNow + amount, maxStake);
        }

        uint256 lastPeriod = current + periods;
        index = _store(info, freeIndex, SubStake(uint32(current), uint32(lastPeriod), uint96(amount)));
        // No overflow: the transfer below takes `amount` from the caller, so the stake stays within
        // the token supply, which fits 96 bits (or the transfer reverts).
        unchecked {
            info.value += uint96(amount);
        }
        if (!info.listed) {
            info.listed = true;
            stakerList.push(msg.sender);
        }
        emit Deposited(msg.sender, index, amount, current, lastPeriod);

        IERC20(address(token)).safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Extends a locked sub-stake by `periods`.
    /// Requirements: the sub-stake is still locked; the remaining lock stays within `maxLockPeriods`.
    function prolong(uint256 index, uint256 periods) external {
        if (periods == 0) revert Errors.StakingEscrow_ZeroValue();
        uint256 current = currentPeriod();
        SubStake storage subStake = _activeSubStake(msg.sender, index, current);
        uint256 lastPeriod = subStake.lastPeriod + periods;
        _checkRemainingLock(lastPeriod, current);
        subStake.lastPeriod = uint32(lastPeriod);
        emit Prolonged(msg.sender, index, lastPeriod);
    }

    /// @notice Splits `newAmount` off a locked sub-stake into a new sub-stake locked `periods` longer.
    /// Requirements: both parts at least `minStake`; `periods > 0`; the remaining lock stays within
    /// `maxLockPeriods`; a free sub-stake slot.
    /// @return newIndex The new sub-stake's index.
    function divide(uint256 index, uint256 newAmount, uint256 periods) external returns (uint256 newIndex) {
        if (periods == 0) revert Errors.StakingEscrow_ZeroValue();
        uint256 current = currentPeriod();
        SubStake storage subStake = _activeSubStake(msg.sender, index, current);
        uint256 amount = subStake.amount;
        if (newAmount < minStake) revert Errors.StakingEscrow_AmountBelowMinStake(newAmount, minStake);
        if (newAmount >= amount || amount - newAmount < minStake) {
            revert Errors.StakingEscrow_AmountBelowMinStake(
                amount > newAmount ? amount - newAmount : 0, minStake
            );
        }
        uint256 newLastPeriod = subStake.lastPeriod + periods;
        _checkRemainingLock(newLastPeriod, current);

        StakerInfo storage info = stakers[msg.sender];
        (, uint256 freeIndex) = _scan(info, current);
        // No underflow: `newAmount < amount`, checked above.
        unchecked {
            subStake.amount = uint96(amount - newAmount);
        }
        newIndex =
            _store(info, freeIndex, SubStake(subStake.firstPeriod, uint32(newLastPeriod), uint96(newAmount)));
        emit Divided(msg.sender, index, newIndex, newAmount, newLastPeriod);
    }

    /// @notice Merges sub-stake `mergedIndex` into sub-stake `index`; the merged slot becomes free.
    /// Requirements: two different locked sub-stakes with the same last period.
    function merge(uint256 index, uint256 mergedIndex) external {
        uint256 current = currentPeriod();
        SubStake storage target = _activeSubStake(msg.sender, index, current);
        SubStake storage merged = _activeSubStake(msg.sender, mergedIndex, current);
        if (index == mergedIndex || target.lastPeriod != merged.lastPeriod) {
            revert Errors.StakingEscrow_SubStakesNotMergeable(index, mergedIndex);
        }
        target.amount += merged.amount;
        if (merged.firstPeriod < target.firstPeriod) target.firstPeriod = merged.firstPeriod;
        delete stakers[msg.sender].subStakes[mergedIndex];
        emit Merged(msg.sender, index, mergedIndex);
    }

    /// @notice Locks `amount` of the caller's unlocked tokens (minted rewards, sub-stakes released
    /// after their evidence window) as a new sub-stake, locked from now through `periods` more
    /// periods, as a deposit of those tokens would.
    /// Requirements: `0 < amount <= stakeOf(caller) - heldStakeOf(caller)`;
    /// `minLockPeriods <= periods <= maxLockPeriods`; the caller's locked total stays within
    /// `maxStake`; a free sub-stake slot; and `amount >= minStake`, or else the caller's other
    /// sub-stakes make up the minimum through the new one's last period:
    /// `lockedAt(caller, current + periods) + amount >= minStake`. So a sub-stake below `minStake`
    /// is never all a staker has locked in any period of its lock (until a slash).
    /// @dev Counts toward rewards from the staker's next commitment, like a deposit: a commitment
    /// already made keeps the locked amount it recorded.
    /// @param amount Tokens, in token units.
    /// @param periods Lock duration in whole periods after the current one.
    /// @return index The new sub-stake's index.
    function lock(uint256 amount, uint256 periods) external returns (uint256 index) {
        if (amount == 0) revert Errors.StakingEscrow_ZeroValue();
        if (periods < minLockPeriods || periods > maxLockPeriods) {
            revert Errors.StakingEscrow_LockOutOfRange(periods, minLockPeriods, maxLockPeriods);
        }
        StakerInfo storage info = stakers[msg.sender];
        uint256 current = currentPeriod();
        _checkUnlocked(info, current, amount);
        (uint256 lockedNow, uint256 freeIndex) = _scan(info, current);
        _checkMaxStake(lockedNow, amount);
        uint256 lastPeriod = current + periods;
        if (amount < minStake) {
            (uint256 lockedThrough,) = _scan(info, lastPeriod);
            if (lockedThrough + amount < minStake) {
                revert Errors.StakingEscrow_LockedBelowMinStake(lockedThrough + amount, minStake);
            }
        }
        index = _store(info, freeIndex, SubStake(uint32(current), uint32(lastPeriod), uint96(amount)));
        emit Locked(msg.sender, index, amount, current, lastPeriod);
    }

    /// @notice Adds `amount` tokens from the caller's wallet to its sub-stake `index`, locked through
    /// the same last period. Any positive amount: the minimum stake is the sub-stake's own.
    /// Requirements: `amount > 0`; the sub-stake is locked in the current period; the caller's
    /// locked total stays within `maxStake`; an allowance of `amount` for this contract.
    /// @dev Counts toward rewards from the staker's next commitment, like a deposit: a commitment
    /// already made keeps the locked amount it recorded.
    /// @param index The sub-stake's index.
    /// @param amount Tokens, in token units.
    function increase(uint256 index, uint256 amount) external {
        StakerInfo storage info = _increase(index, amount, false);
        // No overflow: the transfer below takes `amount` from the caller, so the stake stays within
        // the token supply, which fits 96 bits (or the transfer reverts).
        unchecked {
            info.value += uint96(amount);
        }
        emit Increased(msg.sender, index, amount, false);

        IERC20(address(token)).safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Adds `amount` of the caller's unlocked tokens (minted rewards, sub-stakes released
    /// after their evidence window) to its sub-stake `index`, locked through the same last period.
    /// Any positive amount: the minimum stake is the sub-stake's own.
    /// Requirements: `0 < amount <= stakeOf(caller) - heldStakeOf(caller)`; the sub-stake is locked
    /// in the current period; the caller's locked total stays within `maxStake`.
    /// @dev Counts toward rewards from the staker's next commitment, like a deposit: a commitment
    /// already made keeps the locked amount it recorded.
    /// @param index The sub-stake's index.
    /// @param amount Tokens, in token units.
    function increaseFromUnlocked(uint256 index, uint256 amount) external {
        _increase(index, amount, true);
        emit Increased(msg.sender, index, amount, true);
    }

    /// @notice Turns restaking on or off. While it is on, every reward minted to the caller's stake
    /// (by its worker's commitment, or by `mint`) is locked into the caller's sub-stake that ends
    /// last among those still locked in the next period (the lowest index on a tie), so it counts
    /// in the locked amount of the staker's next commitment (the one that minted it, when a
    /// commitment did). With no such sub-stake the reward stays unlocked, and so does whatever
    /// would take the caller's locked total above `maxStake`.
    /// Requirements: the caller has deposited.
    /// @param reStake_ Whether to restake.
    function setReStake(bool reStake_) external {
        StakerInfo storage info = stakers[msg.sender];
        if (!info.listed) revert Errors.StakingEscrow_NotAStaker(msg.sender);
        info.reStake = reStake_;
        emit ReStakeSet(msg.sender, reStake_);
    }

    /// @notice Withdraws free tokens: minted rewards, and sub-stakes whose lock ended more than
    /// `evidenceWindow` periods ago (until then they still answer for what the node signed).
    /// Requirements: `0 < amount <= value - heldStakeOf(staker)`.
    function withdraw(uint256 amount) external {
        if (amount == 0) revert Errors.StakingEscrow_ZeroValue();
        StakerInfo storage info = stakers[msg.sender];
        uint256 unlocked = info.value - _held(info, currentPeriod());
        if (amount > unlocked) revert Errors.StakingEscrow_InsufficientUnlocked(amount, unlocked);
        info.value -= uint96(amount);
        emit Withdrawn(msg.sender, amount);
        IERC20(address(token)).safeTransfer(msg.sender, amount);
    }

    /*//////////////////////////////////////////////////////////////
                                WORKERS
    //////////////////////////////////////////////////////////////*/

    /// @notice Bonds a worker to the caller's stake in two steps: the staker proposes `worker`, and
    /// the bond takes effect when the worker calls `acceptWorker` (so no address is bonded without
    /// its consent). The caller bonding itself, and `worker == 0` (unbond), take effect at once.
    /// Requirements: the caller has deposited; the current worker has been bonded at least
    /// `minWorkerPeriods`; `worker` is bonded to nobody, is not another staker, and its last bond
    /// ended more than `evidenceWindow` periods ago. A new proposal replaces the previous one.
    function bondWorker(address worker) external {
        StakerInfo storage info = stakers[msg.sender];
        if (!info.listed) revert Errors.StakingEscrow_NotAStaker(msg.sender);
        if (worker == address(0) || worker == msg.sender) {
            if (pendingWorker[msg.sender] != address(0)) _propose(msg.sender, address(0));
            _bond(msg.sender, info, worker);
            return;
        }
        // Checked now for an early, clear error; checked again on acceptance.
        _checkBondable(msg.sender, info, worker, currentPeriod());
        _propose(msg.sender, worker);
    }

    /// @notice The proposed worker accepts the bond to `staker`'s stake.
    /// Requirements: `staker` proposed the caller; every requirement of `bondWorker` still holds.
    function acceptWorker(address staker) external {
        if (pendingWorker[staker] != msg.sender) {
            revert Errors.StakingEscrow_NotProposedWorker(staker, msg.sender);
        }
        _propose(staker, address(0));
        _bond(staker, stakers[staker], msg.sender);
    }

    /// @notice The worker publishes where its node listens and its Umbral public key.
    /// Requirements: the caller is a bonded worker; `0 < url length <= MAX_URL_LENGTH`; the key is a
    /// 33-byte compressed point (first byte 0x02 or 0x03).
    function publishNodeRecord(string calldata url, bytes calldata umbralPublicKey) external {
        address staker = _stakerOfWorker(msg.sender);
        uint256 urlLength = bytes(url).length;
        if (urlLength == 0 || urlLength > MAX_URL_LENGTH) {
            revert Errors.StakingEscrow_InvalidNodeRecord("url length");
        }
        if (umbralPublicKey.length != 33 || (umbralPublicKey[0] != 0x02 && umbralPublicKey[0] != 0x03)) {
            revert Errors.StakingEscrow_InvalidNodeRecord("umbral public key");
        }
        nodeRecords[staker] = NodeRecord(url, umbralPublicKey);
        emit NodeRecordPublished(staker, msg.sender, url, umbralPublicKey);
    }

    /*//////////////////////////////////////////////////////////////
                          COMMITMENTS AND REWARDS
    //////////////////////////////////////////////////////////////*/

    /// @notice The worker commits its staker to the next period, minting the rewards of the
    /// commitments whose period has ended and accruing the node's fees for the next period.
    /// Requirements: the caller is a bonded worker; not yet committed to the next period; something
    /// locked in the next period.
    function commitToNextPeriod() external {
        address staker = _stakerOfWorker(msg.sender);
        StakerInfo storage info = stakers[staker];
        uint256 current = currentPeriod();
        uint256 next = current + 1;
        if (info.commitments.periodA == next || info.commitments.periodB == next) {
            revert Errors.StakingEscrow_AlreadyCommitted(next);
        }
        // Settled first: a restaked reward joins a sub-stake locked in `next`, and counts here.
        uint256 reward = _settleFinished(staker, info, current);
        (uint256 locked,) = _scan(info, next);
        if (locked == 0) revert Errors.StakingEscrow_NothingLockedNextPeriod(staker, next);

        // After settling, at most the current period's commitment remains: one slot is free.
        if (info.commitments.periodA == 0) {
            info.commitments.periodA = uint32(next);
            info.commitments.lockedA = uint96(locked);
        } else {
            info.commitments.periodB = uint32(next);
            info.commitments.lockedB = uint96(locked);
        }

        PeriodTotals storage totals = periodTotals[next];
        IPolicyManager manager = policyManager;
        if (!totals.allocated) {
            uint256 unallocated = unallocatedReserve;
            uint256 issuance = unallocated * issuanceRate / WAD;
            unallocatedReserve = uint96(unallocated - issuance);
            totals.issuance = uint96(issuance);
            totals.allocated = true;
            emit IssuanceAllocated(next, issuance);
        }
        totals.lockedTotal += uint96(locked);
        emit CommitmentMade(staker, next, locked);

        if (reward != 0) token.mint(address(this), reward);
        if (address(manager) != address(0)) manager.recordCommitment(staker, next);
    }

    /// @notice Mints the rewards of the caller's (or its worker's staker's) ended commitments.
    /// @dev A no-op returning zero when nothing is due, so it is safe to call from a duty loop.
    /// @return reward The tokens minted to the stake.
    function mint() external returns (uint256 reward) {
        // Workers (the daemons) call this most: look them up first.
        address staker = stakerOf(msg.sender);
        if (staker == address(0)) {
            if (!stakers[msg.sender].listed) {
                revert Errors.StakingEscrow_NotStakerOrWorker(msg.sender, address(0));
            }
            staker = msg.sender;
        }
        reward = _settleFinished(staker, stakers[staker], currentPeriod());
        if (reward != 0) token.mint(address(this), reward);
    }

    /*//////////////////////////////////////////////////////////////
                                SLASHING
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IStakingEscrow
    /// @dev The penalty is capped at the stake; it comes from free tokens first, then from the held
    /// sub-stakes that unlock soonest. Commitments awaiting their period shrink with the stake.
    function slash(address staker, uint256 penalty, address investigator, uint256 reward) external override {
        if (msg.sender != adjudicator) revert Errors.StakingEscrow_CallerNotAdjudicator(msg.sender);
        if (reward > penalty || (reward != 0 && investigator == address(0))) {
            revert Errors.StakingEscrow_InvalidSlash(penalty, reward);
        }
        StakerInfo storage info = stakers[staker];
        uint256 value = info.value;
        if (penalty > value) {
            // Keep the investigator's share proportional when the stake cannot cover the penalty.
            reward = penalty == 0 ? 0 : reward * value / penalty;
            penalty = value;
        }
        value -= penalty;
        info.value = uint96(value);

        uint256 current = currentPeriod();
        uint256 held = _held(info, current);
        if (held > value) _cutSubStakes(info, current, held - value);
        _shrinkCommitments(info, current);

        uint256 burnt = penalty - reward;
        unallocatedReserve += uint96(burnt);
        emit Slashed(staker, penalty, investigator, reward);

        if (reward != 0) IERC20(address(token)).safeTransfer(investigator, reward);
        if (burnt != 0) token.burn(burnt);
    }

    /*//////////////////////////////////////////////////////////////
                                 VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IStakingEscrow
    function currentPeriod() public view override returns (uint256) {
        return block.timestamp / secondsPerPeriod;
    }

    /// @notice The staker's tokens locked in `period` (meaningful for the current period and later).
    function lockedAt(address staker, uint256 period) external view returns (uint256 locked) {
        (locked,) = _scan(stakers[staker], period);
    }

    /// @inheritdoc IStakingEscrow
    function policyEligibility(address staker, uint256 period)
        external
        view
        override
        returns (uint256 locked, address worker)
    {
        StakerInfo storage info = stakers[staker];
        (locked,) = _scan(info, period);
        worker = info.worker;
    }

    /// @inheritdoc IStakingEscrow
    function stakeOf(address staker) external view override returns (uint256) {
        return stakers[staker].value;
    }

    /// @inheritdoc IStakingEscrow
    function heldStakeOf(address staker) external view override returns (uint256) {
        return _held(stakers[staker], currentPeriod());
    }

    /// @inheritdoc IStakingEscrow
    function stakerOf(address worker) public view override returns (address) {
        WorkerBond memory bond = workerBonds[worker];
        return bond.lastPeriod == OPEN_BOND ? bond.staker : address(0);
    }

    /// @inheritdoc IStakingEscrow
    function workerBond(address worker)
        external
        view
        override
        returns (address staker, uint256 firstPeriod, uint256 lastPeriod)
    {
        WorkerBond storage bond = workerBonds[worker];
        return (bond.staker, bond.firstPeriod, bond.lastPeriod);
    }

    /// @inheritdoc IStakingEscrow
    function workerOf(address staker) external view override returns (address) {
        return stakers[staker].worker;
    }

    /// @notice The staker's sub-stakes (free slots have a zero amount).
    function getSubStakes(address staker) external view returns (SubStake[] memory subStakes) {
        StakerInfo storage info = stakers[staker];
        uint256 count = info.subStakeCount;
        subStakes = new SubStake[](count);
        for (uint256 i; i < count; ++i) {
            subStakes[i] = info.subStakes[i];
        }
    }

    /// @notice A summary of the staker's state.
    function getStakerInfo(address staker) external view returns (StakerView memory view_) {
        StakerInfo storage info = stakers[staker];
        uint256 current = currentPeriod();
        view_.value = info.value;
        (view_.lockedNow,) = _scan(info, current);
        (view_.lockedNextPeriod,) = _scan(info, current + 1);
        view_.rewardsMinted = info.rewardsMinted;
        view_.pendingReward = _pendingReward(info, current);
        view_.lastCommittedPeriod = _lastCommittedPeriod(info);
        view_.worker = info.worker;
        view_.workerBondedPeriod = info.workerBondedPeriod;
        view_.commitPeriods = [uint256(info.commitments.periodA), uint256(info.commitments.periodB)];
        view_.commitLocked = [uint256(info.commitments.lockedA), uint256(info.commitments.lockedB)];
    }

    /// @notice Whether the staker restakes its rewards (`setReStake`).
    function reStakeEnabled(address staker) external view returns (bool) {
        return stakers[staker].reStake;
    }

    /// @notice Rewards of ended commitments, not yet minted.
    function pendingReward(address staker) external view returns (uint256) {
        return _pendingReward(stakers[staker], currentPeriod());
    }

    /// @notice The totals of `period`: locked tokens committed to it and its issuance.
    function getPeriodTotals(uint256 period) external view returns (PeriodTotals memory) {
        return periodTotals[period];
    }

    /// @notice How many stakers ever deposited (the length of the paged lists).
    function stakersCount() external view returns (uint256) {
        return stakerList.length;
    }

    /// @notice Stakers that can take a policy ending `periodsAhead` periods from now: a bonded worker,
    /// committed to the current or the next period, and tokens locked in period `current + periodsAhead`.
    /// Sample nodes weighted by `locked`. Paged over the staker list: `[offset, offset + limit)`.
    /// @return activeStakers The stakers of the page that qualify.
    /// @return locked Each one's locked tokens in period `current + periodsAhead`.
    /// @return lockedSum The sum of `locked`.
    function getActiveStakers(uint256 periodsAhead, uint256 offset, uint256 limit)
        external
        view
        returns (address[] memory activeStakers, uint256[] memory locked, uint256 lockedSum)
    {
        uint256 end = _pageEnd(offset, limit);
        uint256 current = currentPeriod();
        activeStakers = new address[](end - offset);
        locked = new uint256[](end - offset);
        uint256 count;
        for (uint256 i = offset; i < end; ++i) {
            address staker = stakerList[i];
            StakerInfo storage info = stakers[staker];
            if (info.worker == address(0) || _lastCommittedPeriod(info) < current) continue;
            (uint256 amount,) = _scan(info, current + periodsAhead);
            if (amount == 0) continue;
            activeStakers[count] = staker;
            locked[count] = amount;
            lockedSum += amount;
            ++count;
        }
        assembly ("memory-safe") {
            mstore(activeStakers, count)
            mstore(locked, count)
        }
    }

    /// @notice The node record of a staker (empty when none is published).
    function nodeRecordOf(address staker) external view returns (NodeView memory) {
        NodeRecord storage record = nodeRecords[staker];
        return NodeView(staker, stakers[staker].worker, record.url, record.umbralPublicKey);
    }

    /// @notice The published node records of the stakers in `[offset, offset + limit)` of the list.
    function getNodeRecords(uint256 offset, uint256 limit) external view returns (NodeView[] memory records) {
        uint256 end = _pageEnd(offset, limit);
        records = new NodeView[](end - offset);
        uint256 count;
        for (uint256 i = offset; i < end; ++i) {
            address staker = stakerList[i];
            NodeRecord storage record = nodeRecords[staker];
            if (record.umbralPublicKey.length == 0) continue;
            records[count++] = NodeView(staker, stakers[staker].worker, record.url, record.umbralPublicKey);
        }
        assembly ("memory-safe") {
            mstore(records, count)
        }
    }

    /*//////////////////////////////////////////////////////////////
                                INTERNAL
    //////////////////////////////////////////////////////////////*/

    function _stakerOfWorker(address worker) internal view returns (address staker) {
        staker = stakerOf(worker);
        if (staker == address(0)) revert Errors.StakingEscrow_NotAWorker(worker);
    }

    function _propose(address staker, address worker) internal {
        pendingWorker[staker] = worker;
        emit WorkerProposed(staker, worker);
    }

    /// @dev Replaces the staker's worker by `worker` (zero: none). The previous worker's bond is
    /// closed at the current period and kept, so its answers stay attributable to this staker.
    /// The policy manager, once linked, is told every bond: it keeps a copy of the worker for fee
    /// withdrawals (`IPolicyManager.recordWorker`).
    function _bond(address staker, StakerInfo storage info, address worker) internal {
        uint256 current = currentPeriod();
        _checkBondable(staker, info, worker, current);
        address previous = info.worker;
        if (previous != address(0)) workerBonds[previous].lastPeriod = uint32(current);
        if (worker != address(0)) workerBonds[worker] = WorkerBond(staker, uint32(current), OPEN_BOND);
        info.worker = worker;
        info.workerBondedPeriod = uint32(current);
        delete nodeRecords[staker];
        emit WorkerBonded(staker, worker, current);

        IPolicyManager manager = policyManager;
        if (address(manager) != address(0)) manager.recordWorker(staker, worker);
    }

    function _checkBondable(address staker, StakerInfo storage info, address worker, uint256 current)
        internal
        view
    {
        if (info.worker != address(0) && current < info.workerBondedPeriod + minWorkerPeriods) {
            revert Errors.StakingEscrow_WorkerBondedTooRecently(
                info.workerBondedPeriod, info.workerBondedPeriod + minWorkerPeriods
            );
        }
        if (worker == address(0)) return;
        WorkerBond memory previousBond = workerBonds[worker];
        if (previousBond.lastPeriod == OPEN_BOND) {
            revert Errors.StakingEscrow_WorkerAlreadyBonded(worker, previousBond.staker);
        }
        // A key that answered for a stake is not reused until those answers can no longer be
        // judged: the Adjudicator must find the stake an answer names in the key's one record.
        if (previousBond.staker != address(0) && current <= previousBond.lastPeriod + evidenceWindow) {
            revert Errors.StakingEscrow_WorkerCoolingDown(
                worker, previousBond.lastPeriod + evidenceWindow + 1
            );
        }
        if (worker != staker && stakers[worker].listed) revert Errors.StakingEscrow_WorkerIsAStaker(worker);
    }

    /// @dev Tokens that cannot be withdrawn in `current`: sub-stakes locked then, or whose lock ended
    /// within the last `evidenceWindow` periods.
    function _held(StakerInfo storage info, uint256 current) internal view returns (uint256 held) {
        uint256 count = info.subStakeCount;
        for (uint256 i; i < count; ++i) {
            SubStake memory subStake = info.subStakes[i];
            if (subStake.lastPeriod + evidenceWindow >= current) held += subStake.amount;
        }
    }

    /// @dev One pass over the sub-stakes: the amount locked in `period` and the first free slot
    /// (emptied, or unlocked more than `evidenceWindow` periods before `period`: a slot still held
    /// is not reused, or its tokens would become withdrawable), `type(uint256).max` when none.
    function _scan(StakerInfo storage info, uint256 period)
        internal
        view
        returns (uint256 locked, uint256 freeIndex)
    {
        freeIndex = type(uint256).max;
        uint256 count = info.subStakeCount;
        for (uint256 i; i < count; ++i) {
            SubStake memory subStake = info.subStakes[i];
            if (subStake.amount != 0 && subStake.lastPeriod >= period) {
                if (subStake.firstPeriod <= period) locked += subStake.amount;
            } else if (
                freeIndex == type(uint256).max
                    && (subStake.amount == 0 || subStake.lastPeriod + evidenceWindow < period)
            ) {
                freeIndex = i;
            }
        }
    }

    /// @dev Writes `subStake` into the free slot `freeIndex`, or appends it within `MAX_SUB_STAKES`.
    function _store(StakerInfo storage info, uint256 freeIndex, SubStake memory subStake)
        internal
        returns (uint256 index)
    {
        if (freeIndex != type(uint256).max) {
            info.subStakes[freeIndex] = subStake;
            return freeIndex;
        }
        index = info.subStakeCount;
        if (index >= MAX_SUB_STAKES) revert Errors.StakingEscrow_TooManySubStakes(MAX_SUB_STAKES);
        info.subStakes[index] = subStake;
        info.subStakeCount = uint8(index + 1);
    }

    function _activeSubStake(address staker, uint256 index, uint256 current)
        internal
        view
        returns (SubStake storage subStake)
    {
        StakerInfo storage info = stakers[staker];
        if (index >= info.subStakeCount) revert Errors.StakingEscrow_SubStakeNotFound(staker, index);
        subStake = info.subStakes[index];
        if (subStake.amount == 0 || subStake.lastPeriod < current) {
            revert Errors.StakingEscrow_SubStakeInactive(index, subStake.lastPeriod, current);
        }
    }

    /// @dev The checks and the lock of `increase` and `increaseFromUnlocked`.
    function _increase(uint256 index, uint256 amount, bool fromUnlocked)
        internal
        returns (StakerInfo storage info)
    {
        if (amount == 0) revert Errors.StakingEscrow_ZeroValue();
        uint256 current = currentPeriod();
        SubStake storage subStake = _activeSubStake(msg.sender, index, current);
        info = stakers[msg.sender];
        if (fromUnlocked) _checkUnlocked(info, current, amount);
        (uint256 lockedNow,) = _scan(info, current);
        _checkMaxStake(lockedNow, amount);
        subStake.amount += uint96(amount);
    }

    /// @dev Reverts unless the staker has `amount` unlocked: not held in `current`.
    function _checkUnlocked(StakerInfo storage info, uint256 current, uint256 amount) internal view {
        uint256 unlocked = info.value - _held(info, current);
        if (amount > unlocked) revert Errors.StakingEscrow_InsufficientUnlocked(amount, unlocked);
    }

    /// @dev Reverts unless `amount` more locked keeps the staker within `maxStake`. `lockedNow` is
    /// what is locked in the current period, the most of any period from now on.
    function _checkMaxStake(uint256 lockedNow, uint256 amount) internal view {
        if (lockedNow + amount > maxStake) {
            revert Errors.StakingEscrow_StakeAboveMax(lockedNow + amount, maxStake);
        }
    }

    function _checkRemainingLock(uint256 lastPeriod, uint256 current) internal view {
        if (lastPeriod - current > maxLockPeriods) {
            revert Errors.StakingEscrow_LockOutOfRange(lastPeriod - current, minLockPeriods, maxLockPeriods);
        }
    }

    /// @dev Credits the rewards of commitments to periods before `current` and frees their slots;
    /// locks them when the staker restakes (`_reStake`). The caller mints the returned amount.
    function _settleFinished(address staker, StakerInfo storage info, uint256 current)
        internal
        returns (uint256 reward)
    {
        uint256 periodA = info.commitments.periodA;
        uint256 periodB = info.commitments.periodB;
        bool settleA = periodA != 0 && periodA < current;
        bool settleB = periodB != 0 && periodB < current;
        if (!settleA && !settleB) return 0;
        uint256 firstPeriod = type(uint256).max;
        uint256 lastPeriod;
        if (settleA) {
            reward = _formula(periodA, info.commitments.lockedA);
            (firstPeriod, lastPeriod) = (periodA, periodA);
            info.commitments.periodA = 0;
            info.commitments.lockedA = 0;
        }
        if (settleB) {
            reward += _formula(periodB, info.commitments.lockedB);
            if (periodB < firstPeriod) firstPeriod = periodB;
            if (periodB > lastPeriod) lastPeriod = periodB;
            info.commitments.periodB = 0;
            info.commitments.lockedB = 0;
        }
        if (reward != 0) {
            // No overflow of `value`: it stays within the token supply, and the mint of `reward`
            // below within the cap, which fits 96 bits. `rewardsMinted`, a statistic only views
            // read, could wrap only after some 20 times the cap had been minted to one staker (burnt
            // tokens are issued again). Unchecked, the slot is read once, the restake switch with it.
            unchecked {
                info.value += uint96(reward);
                info.rewardsMinted += uint96(reward);
            }
            bool reStake = info.reStake;
            emit RewardMinted(staker, firstPeriod, lastPeriod, reward);
            if (reStake) _reStake(staker, info, current, reward);
        }
    }

    /// @dev Locks up to `reward` (already credited to `value`) into the sub-stake that ends last
    /// among those locked in `current + 1` (the lowest index on a tie), within `maxStake` of what is
    /// locked in `current` (the most the staker has locked in any period from now on: every
    /// sub-stake starts at or before the current period). Nothing is locked when no sub-stake is
    /// locked in `current + 1` or the staker is at `maxStake`; the rest stays unlocked.
    function _reStake(address staker, StakerInfo storage info, uint256 current, uint256 reward) internal {
        uint256 target = type(uint256).max;
        uint256 targetLast = current; // the target must be locked in `current + 1`
        uint256 lockedNow;
        uint256 count = info.subStakeCount;
        for (uint256 i; i < count; ++i) {
            SubStake storage subStake = info.subStakes[i];
            uint256 amount = subStake.amount;
            uint256 last = subStake.lastPeriod;
            if (amount == 0 || last < current) continue;
            // No overflow: the sum is within the stake, and so within the token's cap.
            unchecked {
                lockedNow += amount;
            }
            if (last > targetLast) (target, targetLast) = (i, last);
        }
        if (target == type(uint256).max || lockedNow >= maxStake) return;
        uint256 room = maxStake - lockedNow;
        uint256 reStaked = room < reward ? room : reward;
        // No overflow: the sub-stake stays within what is locked now, at most `maxStake`.
        unchecked {
            info.subStakes[target].amount += uint96(reStaked);
        }
        emit ReStaked(staker, target, reStaked);
    }

    /// @dev The mining formula: `locked * issuance(p) / lockedTotal(p)`, rounded down, so the rewards
    /// of a period never sum to more than its issuance.
    function _formula(uint256 period, uint256 locked) internal view returns (uint256) {
        PeriodTotals memory totals = periodTotals[period];
        if (totals.lockedTotal == 0) return 0;
        return locked * totals.issuance / totals.lockedTotal;
    }

    function _pendingReward(StakerInfo storage info, uint256 current) internal view returns (uint256 reward) {
        if (info.commitments.periodA != 0 && info.commitments.periodA < current) {
            reward = _formula(info.commitments.periodA, info.commitments.lockedA);
        }
        if (info.commitments.periodB != 0 && info.commitments.periodB < current) {
            reward += _formula(info.commitments.periodB, info.commitments.lockedB);
        }
    }

    /// @dev Takes `amount` out of the held sub-stakes, those unlocking soonest first.
    function _cutSubStakes(StakerInfo storage info, uint256 current, uint256 amount) internal {
        uint256 count = info.subStakeCount;
        while (amount != 0) {
            uint256 soonest = type(uint256).max;
            uint256 soonestLast = type(uint256).max;
            for (uint256 i; i < count; ++i) {
                SubStake memory subStake = info.subStakes[i];
                if (
                    subStake.amount != 0 && subStake.lastPeriod + evidenceWindow >= current
                        && subStake.lastPeriod < soonestLast
                ) {
                    soonest = i;
                    soonestLast = subStake.lastPeriod;
                }
            }
            // The caller only asks for what is held, so a held sub-stake always remains here.
            SubStake storage cut = info.subStakes[soonest];
            uint256 taken = cut.amount < amount ? cut.amount : amount;
            cut.amount -= uint96(taken);
            amount -= taken;
        }
    }

    /// @dev After a slash, a commitment to the current or next period cannot count more than is
    /// still locked in its period.
    function _shrinkCommitments(StakerInfo storage info, uint256 current) internal {
        uint256 periodA = info.commitments.periodA;
        if (periodA >= current) {
            info.commitments.lockedA = uint96(_shrinkCommitment(info, periodA, info.commitments.lockedA));
        }
        uint256 periodB = info.commitments.periodB;
        if (periodB >= current) {
            info.commitments.lockedB = uint96(_shrinkCommitment(info, periodB, info.commitments.lockedB));
        }
    }

    function _shrinkCommitment(StakerInfo storage info, uint256 period, uint256 committed)
        internal
        returns (uint256)
    {
        (uint256 locked,) = _scan(info, period);
        if (locked >= committed) return committed;
        periodTotals[period].lockedTotal -= uint96(committed - locked);
        return locked;
    }

    function _lastCommittedPeriod(StakerInfo storage info) internal view returns (uint256) {
        uint256 periodA = info.commitments.periodA;
        uint256 periodB = info.commitments.periodB;
        return periodA > periodB ? periodA : periodB;
    }

    function _pageEnd(uint256 offset, uint256 limit) internal view returns (uint256 end) {
        uint256 length = stakerList.length;
        if (offset >= length) return offset;
        end = limit > length - offset ? length : offset + limit;
    }
}
