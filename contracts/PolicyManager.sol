// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity ^0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IPolicyManager} from "./interfaces/IPolicyManager.sol";
import {IStakingEscrow} from "./interfaces/IStakingEscrow.sol";
import {Errors} from "./libraries/Errors.sol";
import {PeriodBitmap} from "./libraries/PeriodBitmap.sol";

/// @title PolicyManager
/// @notice Policies and their fees. Alice pays `feeRate * nodes * periods` in ETH for a policy that
/// runs from the current period through the period of its end timestamp. Each node earns the policy's
/// `feeRate` for every period it commits to; Alice is refunded the periods a node did not commit to,
/// and what remains of a revoked policy or arrangement.
///
/// Fees accrue in O(1) per commitment: each node keeps a running fee rate (the sum of the rates of
/// its live policies) and a per-period table of the rates that stop at that period. A commitment to
/// period `p` applies the table's entries between the node's last processed period and `p`, then
/// credits the running rate. Refunds count a node's commitments in a range with a bitmap popcount.
///
/// A node's unwithdrawn fees share one slot with this contract's copy of the node's worker
/// (`FeeAccount`), which the escrow keeps exact (`recordWorker`, at every bond). The worker keeps
/// the slot non-zero while the node runs, so a withdrawal that empties the fees never frees it and
/// the next accrual rewrites a live slot (5,000 gas) instead of creating one (22,100); and the
/// withdrawal checks its caller against the copy instead of calling the escrow. See
/// docs/economics.md#gas.
///
/// The owner may extend a live policy (`extendPolicy`), paying the added periods at the policy's fee
/// rate, and may have anyone else submit a revocation she signed (`revokeBySignature`, EIP-712
/// typed data: see docs/client.md#signed-revocations).
contract PolicyManager is IPolicyManager, Ownable2Step, EIP712 {
    using PeriodBitmap for mapping(uint256 => uint256);

    /*//////////////////////////////////////////////////////////////
                                 TYPES
    //////////////////////////////////////////////////////////////*/

    /// @dev Three slots. The policy pays for periods `[startPeriod, lastPeriod]`, where `lastPeriod`
    /// is the period of `endTimestamp - 1`. The node list is kept as its hash (one slot instead of
    /// one per node: the bulk of a policy's storage cost); the `PolicyCreated` event carries the
    /// list, and calls that need it take it as an argument, checked against the hash.
    struct Policy {
        // slot 0
        address owner;
        uint32 endTimestamp;
        uint32 startPeriod;
        uint32 refundedThrough; // periods up to here are settled with the owner
        // slot 1
        address kfragSigner;
        uint80 feeRate; // wei per node per period
        uint8 nodeCount;
        bool revoked;
        // slot 2
        bytes32 nodesHash; // keccak256(abi.encodePacked(nodes))
    }

    /// @dev One slot per node: the fee-rate accounting.
    struct NodeInfo {
        uint96 runningRate; // the summed fee rate of the node's policies as of `lastProcessedPeriod`
        uint32 lastProcessedPeriod;
        uint96 minFeeRate; // zero: the global default
    }

    /// @dev One slot per node: what a withdrawal reads and writes. `worker` is the escrow's
    /// `workerOf(node)`, pushed by the escrow at every bond (zero when the node has none, or was
    /// bonded before this contract was linked). Being non-zero while the node runs, it keeps the
    /// slot from ever being freed by a withdrawal. `fees` fits 96 bits: it never exceeds the ETH
    /// this contract holds, and 2^96 wei is some 79 billion ether.
    struct FeeAccount {
        address worker;
        uint96 fees; // wei accrued to the node and not yet withdrawn
    }

    /// @notice A policy as clients see it.
    struct PolicyView {
        address owner;
        address kfragSigner;
        uint256 endTimestamp;
        uint256 startPeriod;
        uint256 lastPeriod;
        uint256 feeRate;
        uint256 refundedThrough;
        uint256 nodeCount;
        bool revoked;
        bytes32 nodesHash;
    }

    /*//////////////////////////////////////////////////////////////
                          CONSTANTS AND STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @notice The most nodes one policy may name.
    uint256 public constant MAX_NODES = 32;

    /// @notice The EIP-712 type hash of a signed revocation order: `node` is the node whose
    /// arrangement is revoked, or zero for the whole policy; the order is void after `deadline`
    /// (Unix seconds). The domain is `eip712Domain()`: name "KMS PolicyManager", version "1", the
    /// chain id and this contract's address.
    bytes32 public constant REVOCATION_TYPEHASH =
        keccak256("Revocation(bytes16 policyId,address node,uint64 deadline)");

    IStakingEscrow public immutable escrow;
    uint256 public immutable secondsPerPeriod;

    /// @notice Global bounds of the nodes' minimum fee rates, and the default (wei per period).
    uint80 public minFeeRateBound;
    uint80 public defaultFeeRate;
    uint80 public maxFeeRateBound;

    mapping(address node => FeeAccount) internal feeAccounts;
    mapping(bytes16 policyId => Policy) internal policies;
    mapping(bytes16 policyId => mapping(address node => bool)) public arrangementRevoked;
    mapping(address node => NodeInfo) internal nodeInfos;
    mapping(address node => mapping(uint256 period => uint256 rate)) internal rateEnding;
    mapping(address node => mapping(uint256 word => uint256 bits)) internal commitments;

    /*//////////////////////////////////////////////////////////////
                                 EVENTS
    //////////////////////////////////////////////////////////////*/

    /// @notice A policy was created; carries all a node needs to accept its kfrag.
    event PolicyCreated(
        bytes16 indexed policyId,
        address indexed owner,
        address indexed sponsor,
        address kfragSigner,
        uint256 endTimestamp,
        uint256 startPeriod,
        uint256 lastPeriod,
        uint256 feeRate,
        address[] nodes
    );
    /// @notice A live policy was extended to `endTimestamp` (through period `lastPeriod`) for every
    /// node whose arrangement is not revoked; the owner paid `value` wei for the added periods. The
    /// nodes are the `PolicyCreated` list (the event does not repeat it): a node that holds the
    /// policy's kfrag, and whose arrangement is not revoked, serves it until the new end.
    event PolicyExtended(
        bytes16 indexed policyId,
        address indexed owner,
        uint256 previousEndTimestamp,
        uint256 endTimestamp,
        uint256 lastPeriod,
        uint256 value
    );
    event PolicyRevoked(bytes16 indexed policyId, address indexed owner, uint256 refund);
    event ArrangementRevoked(bytes16 indexed policyId, address indexed node, uint256 refund);
    event RefundPaid(
        bytes16 indexed policyId, address indexed owner, uint256 amount, uint256 refundedThrough
    );
    event FeesAccrued(address indexed node, uint256 indexed period, uint256 amount);
    event FeesWithdrawn(address indexed node, uint256 amount);
    event MinFeeRateSet(address indexed node, uint256 rate);
    event FeeRateRangeSet(uint256 min, uint256 defaultRate, uint256 max);

    /*//////////////////////////////////////////////////////////////
                              CONSTRUCTOR
    //////////////////////////////////////////////////////////////*/

    /// @param escrow_ The staking escrow (its periods are this contract's periods).
    /// @param owner_ May change the fee-rate bounds.
    /// @param minRate Lowest minimum fee rate a node may ask (wei per period).
    /// @param defaultRate The minimum fee rate of a node that set none.
    /// @param maxRate Highest minimum fee rate a node may ask.
    /// @dev The EIP-712 domain's name and version are fixed here ("KMS PolicyManager", "1"), not
    /// parameters: the deployment's arguments stay as they were.
    constructor(IStakingEscrow escrow_, address owner_, uint256 minRate, uint256 defaultRate, uint256 maxRate)
        Ownable(owner_)
        EIP712("KMS PolicyManager", "1")
    {
        escrow = escrow_;
        secondsPerPeriod = escrow_.secondsPerPeriod();
        _setFeeRateRange(minRate, defaultRate, maxRate);
    }

    /*//////////////////////////////////////////////////////////////
                                POLICIES
    //////////////////////////////////////////////////////////////*/

    /// @notice Creates the policy `policyIdOf(msg.sender, salt)`, paid by `msg.value = feeRate *
    /// nodes.length * periods`, where `periods` runs from the current period through the period of
    /// `endTimestamp - 1`. The id is the creator's own: nobody else can take it first.
    /// Requirements: the caller has not used `salt` before; `owner` and `kfragSigner` non-zero;
    /// `endTimestamp` in the future and within uint32; 1 to `MAX_NODES` nodes, strictly ascending;
    /// every node staked through the last period with a bonded worker and asking no more than `feeRate`.
    /// @param salt Chosen by the creator (the Rust client derives it from the label and Bob's key).
    /// @param owner Alice: receives refunds and may revoke.
    /// @param kfragSigner The address of the key that signs the policy's kfrags.
    /// @param endTimestamp When the policy stops, in Unix seconds.
    /// @param nodes The stakers holding the policy's kfrags, ascending.
    /// @return policyId `policyIdOf(msg.sender, salt)`.
    function createPolicy(
        bytes16 salt,
        address owner,
        address kfragSigner,
        uint256 endTimestamp,
        address[] calldata nodes
    ) external payable returns (bytes16 policyId) {
        policyId = policyIdOf(msg.sender, salt);
        if (policies[policyId].owner != address(0)) {
            revert Errors.PolicyManager_PolicyExists(policyId);
        }
        if (owner == address(0)) revert Errors.PolicyManager_ZeroAddress("owner");
        if (kfragSigner == address(0)) revert Errors.PolicyManager_ZeroAddress("kfragSigner");
        if (endTimestamp <= block.timestamp || endTimestamp > type(uint32).max) {
            revert Errors.PolicyManager_InvalidEnd(endTimestamp, block.timestamp);
        }
        uint256 current = block.timestamp / secondsPerPeriod;
        uint256 lastPeriod = (endTimestamp - 1) / secondsPerPeriod;
        uint256 feeRate = _feeRate(nodes.length, lastPeriod - current + 1);

        policies[policyId] = Policy({
            owner: owner,
            endTimestamp: uint32(endTimestamp),
            startPeriod: uint32(current),
            refundedThrough: uint32(current - 1),
            kfragSigner: kfragSigner,
            feeRate: uint80(feeRate),
            nodeCount: uint8(nodes.length),
            revoked: false,
            nodesHash: keccak256(abi.encodePacked(nodes))
        });

        _addNodes(nodes, feeRate, current, lastPeriod);

        emit PolicyCreated(
            policyId, owner, msg.sender, kfragSigner, endTimestamp, current, lastPeriod, feeRate, nodes
        );
    }

    /// @notice Extends a live policy to `endTimestamp`, for every node whose arrangement is not
    /// revoked, at the policy's fee rate: `msg.value = feeRate * liveNodes * (newLastPeriod -
    /// lastPeriod)`, where `newLastPeriod` is the period of `endTimestamp - 1` and `liveNodes` the
    /// policy's nodes whose arrangement is not revoked. Revoked arrangements stay revoked, unpaid.
    /// From then on the policy's fees, refunds and revocations run through the new last period, as
    /// if it had been created with that end.
    /// Requirements: the caller is the policy's owner; the policy is neither revoked nor ended;
    /// `nodes` is the policy's node list; `endTimestamp <= type(uint32).max` and in a period after
    /// the policy's last; at least one arrangement not revoked; each of its nodes eligible as
    /// `createPolicy` requires, through the new last period (staked, a bonded worker, a minimum
    /// fee rate at most the policy's); `msg.value` exactly the price above.
    /// @param policyId The policy.
    /// @param endTimestamp The new end, in Unix seconds.
    /// @param nodes The policy's node list (from `PolicyCreated`), ascending.
    /// @return lastPeriod The policy's new last period.
    function extendPolicy(bytes16 policyId, uint256 endTimestamp, address[] calldata nodes)
        external
        payable
        returns (uint256 lastPeriod)
    {
        (Policy storage policy, uint256 previousEnd) = _livePolicy(policyId, msg.sender);
        _checkNodes(policyId, policy, nodes);
        uint256 previousLast = (previousEnd - 1) / secondsPerPeriod;
        if (endTimestamp <= previousEnd || endTimestamp > type(uint32).max) {
            revert Errors.PolicyManager_InvalidExtension(endTimestamp, previousEnd);
        }
        lastPeriod = (endTimestamp - 1) / secondsPerPeriod;
        if (lastPeriod == previousLast) {
            revert Errors.PolicyManager_InvalidExtension(endTimestamp, previousEnd);
        }

        uint256 feeRate = policy.feeRate;
        uint256 extended;
        for (uint256 i; i < nodes.length; ++i) {
            address node = nodes[i];
            if (arrangementRevoked[policyId][node]) continue;
            _checkEligible(node, feeRate, lastPeriod);
            _extendPolicyRate(node, feeRate, previousLast, lastPeriod);
            ++extended;
        }
        if (extended == 0) revert Errors.PolicyManager_NoLiveArrangement(policyId);
        uint256 value = feeRate * extended * (lastPeriod - previousLast);
        if (msg.value != value) revert Errors.PolicyManager_InvalidExtensionPayment(msg.value, value);
        policy.endTimestamp = uint32(endTimestamp);
        emit PolicyExtended(policyId, msg.sender, previousEnd, endTimestamp, lastPeriod, value);
    }

    /// @notice Revokes a live policy and refunds the owner everything its nodes have not earned.
    /// Requirements: the caller is the policy's owner; the policy is neither revoked nor ended;
    /// `nodes` is the policy's node list.
    /// @return refunded The wei sent to the owner.
    function revokePolicy(bytes16 policyId, address[] calldata nodes) external returns (uint256 refunded) {
        (Policy storage policy, uint256 end) = _livePolicy(policyId, msg.sender);
        refunded = _revokePolicy(policyId, policy, msg.sender, end, nodes);
    }

    /// @notice Revokes one node's part of a live policy and refunds what that node has not earned.
    /// Requirements: the caller is the policy's owner; the policy is neither revoked nor ended; the
    /// node is in the policy and its arrangement not yet revoked; `nodes` is the policy's node list.
    /// @return refunded The wei sent to the owner.
    function revokeArrangement(bytes16 policyId, address node, address[] calldata nodes)
        external
        returns (uint256 refunded)
    {
        (Policy storage policy, uint256 end) = _livePolicy(policyId, msg.sender);
        refunded = _revokeArrangement(policyId, policy, msg.sender, end, node, nodes);
    }

    /// @notice Carries out a revocation order the policy's owner signed (EIP-712 typed data
    /// `Revocation(bytes16 policyId,address node,uint64 deadline)` in the domain `eip712Domain()`;
    /// see docs/client.md#signed-revocations): anyone may send it, and it revokes exactly as the
    /// owner's own `revokePolicy` (`node == address(0)`) or `revokeArrangement(policyId, node,
    /// nodes)` would, refunding the owner, never the caller. An order that was carried out cannot
    /// be again: the policy or arrangement is revoked, and a second call reverts with
    /// `PolicyManager_AlreadyRevoked`.
    /// Requirements: `block.timestamp <= deadline`; `signature` is the policy owner's 65-byte
    /// `r | s | v` ECDSA signature (`v` 27 or 28, low `s`) of `revocationTypedDataHash(policyId, node,
    /// deadline)`; then the requirements of `revokePolicy` or `revokeArrangement`, the signer in the
    /// caller's place.
    /// @param policyId The policy.
    /// @param node The node whose arrangement is revoked, or zero for the whole policy.
    /// @param deadline The last second (Unix time) the order may be carried out.
    /// @param nodes The policy's node list (from `PolicyCreated`), ascending.
    /// @param signature The owner's signature, `r | s | v`.
    /// @return refunded The wei sent to the owner.
    function revokeBySignature(
        bytes16 policyId,
        address node,
        uint64 deadline,
        address[] calldata nodes,
        bytes calldata signature
    ) external returns (uint256 refunded) {
        address owner = _revocationSigner(policyId, node, deadline, signature);
        refunded = _revokeAsOwner(policyId, owner, node, nodes);
    }

    /// @notice Refunds the owner for the settled periods (up to the current one) that nodes did not
    /// commit to. Anyone may call it; the ETH always goes to the owner.
    /// Requirements: `nodes` is the policy's node list; something to refund.
    /// @return amount The wei sent to the owner.
    function refund(bytes16 policyId, address[] calldata nodes) external returns (uint256 amount) {
        Policy storage policy = policies[policyId];
        address owner = policy.owner;
        if (owner == address(0)) revert Errors.PolicyManager_PolicyNotFound(policyId);
        _checkNodes(policyId, policy, nodes);
        uint256 lastPeriod = _lastPeriod(policy);
        uint256 current = block.timestamp / secondsPerPeriod;
        // Commitments to a period are made before it starts, so the current period is settled.
        uint256 to = current < lastPeriod ? current : lastPeriod;
        uint256 from = uint256(policy.refundedThrough) + 1;
        if (policy.revoked || from > to) revert Errors.PolicyManager_NothingToPay();

        uint256 feeRate = policy.feeRate;
        for (uint256 i; i < nodes.length; ++i) {
            address node = nodes[i];
            if (arrangementRevoked[policyId][node]) continue;
            amount += (to - from + 1 - commitments[node].countInRange(from, to)) * feeRate;
        }
        if (amount == 0) revert Errors.PolicyManager_NothingToPay();
        policy.refundedThrough = uint32(to);
        emit RefundPaid(policyId, owner, amount, to);
        _send(owner, amount);
    }

    /*//////////////////////////////////////////////////////////////
                                 NODES
    //////////////////////////////////////////////////////////////*/

    /// @inheritdoc IPolicyManager
    function recordCommitment(address node, uint256 period) external override {
        if (msg.sender != address(escrow)) revert Errors.PolicyManager_CallerNotEscrow(msg.sender);
        NodeInfo storage info = nodeInfos[node];
        uint256 rate = _applyRateEndings(node, info.runningRate, info.lastProcessedPeriod, period);
        info.runningRate = uint96(rate);
        info.lastProcessedPeriod = uint32(period);
        commitments[node].set(period);
        if (rate != 0) {
            // `rate` is at most the 96-bit running rate; the sum is checked (see `FeeAccount`).
            feeAccounts[node].fees += uint96(rate);
            emit FeesAccrued(node, period, rate);
        }
    }

    /// @inheritdoc IPolicyManager
    /// @dev No event of its own: the escrow's `WorkerBonded`, in the same transaction, records the
    /// bond this copies.
    function recordWorker(address node, address worker) external override {
        if (msg.sender != address(escrow)) revert Errors.PolicyManager_CallerNotEscrow(msg.sender);
        feeAccounts[node].worker = worker;
    }

    /// @notice Applies up to `maxPeriods` of a node's ended-rate table, up to the current period.
    /// @dev Only needed by a node back from a long absence, whose next commitment would otherwise
    /// walk every period it missed in one transaction. Anyone may call it; no fee changes hands.
    /// @return processedThrough The node's last processed period afterwards.
    function processRateEndings(address node, uint256 maxPeriods)
        external
        returns (uint256 processedThrough)
    {
        NodeInfo storage info = nodeInfos[node];
        uint256 last = info.lastProcessedPeriod;
        uint256 current = block.timestamp / secondsPerPeriod;
        if (last >= current || maxPeriods == 0) revert Errors.PolicyManager_NothingToPay();
        processedThrough = current - last > maxPeriods ? last + maxPeriods : current;
        info.runningRate = uint96(_applyRateEndings(node, info.runningRate, last, processedThrough));
        info.lastProcessedPeriod = uint32(processedThrough);
    }

    /// @notice Sends the node's accrued fees to the node (the staker's address).
    /// Requirements: the caller is the node or its bonded worker; fees to withdraw.
    /// @dev The worker is checked against the copy the escrow pushes at every bond (exact, so the
    /// escrow is not called); only a node bonded before this contract was linked, whose copy is
    /// empty, has its worker read from the escrow. The withdrawal zeroes the fees but keeps the
    /// worker: the slot stays live for the next accrual.
    /// @return amount The wei sent.
    function withdrawFees(address node) external returns (uint256 amount) {
        FeeAccount storage account = feeAccounts[node];
        address worker = account.worker;
        if (msg.sender != node && msg.sender != worker && escrow.workerOf(node) != msg.sender) {
            revert Errors.PolicyManager_CallerNotNodeOrWorker(msg.sender, node);
        }
        amount = account.fees;
        if (amount == 0) revert Errors.PolicyManager_NothingToPay();
        account.fees = 0;
        emit FeesWithdrawn(node, amount);
        _send(node, amount);
    }

    /// @notice Sets the lowest fee rate (wei per period) the caller's node accepts for new policies.
    /// Requirements: the caller has a stake; `minFeeRateBound <= rate <= maxFeeRateBound`.
    function setMinFeeRate(uint256 rate) external {
        if (escrow.stakeOf(msg.sender) == 0) revert Errors.PolicyManager_NotANode(msg.sender);
        if (rate < minFeeRateBound || rate > maxFeeRateBound) {
            revert Errors.PolicyManager_FeeRateOutOfRange(rate, minFeeRateBound, maxFeeRateBound);
        }
        nodeInfos[msg.sender].minFeeRate = uint96(rate);
        emit MinFeeRateSet(msg.sender, rate);
    }

    /// @notice Sets the global bounds of nodes' minimum fee rates. Owner only.
    /// Requirements: `min <= defaultRate <= max <= type(uint80).max`.
    function setFeeRateRange(uint256 min, uint256 defaultRate, uint256 max) external onlyOwner {
        _setFeeRateRange(min, defaultRate, max);
    }

    /*//////////////////////////////////////////////////////////////
                                 VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @notice ETH accrued to `node` and not yet withdrawn, in wei: what `withdrawFees` pays.
    function fees(address node) external view returns (uint256) {
        return feeAccounts[node].fees;
    }

    /// @notice This contract's copy of `node`'s worker, which `withdrawFees` accepts as a caller:
    /// the escrow's `workerOf(node)`, or zero for a node bonded before the contracts were linked.
    function recordedWorkerOf(address node) external view returns (address) {
        return feeAccounts[node].worker;
    }

    /// @notice A policy (its node list is in the `PolicyCreated` event; here, its hash).
    function getPolicy(bytes16 policyId) external view returns (PolicyView memory view_) {
        Policy storage policy = policies[policyId];
        if (policy.owner == address(0)) revert Errors.PolicyManager_PolicyNotFound(policyId);
        view_.owner = policy.owner;
        view_.kfragSigner = policy.kfragSigner;
        view_.endTimestamp = policy.endTimestamp;
        view_.startPeriod = policy.startPeriod;
        view_.lastPeriod = _lastPeriod(policy);
        view_.feeRate = policy.feeRate;
        view_.refundedThrough = policy.refundedThrough;
        view_.nodeCount = policy.nodeCount;
        view_.revoked = policy.revoked;
        view_.nodesHash = policy.nodesHash;
    }

    /// @notice The EIP-712 digest the policy's owner signs to order a revocation (`node` zero: the
    /// whole policy): `keccak256("\x19\x01" || domainSeparator || keccak256(abi.encode(
    /// REVOCATION_TYPEHASH, policyId, node, deadline)))`, where `domainSeparator` hashes the
    /// fields of `eip712Domain()` (docs/client.md#signed-revocations).
    function revocationTypedDataHash(bytes16 policyId, address node, uint64 deadline)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(keccak256(abi.encode(REVOCATION_TYPEHASH, policyId, node, deadline)));
    }

    /// @notice The id of the policy `creator` creates with `salt`: the first 16 bytes of
    /// `keccak256(abi.encodePacked(creator, salt))`.
    function policyIdOf(address creator, bytes16 salt) public pure returns (bytes16) {
        return bytes16(keccak256(abi.encodePacked(creator, salt)));
    }

    /// @inheritdoc IPolicyManager
    function kfragSignerOf(bytes16 policyId) external view override returns (address) {
        return policies[policyId].kfragSigner;
    }

    /// @notice Whether `node` must serve `policyId` now: the policy exists, is not revoked, has not
    /// ended, names the node, and the node's arrangement is not revoked. `nodes` is the node list
    /// from the `PolicyCreated` event; a list that does not match the policy answers false.
    function isArrangementActive(bytes16 policyId, address node, address[] calldata nodes)
        external
        view
        returns (bool)
    {
        Policy storage policy = policies[policyId];
        return policy.owner != address(0) && !policy.revoked && block.timestamp < policy.endTimestamp
            && policy.nodesHash == keccak256(abi.encodePacked(nodes)) && _contains(nodes, node)
            && !arrangementRevoked[policyId][node];
    }

    /// @notice The lowest fee rate `node` accepts now.
    function effectiveMinFeeRate(address node) public view returns (uint256 rate) {
        rate = nodeInfos[node].minFeeRate;
        if (rate == 0) rate = defaultFeeRate;
        if (rate < minFeeRateBound) rate = minFeeRateBound;
        if (rate > maxFeeRateBound) rate = maxFeeRateBound;
    }

    /// @notice A node's fee state.
    function getNodeInfo(address node) external view returns (NodeInfo memory) {
        return nodeInfos[node];
    }

    /// @notice Whether `node` committed to `period`.
    function isCommitted(address node, uint256 period) external view returns (bool) {
        return commitments[node].get(period);
    }

    /// @notice How many of the periods `[from, to]` `node` committed to.
    function committedCount(address node, uint256 from, uint256 to) external view returns (uint256) {
        return commitments[node].countInRange(from, to);
    }

    /*//////////////////////////////////////////////////////////////
                                INTERNAL
    //////////////////////////////////////////////////////////////*/

    /// @dev The fee rate `msg.value` pays for `count` nodes over `periods` periods.
    function _feeRate(uint256 count, uint256 periods) internal view returns (uint256 feeRate) {
        if (count == 0 || count > MAX_NODES) revert Errors.PolicyManager_InvalidNodeCount(count, MAX_NODES);
        if (msg.value == 0 || msg.value % (count * periods) != 0) {
            revert Errors.PolicyManager_InvalidPayment(msg.value, count, periods);
        }
        feeRate = msg.value / (count * periods);
        if (feeRate > type(uint80).max) revert Errors.PolicyManager_FeeRateTooHigh(feeRate);
    }

    /// @dev Checks that the node can take on a policy of `feeRate` through `lastPeriod`, as
    /// `createPolicy` does: staked through `lastPeriod` with a bonded worker, asking at most `feeRate`.
    function _checkEligible(address node, uint256 feeRate, uint256 lastPeriod) internal view {
        (uint256 locked, address worker) = escrow.policyEligibility(node, lastPeriod);
        if (locked == 0 || worker == address(0)) {
            revert Errors.PolicyManager_NodeNotEligible(node, lastPeriod);
        }
        uint256 minRate = effectiveMinFeeRate(node);
        if (feeRate < minRate) revert Errors.PolicyManager_FeeRateBelowNodeMinimum(node, feeRate, minRate);
    }

    /// @dev Checks and records a new policy's nodes.
    function _addNodes(address[] calldata nodes, uint256 feeRate, uint256 start, uint256 lastPeriod)
        internal
    {
        address previous;
        for (uint256 i; i < nodes.length; ++i) {
            address node = nodes[i];
            if (node <= previous) revert Errors.PolicyManager_NodesNotSorted(i);
            previous = node;
            _checkEligible(node, feeRate, lastPeriod);
            _addPolicyRate(node, feeRate, start, lastPeriod);
        }
    }

    /// @dev Adds a policy's rate to a node's accounting for `[start, lastPeriod]`.
    function _addPolicyRate(address node, uint256 feeRate, uint256 start, uint256 lastPeriod) internal {
        NodeInfo storage info = nodeInfos[node];
        uint256 last = info.lastProcessedPeriod;
        uint256 running = info.runningRate;
        // With no live policy the ended-rate table past `last` is empty: skip ahead, so the next
        // commitment does not walk periods that cannot hold an entry.
        if (running == 0 && last + 1 < start) last = start - 1;
        // The rate is live from now on; it leaves the running rate when `lastPeriod + 1` is processed.
        if (lastPeriod >= last) {
            running += feeRate;
            rateEnding[node][lastPeriod + 1] += feeRate;
        }
        // A node may already have committed to the current and the next period: credit those now
        // (`last <= start + 1`, so at most two).
        if (last >= start) _creditCommitments(node, feeRate, start, last < lastPeriod ? last : lastPeriod);
        // Checked: a running rate past 96 bits must refuse the policy, never wrap.
        info.runningRate = SafeCast.toUint96(running);
        info.lastProcessedPeriod = uint32(last);
    }

    /// @dev Moves the end of a live arrangement's rate from `previousLast` to `lastPeriod` (later).
    /// While the node has not processed `previousLast + 1`, the rate is in its running rate and in
    /// `rateEnding[previousLast + 1]`: only that entry moves. Otherwise the node has committed to
    /// `previousLast + 1` (a commitment is to the next period, and the policy is live, so that is
    /// the latest a node can have processed), which took the rate out of the running rate: it goes
    /// back in, ending at `lastPeriod + 1`, and the commitment is credited now, as `createPolicy`
    /// credits the commitments made before it.
    function _extendPolicyRate(address node, uint256 feeRate, uint256 previousLast, uint256 lastPeriod)
        internal
    {
        mapping(uint256 => uint256) storage endings = rateEnding[node];
        endings[lastPeriod + 1] += feeRate;
        NodeInfo storage info = nodeInfos[node];
        uint256 last = info.lastProcessedPeriod;
        if (last <= previousLast) {
            endings[previousLast + 1] -= feeRate;
            return;
        }
        // Checked, as in `_addPolicyRate`: a running rate past 96 bits must refuse, never wrap.
        info.runningRate = SafeCast.toUint96(info.runningRate + feeRate);
        _creditCommitments(node, feeRate, previousLast + 1, last);
    }

    /// @dev Credits the node `feeRate` for each period of `[from, through]` it has committed to, one
    /// `FeesAccrued` per period: commitments made before the rate covered their period (at most
    /// two periods: a node commits to the next period only).
    function _creditCommitments(address node, uint256 feeRate, uint256 from, uint256 through) internal {
        uint256 credit;
        for (uint256 period = from; period <= through; ++period) {
            if (!commitments[node].get(period)) continue;
            credit += feeRate;
            emit FeesAccrued(node, period, feeRate);
        }
        if (credit != 0) feeAccounts[node].fees += uint96(credit); // at most 2 * feeRate
    }

    /// @dev Removes a policy's rate from a node and returns what the node has not earned of
    /// `[from, lastPeriod]`: every period it has not committed to. Commitments already made (to the
    /// current and the next period) were made while the policy was live, so they stay earned.
    function _revokeNode(address node, uint256 feeRate, uint256 from, uint256 lastPeriod)
        internal
        returns (uint256 unearned)
    {
        NodeInfo storage info = nodeInfos[node];
        // The rate is still in the running rate until `lastPeriod + 1` is processed.
        if (info.lastProcessedPeriod <= lastPeriod) {
            info.runningRate -= uint96(feeRate);
            rateEnding[node][lastPeriod + 1] -= feeRate;
        }
        if (from > lastPeriod) return 0;
        unearned = (lastPeriod - from + 1 - commitments[node].countInRange(from, lastPeriod)) * feeRate;
    }

    /// @dev The running rate after processing the periods `(last, through]`. Stops early once it is
    /// zero: every entry of the table belongs to a rate inside the running rate.
    function _applyRateEndings(address node, uint256 rate, uint256 last, uint256 through)
        internal
        view
        returns (uint256)
    {
        mapping(uint256 => uint256) storage endings = rateEnding[node];
        for (uint256 period = last + 1; rate != 0 && period <= through; ++period) {
            rate -= endings[period];
        }
        return rate;
    }

    /// @dev The owner of `policyId`, once checked to have signed the revocation order `(policyId,
    /// node, deadline)` with `signature`, and the order to be within its deadline.
    function _revocationSigner(bytes16 policyId, address node, uint64 deadline, bytes calldata signature)
        internal
        view
        returns (address owner)
    {
        if (block.timestamp > deadline) {
            revert Errors.PolicyManager_SignatureExpired(deadline, block.timestamp);
        }
        owner = policies[policyId].owner;
        if (owner == address(0)) revert Errors.PolicyManager_PolicyNotFound(policyId);
        (address signer, ECDSA.RecoverError recoverError,) =
            ECDSA.tryRecoverCalldata(revocationTypedDataHash(policyId, node, deadline), signature);
        if (recoverError != ECDSA.RecoverError.NoError || signer != owner) {
            revert Errors.PolicyManager_InvalidSignature(signer, owner);
        }
    }

    /// @dev What `revokePolicy` (`node` zero) or `revokeArrangement` do when `owner` calls them.
    function _revokeAsOwner(bytes16 policyId, address owner, address node, address[] calldata nodes)
        internal
        returns (uint256)
    {
        (Policy storage policy, uint256 end) = _livePolicy(policyId, owner);
        return node == address(0)
            ? _revokePolicy(policyId, policy, owner, end, nodes)
            : _revokeArrangement(policyId, policy, owner, end, node, nodes);
    }

    /// @dev The body of `revokePolicy`, once `_livePolicy` has checked the policy and its `owner`
    /// and read its `end`.
    function _revokePolicy(
        bytes16 policyId,
        Policy storage policy,
        address owner,
        uint256 end,
        address[] calldata nodes
    ) internal returns (uint256 refunded) {
        _checkNodes(policyId, policy, nodes);
        uint256 lastPeriod = (end - 1) / secondsPerPeriod;
        uint256 from = uint256(policy.refundedThrough) + 1;
        uint256 feeRate = policy.feeRate;
        for (uint256 i; i < nodes.length; ++i) {
            address node = nodes[i];
            if (arrangementRevoked[policyId][node]) continue;
            refunded += _revokeNode(node, feeRate, from, lastPeriod);
        }
        policy.revoked = true;
        policy.refundedThrough = uint32(lastPeriod);
        emit PolicyRevoked(policyId, owner, refunded);
        _send(owner, refunded);
    }

    /// @dev The body of `revokeArrangement`, once `_livePolicy` has checked the policy and its
    /// `owner` and read its `end`.
    function _revokeArrangement(
        bytes16 policyId,
        Policy storage policy,
        address owner,
        uint256 end,
        address node,
        address[] calldata nodes
    ) internal returns (uint256 refunded) {
        _checkNodes(policyId, policy, nodes);
        if (!_contains(nodes, node)) {
            revert Errors.PolicyManager_NodeNotInPolicy(policyId, node);
        }
        if (arrangementRevoked[policyId][node]) revert Errors.PolicyManager_AlreadyRevoked(policyId, node);
        refunded = _revokeNode(
            node, policy.feeRate, uint256(policy.refundedThrough) + 1, (end - 1) / secondsPerPeriod
        );
        arrangementRevoked[policyId][node] = true;
        emit ArrangementRevoked(policyId, node, refunded);
        _send(owner, refunded);
    }

    /// @dev The policy, checked to exist, to be `owner`'s (the caller, or the signer of a
    /// revocation order), and to be neither revoked nor ended; and its end timestamp.
    function _livePolicy(bytes16 policyId, address owner)
        internal
        view
        returns (Policy storage policy, uint256 end)
    {
        policy = policies[policyId];
        address policyOwner = policy.owner;
        if (policyOwner == address(0)) revert Errors.PolicyManager_PolicyNotFound(policyId);
        if (owner != policyOwner) revert Errors.PolicyManager_CallerNotPolicyOwner(owner, policyOwner);
        if (policy.revoked) revert Errors.PolicyManager_AlreadyRevoked(policyId, address(0));
        end = policy.endTimestamp;
        if (block.timestamp >= end) revert Errors.PolicyManager_PolicyEnded(policyId, end);
    }

    function _checkNodes(bytes16 policyId, Policy storage policy, address[] calldata nodes) internal view {
        if (policy.nodesHash != keccak256(abi.encodePacked(nodes))) {
            revert Errors.PolicyManager_NodesMismatch(policyId);
        }
    }

    function _contains(address[] calldata nodes, address node) internal pure returns (bool) {
        for (uint256 i; i < nodes.length; ++i) {
            if (nodes[i] == node) return true;
        }
        return false;
    }

    function _lastPeriod(Policy storage policy) internal view returns (uint256) {
        return (uint256(policy.endTimestamp) - 1) / secondsPerPeriod;
    }

    function _setFeeRateRange(uint256 min, uint256 defaultRate, uint256 max) internal {
        if (min > defaultRate || defaultRate > max || max > type(uint80).max) {
            revert Errors.PolicyManager_InvalidFeeRateRange(min, defaultRate, max);
        }
        minFeeRateBound = uint80(min);
        defaultFeeRate = uint80(defaultRate);
        maxFeeRateBound = uint80(max);
        emit FeeRateRangeSet(min, defaultRate, max);
    }

    function _send(address recipient, uint256 amount) internal {
        if (amount == 0) return;
        (bool success,) = recipient.call{value: amount}("");
        if (!success) revert Errors.PolicyManager_TransferFailed(recipient, amount);
    }
}
